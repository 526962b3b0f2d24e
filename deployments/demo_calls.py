"""What the demo (deployments/demo.py) does to the running loop, as a person would by hand:
Prefect runs and events over its REST API, signed webhooks, drifted traffic, the dashboard."""

from __future__ import annotations

import json
import random
import re
import sys
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.auth.signing import sign
from core.data.simulate import generate_tickets
from deployments.stack import (
    LocalStack,
    StackError,
    http_json,
    wait_until,
)

TEXT = ["short_description", "close_notes"]
FINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def say(message: str) -> None:
    print(f"[demo {datetime.now(UTC):%H:%M:%S}] {message}", flush=True)


def flow_run_state(stack: LocalStack, run_id: str) -> str:
    return str(http_json("GET", f"{stack.prefect_api}/flow_runs/{run_id}")["state"]["type"])


def wait_for_run(stack: LocalStack, run_id: str, what: str, timeout_s: float) -> None:
    state = wait_until(
        what,
        lambda: (s := flow_run_state(stack, run_id)) in FINAL_STATES and s,
        timeout_s,
        interval_s=1,
    )
    if state != "COMPLETED":
        raise StackError(f"{what} ended {state}; see {stack.home}/logs/worker.log")


def run_deployment(stack: LocalStack, name: str, *params: str) -> str:
    """``prefect deployment run NAME`` as a person would type it; returns the flow run id."""
    output = stack.run(
        str(Path(sys.executable).parent / "prefect"), "deployment", "run", name, *params
    )
    found = re.search(r"UUID: ([0-9a-f-]{36})", output)
    if not found:
        raise StackError(
            f"no flow run id in the output of prefect deployment run {name}:\n{output}"
        )
    return found.group(1)


def runs_of(stack: LocalStack, deployment: str) -> list[dict[str, Any]]:
    found = http_json("GET", f"{stack.prefect_api}/deployments/name/{deployment}")
    body = {"deployments": {"id": {"any_": [found["id"]]}}, "sort": "EXPECTED_START_TIME_DESC"}
    return list(http_json("POST", f"{stack.prefect_api}/flow_runs/filter", body))


def events_since(stack: LocalStack, name: str, since: str) -> list[dict[str, Any]]:
    body = {"filter": {"event": {"name": [name]}, "occurred": {"since": since}}}
    return list(http_json("POST", f"{stack.prefect_api}/events/filter", body)["events"])


def served_version(stack: LocalStack) -> str | None:
    model = http_json("GET", f"{stack.service_url}/health")["model"]
    return str(model["model_version"]) if model else None


def send_signed(stack: LocalStack, secret: str, path: str, body: Any, webhook_id: str) -> int:
    raw = json.dumps(body).encode()
    headers = sign([secret], raw, webhook_id)
    return post_raw(f"{stack.service_url}{path}", raw, headers)


def post_raw(url: str, raw: bytes, headers: dict[str, str]) -> int:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        url, data=raw, method="POST", headers={**headers, "content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def send_drifted_traffic(
    stack: LocalStack, secret: str, n: int, seed: int, scenario: str = "new_category"
) -> None:
    """Tickets of a category the model never saw, classified by the service, then closed with
    their true category through the signed tickets webhook (feedback). With scenario
    ``contradictory`` the tickets are ordinary but closed with random categories: labels that
    contradict each other, a drift no retraining can fix."""
    if scenario == "contradictory":
        tickets = generate_tickets(n, "baseline", seed=seed)
        rng = random.Random(seed)
        categories = sorted(tickets["label"].unique())
        tickets["label"] = [rng.choice(categories) for _ in range(n)]
    else:
        tickets = generate_tickets(n, scenario, seed=seed)
    for start in range(0, n, 100):
        chunk = tickets.iloc[start : start + 100]
        answer = http_json(
            "POST",
            f"{stack.service_url}/predict/batch",
            {"tickets": chunk[TEXT].to_dict("records")},
            timeout=60,
        )
        closed = [
            {"request_id": p["request_id"], "true_label": label}
            for p, label in zip(answer["predictions"], chunk["label"], strict=True)
        ]
        status = send_signed(
            stack, secret, "/webhooks/tickets", {"tickets": closed}, f"closed-{seed}-{start}"
        )
        if status != 200:
            raise StackError(f"the tickets webhook answered {status}")


def dashboard_report(stack: LocalStack, since: str) -> bool:
    """Whether /dashboard shows a drift report checked after ``since`` that asked for a
    retrain."""
    with urllib.request.urlopen(f"{stack.service_url}/dashboard", timeout=60) as response:
        page = response.read().decode()
    found = re.search(r"checked (\d{4}-\d\d-\d\dT\d\d:\d\d); retrain: ([a-z-]+)", page)
    if found is None:
        return False
    return found.group(1) >= since[:16] and found.group(2) == "requested"


def deployments_and_schedules(stack: LocalStack) -> dict[str, list[str]]:
    """Every deployment on the server as ``flow/deployment``, with its schedules (cron)."""
    flows = {f["id"]: f["name"] for f in http_json("POST", f"{stack.prefect_api}/flows/filter", {})}
    found = http_json("POST", f"{stack.prefect_api}/deployments/filter", {})
    return {
        f"{flows[d['flow_id']]}/{d['name']}": sorted(
            str(s["schedule"].get("cron") or s["schedule"]) for s in d.get("schedules") or []
        )
        for d in found
    }


def retrain_decision(stack: LocalStack, monitor_run: str) -> str:
    """What a monitor run decided about retraining, as its drift-report artifact says."""
    body = {
        "artifacts": {"key": {"any_": ["drift-report"]}},
        "flow_runs": {"id": {"any_": [monitor_run]}},
    }
    artifacts = http_json("POST", f"{stack.prefect_api}/artifacts/filter", body)
    text = str(artifacts[0]["data"]) if artifacts else ""
    found = re.search(r"\*\*Retrain: ([^.*]+)\.\*\*", text)
    return found.group(1) if found else "no decision"
