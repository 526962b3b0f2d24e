"""The whole loop end to end, as a newcomer gets it from ``make run``: for a person (``make demo``)
and for the end-to-end test.

``tickets run`` starts on an S3 server over loopback, trains the first model and runs the loop
(a Prefect server with the deployments, a process worker, the service, the MLflow UI); the first
``/predict`` is timed from the command's start. Then, against it, as a person would: the four
deployments are listed with their schedules; drifted traffic arrives with feedback through the
signed tickets webhook; ``prefect deployment run monitor/hourly`` detects the drift, its report
shows on ``/dashboard`` and the triggered ``retrain/on-event`` run trains on base data plus
feedback and promotes the better model, which the service swaps to. Drift that retraining cannot
fix (tickets closed with contradictory categories) meets three monitor runs and is retrained
once; a label without the label key is refused; a signed retrain webhook starts a run that
promotes or says why not, while an unsigned and a replayed one start nothing. Last, Ctrl-C
(SIGINT) stops ``tickets run`` and no process it started is left. The last line of stdout is one
JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core import events
from core.auth.local_secrets import new_api_key, new_webhook_secret
from core.auth.signing import sign
from core.data.simulate import generate_tickets
from deployments.stack import (
    BIN,
    LocalStack,
    StackError,
    http_json,
    processes_with,
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


def story(stack: LocalStack, secret: str, traffic: int) -> dict[str, Any]:
    old_version = wait_until("the service to load a model", lambda: served_version(stack), 60)
    say(f"serving model version {old_version}; sending {traffic} drifted tickets with feedback")
    send_drifted_traffic(stack, secret, traffic, seed=11)

    started = datetime.now(UTC).isoformat()
    before = {run["id"] for run in runs_of(stack, "retrain/on-event")}
    say("prefect deployment run monitor/hourly")
    monitor_run = run_deployment(stack, "monitor/hourly")
    wait_for_run(stack, monitor_run, "monitor/hourly", 300)
    drift_events = wait_until(
        events.DRIFT_DETECTED, lambda: events_since(stack, events.DRIFT_DETECTED, started), 60
    )
    fired = drift_events[0]["payload"].get("fired")
    on_dashboard = dashboard_report(stack, started)
    say(f"drift detected: {fired}; on the dashboard: {on_dashboard}; waiting for the retrain")
    retrain = wait_until(
        "the triggered retrain run",
        lambda: [r for r in runs_of(stack, "retrain/on-event") if r["id"] not in before],
        120,
        interval_s=1,
    )[0]
    wait_for_run(stack, retrain["id"], "retrain/on-event", 900)
    new_version = wait_until(
        "the service to serve the new champion",
        lambda: (v := served_version(stack)) != old_version and v,
        60,
    )
    say(f"retrained and promoted: the service now serves version {new_version}")
    return {
        "drift_detected": bool(drift_events),
        "drift_report_on_dashboard": on_dashboard,
        "monitor_flow_run_id": monitor_run,
        "retrain_flow_run_id": retrain["id"],
        "promoted": new_version != old_version,
        "old_version": old_version,
        "new_version": new_version,
        "served_version": served_version(stack),
    }


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


def persistent_drift_story(stack: LocalStack, secret: str) -> dict[str, Any]:
    """Drift that retraining cannot fix (feedback labels that contradict each other) and three
    ``prefect deployment run monitor/hourly`` in a row: one retrain, then "suppressed"."""
    say("persistent drift: tickets closed with contradictory categories; three monitor runs")
    send_drifted_traffic(stack, secret, 300, seed=23, scenario="contradictory")
    before = {run["id"] for run in runs_of(stack, "retrain/on-event")}
    decisions = []
    for attempt in range(3):
        monitor_run = run_deployment(stack, "monitor/hourly")
        wait_for_run(stack, monitor_run, "monitor/hourly", 300)
        decisions.append(retrain_decision(stack, monitor_run))
        if attempt == 0:
            started = wait_until(
                "the retrain of the persistent drift",
                lambda: [r for r in runs_of(stack, "retrain/on-event") if r["id"] not in before],
                120,
                interval_s=1,
            )
            wait_for_run(stack, started[0]["id"], "retrain/on-event", 900)
    time.sleep(3)  # a trigger acts within a second or two of its event
    retrains = [r for r in runs_of(stack, "retrain/on-event") if r["id"] not in before]
    say(f"monitor decisions: {decisions}; retrain runs started: {len(retrains)}")
    return {"persistent_drift_decisions": decisions, "persistent_drift_retrains": len(retrains)}


def label_story(stack: LocalStack, label_key: str) -> dict[str, Any]:
    """True labels are training data: /feedback takes them only with a label key."""
    answer = http_json(
        "POST", f"{stack.service_url}/predict", {"short_description": "olvidé mi contraseña"}
    )
    body = json.dumps({"request_id": answer["request_id"], "true_label": "acceso_contrasenas"})
    url = f"{stack.service_url}/feedback"
    without = post_raw(url, body.encode(), {})
    with_key = post_raw(url, body.encode(), {"X-API-Key": label_key})
    say(f"feedback without a label key: {without}; with the key: {with_key}")
    return {"label_without_key_status": without, "label_with_key_status": with_key}


def webhook_story(stack: LocalStack, secret: str) -> dict[str, Any]:
    """A signed retrain request starts a run; an unsigned and a replayed one start nothing: the
    service posts no event for them, and no further run appears."""
    before = {run["id"] for run in runs_of(stack, "retrain/on-event")}
    since = datetime.now(UTC).isoformat()
    body = {"reason": "demo: retrain requested by the ticketing system"}
    accepted = send_signed(stack, secret, "/webhooks/retrain", body, "demo-retrain-1")
    if accepted != 202:
        raise StackError(f"the signed retrain webhook answered {accepted}")
    started = wait_until(
        "the retrain run started by the webhook",
        lambda: [r for r in runs_of(stack, "retrain/on-event") if r["id"] not in before],
        120,
        interval_s=1,
    )
    known = before | {run["id"] for run in started}
    raw = json.dumps(body).encode()
    unsigned = post_raw(f"{stack.service_url}/webhooks/retrain", raw, {})
    replayed = send_signed(stack, secret, "/webhooks/retrain", body, "demo-retrain-1")
    time.sleep(2)  # the trigger acted on the signed request's event within a second or two
    extra = [r for r in runs_of(stack, "retrain/on-event") if r["id"] not in known]
    # The server stores events in batches, a moment after triggers have seen them.
    requested = wait_until(
        "the stored retrain event",
        lambda: events_since(stack, events.RETRAIN_REQUESTED, since),
        30,
    )
    say(f"webhook: signed 202 -> run {started[0]['id']}; unsigned {unsigned}, replayed {replayed}")
    wait_for_run(stack, started[0]["id"], "the webhook's retrain/on-event", 900)
    decided = wait_until(
        "the webhook retrain's decision",
        lambda: (
            events_since(stack, events.MODEL_PROMOTED, since)
            + events_since(stack, events.MODEL_REJECTED, since)
        ),
        30,
    )[0]
    outcome = "promoted" if decided["event"] == events.MODEL_PROMOTED else "not promoted"
    say(f"the webhook's retrain: {outcome} ({decided['payload'].get('reason')})")
    return {
        "webhook_outcome": outcome,
        "webhook_outcome_reason": decided["payload"].get("reason"),
        "webhook_flow_run_id": started[0]["id"],
        "unsigned_status": unsigned,
        "replayed_status": replayed,
        "retrain_events": len(requested),
        "runs_started_by_rejected_webhooks": len(extra),
    }


def start_run(home: Path, env: dict[str, str], args: argparse.Namespace) -> subprocess.Popen[bytes]:
    """``tickets run`` as ``make run`` starts it, in a session of its own (so that the SIGINT
    sent at the end is the only one it gets), its output in ``<home>/logs/tickets-run.log``."""
    log = home / "logs" / "tickets-run.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    command = [str(BIN / "tickets"), "run", "--port", str(args.api_port)]
    command += ["--prefect-port", str(args.prefect_port), "--mlflow-port", str(args.mlflow_port)]
    with log.open("ab") as output:
        return subprocess.Popen(
            command,
            env={**os.environ, **env},
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def first_prediction_s(stack: LocalStack, run: subprocess.Popen[bytes], started: float) -> float:
    """Seconds from the command's start to the first answered /predict."""

    def answered() -> bool:
        if run.poll() is not None:
            raise StackError(f"tickets run exited with {run.returncode}; see {stack.home}/logs")
        body = {"short_description": "no puedo entrar a mi cuenta"}
        return bool(http_json("POST", f"{stack.service_url}/predict", body).get("prediction"))

    wait_until("the first /predict", answered, 600, interval_s=0.25)
    return round(time.monotonic() - started, 1)


