"""Tracking against a real MLflow server whose artifacts go to S3 (the at-scale setup of
infra/, behind basic auth): runs land in the server, artifacts in the bucket, nothing in the
local home; and a promotion whose alias step the server refuses once is retried and recorded
once."""

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

import boto3
import httpx
import pytest

from core.data.simulate import generate_tickets
from core.io.store import open_store
from core.monitoring.tracking import log_drift_report
from core.predlog import open_prediction_log
from core.release.bundle import read_champion, serialize_model, swap_champion, write_bundle
from core.release.manifest import Manifest, MlflowRef
from core.release.promotion import PromotionOutcome
from core.release.registry import champion_alias, set_champion_alias
from core.settings import Settings
from core.training.families import build_pipeline, default_params
from deployments.stack import free_port
from tests.integration.conftest import BUCKET, register_model_version, wait_for_http

MLFLOW = str(Path(sys.executable).with_name("mlflow"))


ADMIN = ("admin", "an-admin-password-for-the-test")


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str) -> Iterator[str]:
    """The server as infra/docker-compose.yml runs it: behind MLflow's basic auth, its admin
    created from MLFLOW_AUTH_ADMIN_*; clients sign in with MLFLOW_TRACKING_USERNAME/PASSWORD.
    One for the module (it takes seconds to start)."""
    tmp_path = tmp_path_factory.mktemp("mlflow-server")
    monkeypatch = pytest.MonkeyPatch()
    port = free_port()
    command = [MLFLOW, "server", "--app-name", "basic-auth", "--host", "127.0.0.1"]
    command += ["--port", str(port)]
    command += ["--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}"]
    command += ["--artifacts-destination", f"s3://{BUCKET}/mlflow-artifacts", "--workers", "1"]
    env = {
        **os.environ,
        "MLFLOW_S3_ENDPOINT_URL": s3_endpoint,
        "MLFLOW_AUTH_ADMIN_USERNAME": ADMIN[0],
        "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN[1],
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "a-secret-key-for-the-test",
        "MLFLOW_AUTH_CONFIG_PATH": str(_auth_config(tmp_path)),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    log = tmp_path / "mlflow-server.log"
    with log.open("wb") as output:
        server = subprocess.Popen(
            command, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/health", server, "mlflow server", log)
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN[0])
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN[1])
        yield url
    finally:  # a throw-away server: no need to wait for its graceful shutdown (about 5 s)
        monkeypatch.undo()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=30)


def _auth_config(folder: Path) -> Path:
    """MLflow's own basic_auth.ini with its user store in the test's folder (the default is a
    SQLite file in the working directory)."""
    import mlflow.server.auth

    source = Path(mlflow.server.auth.__file__).with_name("basic_auth.ini").read_text()
    path = folder / "basic_auth.ini"
    # Credentials checked once a minute, not on every request (PBKDF2 each time otherwise).
    config = source.replace("sqlite:///basic_auth.db", f"sqlite:///{folder / 'basic_auth.db'}")
    path.write_text(config.replace("# auth_cache_ttl_seconds = 0", "auth_cache_ttl_seconds = 60"))
    return path


def test_runs_go_to_the_server_and_artifacts_to_s3(
    tmp_path: Path, mlflow_server: str, s3_endpoint: str
) -> None:
    home = tmp_path / "home"
    settings = Settings(home=home, mlflow_tracking_uri=mlflow_server)
    report = {
        "drift_score": 0.2,
        "drift_detected": False,
        "n_predictions": 150,
        "n_feedback": 0,
        "tests": [{"name": "text_length_ks", "statistic": 0.03}],
        "fired": [],
        "model_version": "1",
    }
    run_id = log_drift_report(settings, report, "# drift report", key="check-1")
    assert log_drift_report(settings, report, "# drift report", key="check-1") == run_id

    runs = f"{mlflow_server}/api/2.0/mlflow/runs/get"
    assert httpx.get(runs, params={"run_id": run_id}).status_code == 401, "no anonymous reads"
    run = httpx.get(runs, params={"run_id": run_id}, auth=ADMIN).json()
    assert run["run"]["info"]["artifact_uri"].startswith("mlflow-artifacts:")
    objects = boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(
        Bucket=BUCKET, Prefix="mlflow-artifacts/"
    )
    keys = [item["Key"] for item in objects.get("Contents", [])]
    assert any(key.endswith(f"{run_id}/artifacts/drift_report.md") for key in keys), keys
    assert not (home / "mlartifacts").exists()


# A promotion that fails after the champion pointer moved (the MLflow server answers 503 to the
# alias step) and is retried records and announces the promotion once, with the numbers it was
# decided on; a rerun of the whole flow adds nothing.

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
def faulty_proxy(mlflow_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultyProxy]:
    """The module's server behind a proxy that can refuse alias requests; the client's own
    retries would hide the 503s it sends."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    proxy = FaultyProxy(mlflow_server, failures=0)
    yield proxy
    proxy.close()


def _fit(rows: int) -> Any:
    data = generate_tickets(rows, "baseline", seed=30)
    model = build_pipeline("linear_svm", default_params("linear_svm"), "spanish", seed=0)
    text = ["short_description", "close_notes"]
    return model.fit(data[text], data["label"].to_numpy(dtype=object))


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
    tmp_path: Path, faulty_proxy: FaultyProxy, prefect_api: str
) -> None:
    from prefect import flow

    from tasks.publishing import announce_promotion, promote

    proxy = faulty_proxy
    settings = Settings(
        home=tmp_path / "home",
        mlflow_tracking_uri=proxy.url,
        registered_model_name=f"tickets-{uuid.uuid4().hex[:8]}",
    )
    store = open_store(settings)
    # Bundle ids of the test's own: the session's Prefect server also holds other tests' events.
    tag = uuid.uuid4().hex[:8]
    old = Manifest(bundle_id=f"old-{tag}", family="linear_svm", mlflow=MlflowRef(model_version="1"))
    assert register_model_version(settings) == "1"
    assert swap_champion(store, write_bundle(store, serialize_model(_fit(120)), old), None)
    set_champion_alias(settings, "1")
    version = register_model_version(settings)
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
