"""A promotion that fails after the champion pointer moved (the MLflow server answers 503 to the
alias step) and is retried records and announces the promotion once, with the numbers it was
decided on; a rerun of the whole flow adds nothing."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import httpx
import mlflow
import pytest

from core.data.simulate import generate_tickets
from core.io.store import open_store
from core.predlog import open_prediction_log
from core.release.bundle import read_champion, serialize_model, swap_champion, write_bundle
from core.release.manifest import Manifest, MlflowRef
from core.release.promotion import PromotionOutcome
from core.release.registry import champion_alias, experiment_id, set_champion_alias
from core.settings import Settings
from core.training.families import build_pipeline, default_params
from deployments.stack import free_port
from tests.integration.conftest import wait_for_http

pytestmark = pytest.mark.integration
MLFLOW = str(Path(sys.executable).with_name("mlflow"))
ALIAS_PATH = "/api/2.0/mlflow/registered-models/alias"


class FaultyProxy:
    """An HTTP proxy in front of the MLflow server that answers 503 to the first ``failures``
    requests that set an alias, and forwards everything else."""

    def __init__(self, upstream: str, failures: int) -> None:
        self.upstream = upstream
        self.failures = failures
        self.refused = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if (
                    self.command == "POST"
                    and self.path.startswith(ALIAS_PATH)
                    and proxy.refused < proxy.failures
                ):
                    proxy.refused += 1
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                answer = httpx.request(
                    self.command, proxy.upstream + self.path, content=body, headers=headers
                )
                self.send_response(answer.status_code)
                for name in ("Content-Type",):
                    if name in answer.headers:
                        self.send_header(name, answer.headers[name])
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_POST = do_PATCH = do_DELETE = _forward

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def mlflow_behind_proxy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultyProxy]:
    port = free_port()
    command = [MLFLOW, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    command += ["--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]
    command += ["--artifacts-destination", (tmp_path / "artifacts").as_uri()]
    log = tmp_path / "mlflow.log"
    with log.open("wb") as output:
        server = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    proxy = None
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", server, "mlflow server", log)
        # The client's own retries would hide the 503s the proxy sends.
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        proxy = FaultyProxy(f"http://127.0.0.1:{port}", failures=0)
        yield proxy
    finally:
        if proxy is not None:
            proxy.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=30)


def _fit(rows: int) -> Any:
    data = generate_tickets(rows, "baseline", seed=30)
    model = build_pipeline("linear_svm", default_params("linear_svm"), "spanish", seed=0)
    text = ["short_description", "close_notes"]
    return model.fit(data[text], data["label"].to_numpy(dtype=object))


def _register(settings: Settings) -> str:
    client = mlflow.MlflowClient(settings.tracking_uri())
    run = client.create_run(experiment_id(settings))
    name = settings.registered_model_name
    if not client.search_registered_models(f"name = '{name}'"):
        client.create_registered_model(name)
    source = f"{run.info.artifact_uri}/model"
    return str(client.create_model_version(name, source, run_id=run.info.run_id).version)


def _promoted_events(api: str, version: str) -> list[dict[str, Any]]:
    body = {
        "filter": {
            "event": {"name": ["tickets.model.promoted"]},
            "resource": {"id": [f"tickets.model.{version}"]},
            "occurred": {"since": "2020-01-01T00:00:00Z"},
        }
    }
    response = httpx.post(f"{api}/events/filter", json=body, timeout=10)
    response.raise_for_status()
    return list(response.json()["events"])


def _flush_events(api: str) -> None:
    """Wait until every event emitted so far is stored: emit a marker after them and wait for
    it (the server persists events in arrival order, in batches)."""
    from prefect.events import emit_event
    from prefect.events.worker import EventsWorker

    marker = emit_event(event="tickets.test.marker", resource={"prefect.resource.id": "test"})
    assert marker is not None
    EventsWorker.drain_all()
    body = {
        "filter": {
            "event": {"name": ["tickets.test.marker"]},
            "occurred": {"since": "2020-01-01T00:00:00Z"},
        }
    }
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        stored = httpx.post(f"{api}/events/filter", json=body, timeout=10).json()["events"]
        if any(event["id"] == str(marker.id) for event in stored):
            return
        time.sleep(0.5)
    raise AssertionError("the marker event never arrived")


def test_a_promotion_retried_after_the_pointer_moved_is_recorded_and_announced_once(
    tmp_path: Path, mlflow_behind_proxy: FaultyProxy, prefect_api: str
) -> None:
    from prefect import flow

    from tasks.training import announce_promotion, promote

    proxy = mlflow_behind_proxy
    settings = Settings(home=tmp_path / "home", mlflow_tracking_uri=proxy.url)
    store = open_store(settings)
    # Bundle ids of the test's own: the session's Prefect server also holds other tests' events.
    tag = uuid.uuid4().hex[:8]
    old = Manifest(bundle_id=f"old-{tag}", family="linear_svm", mlflow=MlflowRef(model_version="1"))
    assert _register(settings) == "1"
    assert swap_champion(store, write_bundle(store, serialize_model(_fit(120)), old), None)
    set_champion_alias(settings, "1")
    version = _register(settings)
    new = Manifest(
        bundle_id=f"new-{tag}", family="linear_svm", mlflow=MlflowRef(model_version=version)
    )
    challenger = _fit(900)
    new = write_bundle(store, serialize_model(challenger), new)
    rows = generate_tickets(400, "baseline", seed=31)

    @flow(name="promotion-retry-test")
    def promote_and_announce() -> PromotionOutcome:
        outcome = promote(settings, new, challenger, rows)
        announce_promotion(settings, new, outcome)
        return outcome

    proxy.failures = 1  # the alias step after the pointer moved answers 503 once
    first = cast("PromotionOutcome", promote_and_announce())
    assert proxy.refused == 1, "the alias step failed once and the task was retried"
    pointer, _ = read_champion(store)
    assert pointer is not None and pointer.bundle_id == new.bundle_id
    assert champion_alias(settings) == version
    assert first.promoted and first.champion_bundle_id == old.bundle_id
    assert first.challenger_macro_f1 > 0.5 and first.gain is not None and first.gain_ci
    assert "already champion" not in first.reason

    promote_and_announce()  # the whole flow run again: still one promotion
    _flush_events(prefect_api)
    with open_prediction_log(settings) as log:
        history = [r for r in log.promotions("2000-01-01") if r.challenger == new.bundle_id]
    assert len(history) == 1, history
    record = history[0]
    assert record.promoted and record.champion == old.bundle_id
    assert record.champion_version == "1"
    assert record.challenger_macro_f1 == pytest.approx(first.challenger_macro_f1)
    assert record.gain == pytest.approx(first.gain)
    events = [
        event
        for event in _promoted_events(prefect_api, version)
        if event["payload"]["challenger"] == new.bundle_id
    ]
    assert len(events) == 1, [e["id"] for e in events]
    assert events[0]["payload"]["challenger_macro_f1"] == pytest.approx(first.challenger_macro_f1)
