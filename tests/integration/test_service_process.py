"""``tickets serve`` as separate processes: two workers sharing one prediction log and one
webhook-id table, and a schemathesis run against the published OpenAPI schema."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pandas as pd
import pytest

from core.auth.signing import sign
from core.predlog import PredictionLog
from core.settings import Settings
from deployments.stack import group_members, running
from tests.integration.conftest import publish_model, serve_process, wait_for

pytestmark = pytest.mark.integration
SECRET = "whsec_" + base64.b64encode(b"w" * 32).decode()


def test_two_workers_share_the_log_and_accept_a_webhook_id_once(
    tmp_path: Path, demo_frame: pd.DataFrame
) -> None:
    settings = Settings(home=tmp_path / "home")
    publish_model(settings, demo_frame)
    with serve_process(settings.home, workers=2, extra_env={"TICKETS_WEBHOOK_SECRETS": SECRET}) as (
        url,
        _,
    ):
        # serve_process waited until both workers answered (conftest.wait_for_workers).
        def predict(i: int) -> tuple[int, str]:
            with httpx.Client() as client:
                response = client.post(f"{url}/predict", json={"short_description": f"clave {i}"})
                pid = client.get(f"{url}/health").json()["worker_pid"]
            return response.status_code, f"{pid}:{response.json()['request_id']}"

        with ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(predict, range(240)))
        assert {status for status, _ in answers} == {200}
        pids = {tagged.split(":")[0] for _, tagged in answers}
        assert len(pids) == 2, "both workers should have answered"
        ids = {tagged.split(":")[1] for _, tagged in answers}
        assert ids <= set(PredictionLog(settings.predictions_path()).window()["request_id"])

        request_id = next(iter(ids))
        body = json.dumps({"tickets": [{"request_id": request_id, "true_label": "certificados"}]})
        headers = sign([SECRET], body.encode(), "msg-once")

        def deliver(_: int) -> tuple[int, dict]:
            response = httpx.post(f"{url}/webhooks/tickets", content=body, headers=headers)
            return response.status_code, response.json()

        with ThreadPoolExecutor(8) as pool:
            deliveries = list(pool.map(deliver, range(16)))
        # Exactly one delivery does the work; the others find it in progress (409, retry later)
        # or done (200, duplicate).
        worked = [answer for status, answer in deliveries if status == 200 and "updated" in answer]
        assert len(worked) == 1 and worked[0]["updated"] == 1
        others = [(status, answer.get("duplicate")) for status, answer in deliveries]
        assert all(pair in ((200, None), (200, True), (409, None)) for pair in others)
        log = PredictionLog(settings.predictions_path())
        assert log.window().set_index("request_id").loc[request_id, "true_label"] == "certificados"
        log.close()


def test_schemathesis_finds_no_server_errors(tmp_path: Path, demo_frame: pd.DataFrame) -> None:
    settings = Settings(home=tmp_path / "home")
    publish_model(settings, demo_frame)
    extra = {"TICKETS_WEBHOOK_SECRETS": SECRET, "TICKETS_MAX_BATCH": "20"}
    schemathesis = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert schemathesis, "schemathesis is installed with the dev dependencies"
    with serve_process(settings.home, extra_env=extra) as (url, _):
        done = subprocess.run(
            [
                schemathesis,
                "run",
                f"{url}/schema/openapi.json",
                "--checks",
                "not_a_server_error",
                "--max-examples",
                "40",
                "--seed",
                "1",
                "--no-color",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]
    assert "/predict" in done.stdout


def _samples(text: str, name: str) -> dict[str, float]:
    """{labels: value} of one metric in Prometheus text."""
    found = {}
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            found[key.removeprefix(name)] = float(value)
    return found


MAX_ROUNDS = 100


def test_metrics_sum_every_worker(tmp_path: Path, demo_frame: pd.DataFrame) -> None:
    settings = Settings(home=tmp_path / "home")
    publish_model(settings, demo_frame, "b7", "7")
    with serve_process(settings.home, workers=2) as (url, _):

        def predict(i: int) -> int:
            with httpx.Client() as client:  # a connection each, so either worker may take it
                answer = client.post(f"{url}/predict", json={"short_description": f"clave {i}"})
                assert answer.status_code == 200
                return int(client.get(f"{url}/health").json()["worker_pid"])  # same connection

        # Which worker accepts a connection is the kernel's choice: on two busy cores one worker
        # may take a whole round. Send rounds until both have answered (bounded), and count them.
        pids: set[int] = set()
        sent = 0
        with ThreadPoolExecutor(12) as pool:
            while len(pids) < 2 and sent < MAX_ROUNDS * 24:
                pids |= set(pool.map(predict, range(sent, sent + 24)))
                sent += 24
        empty = httpx.post(f"{url}/predict", json={"short_description": ""})
        assert empty.status_code == 400, empty.text
        assert len(pids) == 2, "both workers answered"
        text = httpx.get(f"{url}/metrics").text
    predicted = sum(_samples(text, "tickets_predictions_total").values())
    assert predicted == sent, "every worker's predictions, once"
    requests = _samples(text, "tickets_requests_total")
    assert requests['{endpoint="/predict",status="200"}'] == sent
    assert requests['{endpoint="/predict",status="400"}'] == 1
    assert _samples(text, "tickets_prediction_confidence_count")[""] == sent
    assert _samples(text, "tickets_model_info")['{family="logistic_regression",version="7"}'] == 1
    assert _samples(text, "tickets_log_commit_seconds_count")[""] >= 1
    assert "tickets_request_seconds_bucket" in text and "tickets_batch_queue_depth" in text
    assert "tickets_model_watch_failures_total" in text


@pytest.mark.parametrize("server_name", ["uvicorn", "granian"])
def test_sigterm_stops_the_whole_server_with_its_lane_process(
    tmp_path: Path, demo_frame: pd.DataFrame, server_name: str
) -> None:
    """Stopped soon after start, while its monitoring lane's process may still be warming up, a
    worker that is itself a multiprocessing child (granian's) once waited forever on exit for
    that process: the stop must reach it too."""
    settings = Settings(home=tmp_path / "home")
    publish_model(settings, demo_frame)
    with serve_process(settings.home, extra_env={"TICKETS_SERVER": server_name}) as (url, server):
        assert httpx.post(f"{url}/predict", json={"short_description": "clave"}).status_code == 200
        group = os.getpgid(server.pid)
        wait_for(lambda: len(group_members(group)) >= 3, "the worker's lane process", 120)
        for pid in _serve_commands(group):  # as `pkill -f "tickets serve"` does
            os.kill(pid, signal.SIGTERM)
        server.wait(timeout=120)
        wait_for(lambda: not group_members(group), "every process of the server to exit", 60)


def _serve_commands(pgid: int) -> list[int]:
    """The server's processes whose command line is ``tickets serve ...`` (under granian the
    supervisor and its worker; not the lane's process, a bare ``python -c``)."""
    found = []
    for pid in group_members(pgid):
        with contextlib.suppress(OSError):
            if b"tickets\x00serve\x00" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
    assert found, "no `tickets serve` process in the server's group"
    return found


def test_a_worker_killed_with_sigkill_leaves_no_helper_process_behind(
    tmp_path: Path, demo_frame: pd.DataFrame
) -> None:
    """Its monitoring lane's and shadow's processes (300-400 MB each) were re-parented and
    lived on for good: they now leave once the worker that started them is gone."""
    from core.io.store import open_store
    from core.release.rollout import start_challenger

    settings = Settings(home=tmp_path / "home")
    publish_model(settings, demo_frame)
    publish_model(settings, demo_frame.head(300), "shadow-bundle", "8", champion=False)
    start_challenger(open_store(settings), "8", "shadow")
    with serve_process(settings.home) as (url, server):
        group = os.getpgid(server.pid)
        for _ in range(20):  # the shadow's process starts with its first ticket
            assert (
                httpx.post(f"{url}/predict", json={"short_description": "clave"}).status_code == 200
            )
        wait_for(
            lambda: len(group_members(group)) >= 3, "the lane's and the shadow's processes", 120
        )
        helpers = [pid for pid in group_members(group) if pid not in _serve_commands(group)]
        assert len(helpers) >= 2, helpers
        for pid in _serve_commands(group):
            os.kill(pid, signal.SIGKILL)
        server.wait(timeout=30)
        wait_for(lambda: not any(running(pid) for pid in helpers), "the helpers to exit", 30)