def wait_ready(stack: LocalStack, run: subprocess.Popen[bytes]) -> None:
    log = stack.home / "logs" / "tickets-run.log"

    def ready() -> bool:
        if run.poll() is not None:
            raise StackError(f"tickets run exited with {run.returncode}:\n{log.read_text()}")
        return "Ctrl-C stops everything." in log.read_text(errors="replace")

    wait_until("tickets run to start the loop", ready, 600, interval_s=0.5)


def ctrl_c(run: subprocess.Popen[bytes], home: Path) -> dict[str, Any]:
    """SIGINT, as Ctrl-C in its terminal sends; then which processes of the run are left."""
    started = time.monotonic()
    run.send_signal(signal.SIGINT)
    try:
        code = run.wait(timeout=180)
    except subprocess.TimeoutExpired:
        code = None
    left = processes_with("TICKETS_HOME", str(home))
    say(f"Ctrl-C: exit {code} after {time.monotonic() - started:.0f}s; processes left: {left}")
    return {"ctrl_c_exit": code, "processes_left": left}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__)
    parser.add_argument("--home", help="working folder (default: a new temporary one)")
    parser.add_argument("--rows", type=int, default=2000, help="baseline training tickets")
    parser.add_argument("--traffic", type=int, default=500, help="drifted tickets sent")
    parser.add_argument("--families", default="linear_svm,logistic_regression")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument(
        "--profile",
        default="fast",
        choices=["standard", "fast"],
        help="fast (default here: the demo retrains in seconds) or standard (with the encoder)",
    )
    parser.add_argument("--prefect-port", type=int, default=4300)
    parser.add_argument("--api-port", type=int, default=8300)
    parser.add_argument("--mlflow-port", type=int, default=5300, help="the MLflow UI (0: none)")
    args = parser.parse_args(argv)
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    home = Path(args.home or tempfile.mkdtemp(prefix="tickets-demo-")).resolve()
    data = home / "data" / "baseline.csv"
    data.parent.mkdir(parents=True, exist_ok=True)
    generate_tickets(args.rows, "baseline", seed=1).to_csv(data, index=False)
    s3 = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    s3.start()
    host, port = s3.get_host_and_port()
    secret = new_webhook_secret()
    label_key = new_api_key()
    env = {
        "AWS_ACCESS_KEY_ID": "demo",
        "AWS_SECRET_ACCESS_KEY": "demo",
        "AWS_DEFAULT_REGION": "us-east-1",
        "TICKETS_HOME": str(home),
        "TICKETS_STORE_URL": "s3://tickets-demo/models",
        "TICKETS_S3_ENDPOINT_URL": f"http://{host}:{port}",
        "TICKETS_DATA_PATH": str(data),
        "TICKETS_FAMILIES": args.families,
        "TICKETS_TRIALS": str(args.trials),
        "TICKETS_PROFILE": args.profile,
        "TICKETS_TIMEOUT_S": "60",
        "TICKETS_MODEL_POLL_S": "1",
        "TICKETS_MONITOR_WINDOW": "1h",
        "TICKETS_WEBHOOK_SECRETS": secret,
        "TICKETS_LABEL_API_KEYS": label_key,
        "PREFECT_WORKER_QUERY_SECONDS": "2",
    }
    import boto3

    boto3.client(
        "s3",
        endpoint_url=env["TICKETS_S3_ENDPOINT_URL"],
        aws_access_key_id="demo",
        aws_secret_access_key="demo",
        region_name="us-east-1",
    ).create_bucket(Bucket="tickets-demo")
    # A handle on what `tickets run` starts, to reach it (this process starts nothing with it).
    stack = LocalStack(home, env, args.prefect_port, args.api_port, mlflow_port=args.mlflow_port)
    say(f"home {home}; S3 on {env['TICKETS_S3_ENDPOINT_URL']}; tickets run")
    started = time.monotonic()
    run = start_run(home, env, args)
    result: dict[str, Any] = {}
    try:
        result["first_prediction_s"] = first_prediction_s(stack, run, started)
        say(f"first /predict answered {result['first_prediction_s']}s after tickets run started")
        wait_ready(stack, run)
        result["deployments"] = deployments_and_schedules(stack)
        if args.mlflow_port:
            with urllib.request.urlopen(f"http://127.0.0.1:{args.mlflow_port}/health") as ui:
                result["mlflow_ui"] = ui.status
        say(f"deployments: {result['deployments']}")
        result |= story(stack, secret, args.traffic)
        result |= persistent_drift_story(stack, secret)
        result |= label_story(stack, label_key)
        result |= webhook_story(stack, secret)
        # Ctrl-C comes while the worker runs a flow (in a session of its own): it goes too.
        manual = run_deployment(stack, "train/manual")
        result["running_at_ctrl_c"] = wait_until(
            "train/manual to run",
            lambda: (s := flow_run_state(stack, manual)) in {"RUNNING", *FINAL_STATES} and s,
            120,
            interval_s=0.5,
        )
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        result |= ctrl_c(run, home)
        s3.stop()
    print(json.dumps(result))
    return 0 if result["promoted"] and not result["processes_left"] else 1


if __name__ == "__main__":
    sys.exit(main())
