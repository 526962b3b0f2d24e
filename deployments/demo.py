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
from core.data.simulate import generate_tickets
from deployments.demo_calls import (
    FINAL_STATES,
    dashboard_report,
    deployments_and_schedules,
    events_since,
    flow_run_state,
    post_raw,
    retrain_decision,
    run_deployment,
    runs_of,
    say,
    send_drifted_traffic,
    send_signed,
    served_version,
    wait_for_run,
)
from deployments.stack import (
    BIN,
    LocalStack,
    StackError,
    http_json,
    processes_with,
    wait_until,
)


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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
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
    return parser.parse_args(argv)


def demo_environment(
    home: Path, data: Path, s3_url: str, args: argparse.Namespace, secret: str, label_key: str
) -> dict[str, str]:
    """What ``tickets run`` gets: the S3 server, the data, a small search, quick polling."""
    return {
        "AWS_ACCESS_KEY_ID": "demo",
        "AWS_SECRET_ACCESS_KEY": "demo",
        "AWS_DEFAULT_REGION": "us-east-1",
        "TICKETS_HOME": str(home),
        "TICKETS_STORE_URL": "s3://tickets-demo/models",
        "TICKETS_S3_ENDPOINT_URL": s3_url,
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


def stories(
    stack: LocalStack, args: argparse.Namespace, secret: str, label_key: str
) -> dict[str, Any]:
    """Everything the demo shows against a running loop, in order; ends with a flow running
    (``train/manual``, in a session of its own), so Ctrl-C must stop it too."""
    result: dict[str, Any] = {"deployments": deployments_and_schedules(stack)}
    if args.mlflow_port:
        with urllib.request.urlopen(f"http://127.0.0.1:{args.mlflow_port}/health") as ui:
            result["mlflow_ui"] = ui.status
    say(f"deployments: {result['deployments']}")
    result |= story(stack, secret, args.traffic)
    result |= persistent_drift_story(stack, secret)
    result |= label_story(stack, label_key)
    result |= webhook_story(stack, secret)
    manual = run_deployment(stack, "train/manual")
    result["running_at_ctrl_c"] = wait_until(
        "train/manual to run",
        lambda: (s := flow_run_state(stack, manual)) in {"RUNNING", *FINAL_STATES} and s,
        120,
        interval_s=0.5,
    )
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    home = Path(args.home or tempfile.mkdtemp(prefix="tickets-demo-")).resolve()
    data = home / "data" / "baseline.csv"
    data.parent.mkdir(parents=True, exist_ok=True)
    generate_tickets(args.rows, "baseline", seed=1).to_csv(data, index=False)
    s3 = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    s3.start()
    host, port = s3.get_host_and_port()
    secret, label_key = new_webhook_secret(), new_api_key()
    env = demo_environment(home, data, f"http://{host}:{port}", args, secret, label_key)
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
        result |= stories(stack, args, secret, label_key)
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
