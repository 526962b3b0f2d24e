"""Real services, started once per session: an S3 server over HTTP on loopback (moto's server
mode) and a Prefect server (prefect_test_harness). MLflow runs on a SQLite file per test."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from deployments.local_servers import PostgresServer
from deployments.local_servers import postgres_server as local_postgres
from deployments.stack import free_port

BUCKET = "tickets"
TICKETS = str(Path(sys.executable).with_name("tickets"))
AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    saved = {key: os.environ.get(key) for key in AWS_TEST_ENV}
    os.environ.update(AWS_TEST_ENV)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
    yield endpoint
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[str]:
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield str(PREFECT_API_URL.value())


@contextlib.contextmanager
def running(app: Any) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on a free loopback port; yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the service did not start within 30 s"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def publish_model(
    settings: Any, frame: Any, bundle_id: str = "b1", version: str = "", champion: bool = True
) -> None:
    """Fit a small logistic-regression pipeline on ``frame`` and make it the champion (or only
    store its bundle, for a challenger)."""
    from core.io.store import CHAMPION_KEY, open_store
    from core.release.bundle import serialize_model, swap_champion, write_bundle
    from core.release.manifest import Manifest, MlflowRef
    from core.training.families import build_pipeline, default_params

    model = build_pipeline(
        "logistic_regression", default_params("logistic_regression"), "spanish", 0
    )
    model.fit(frame[["short_description", "close_notes"]], frame["label"].to_numpy(dtype=object))
    store = open_store(settings)
    manifest = Manifest(
        bundle_id=bundle_id,
        family="logistic_regression",
        metrics={"test_macro_f1": 0.8},
        mlflow=MlflowRef(model_version=version or None),
    )
    manifest = write_bundle(store, serialize_model(model), manifest)
    if not champion:
        return
    _, token = store.read_versioned(CHAMPION_KEY)  # whatever is there, garbage included
    assert swap_champion(store, manifest, token)


def register_model_version(settings: Any) -> str:
    """A new version of the registered model, on a run of its own (no model files behind it):
    what a training registers, for tests of promotion and the registry."""
    import mlflow

    from core.release.registry import experiment_id

    client = mlflow.MlflowClient(settings.tracking_uri())
    run = client.create_run(experiment_id(settings))
    name = settings.registered_model_name
    if not client.search_registered_models(f"name = '{name}'"):
        client.create_registered_model(name)
    source = f"{run.info.artifact_uri}/model"
    return str(client.create_model_version(name, source, run_id=run.info.run_id).version)


def publish_profiled_model(settings: Any, version: str = "3") -> None:
    """A small champion with the reference profile a training stores (what drift is measured
    against), without running the train flow."""
    from core.data.simulate import generate_tickets
    from core.io.store import open_store
    from core.release.bundle import read_champion, serialize_model, swap_champion, write_bundle
    from core.release.manifest import Manifest, MlflowRef
    from core.training.families import build_pipeline, default_params
    from core.training.refit import reference_profile, score

    text = ["short_description", "close_notes"]
    train = generate_tickets(600, "baseline", seed=5)
    test = generate_tickets(200, "baseline", seed=6)
    model = build_pipeline(
        "logistic_regression", default_params("logistic_regression"), "spanish", 0
    )
    model.fit(train[text], train["label"].to_numpy(dtype=object))
    evaluation, probabilities = score(model, test)
    manifest = Manifest(
        bundle_id="profiled",
        family="logistic_regression",
        labels=[str(label) for label in model.classes_],
        metrics={"test_macro_f1": evaluation.macro_f1},
        mlflow=MlflowRef(model_version=version),
        reference_profile=reference_profile(model, train, test, probabilities, settings),
    )
    store = open_store(settings)
    stored = write_bundle(store, serialize_model(model), manifest)
    assert swap_champion(store, stored, read_champion(store)[1])


def wait_for(check: Callable[[], Any], what: str, timeout_s: float = 60) -> Any:
    """``check()`` once it is truthy (tried every 0.1 s; connection errors count as not yet)."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError, KeyError, TypeError):
            value = check()
            if value:
                return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def wait_for_http(
    url: str, process: subprocess.Popen[bytes], what: str, log: Path | None = None
) -> None:
    """Wait up to two minutes for ``url`` to answer 200; fail with the process's stderr (or the
    end of ``log``) if it exits or never answers."""
    import httpx

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.2)
    stderr = process.stderr.read().decode() if process.stderr else ""
    if log is not None and log.exists():
        stderr = log.read_text(errors="replace")
    raise AssertionError(f"{what} did not become ready: {stderr[-2000:]}")


def wait_for_workers(url: str, workers: int, timeout_s: float = 120) -> set[int]:
    """Wait until ``workers`` distinct worker pids have answered /health, each call on a new
    connection: /ready answers from the first worker up, and the others may still be booting
    (each also starts its monitoring lane's process), so a test that counts on all of them
    (spreading load, killing one) would otherwise depend on which one the kernel picked."""
    import httpx

    seen: set[int] = set()
    deadline = time.monotonic() + timeout_s
    while len(seen) < workers and time.monotonic() < deadline:
        seen.add(int(httpx.get(f"{url}/health", timeout=10).json()["worker_pid"]))
        if len(seen) < workers:
            time.sleep(0.05)
    assert len(seen) == workers, f"only {len(seen)} of {workers} workers answered"
    return seen


@contextlib.contextmanager
def serve_process(
    home: Path, workers: int = 1, extra_env: dict[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``tickets serve`` as a person starts it, waiting until /ready answers 200. It runs in a
    process group of its own, killed whole at the end: killing only the supervisor would leave
    its uvicorn workers running (and listening) after the test."""
    port = free_port()
    env = {**os.environ, "TICKETS_HOME": str(home), **(extra_env or {})}
    command = [TICKETS, "serve", "--port", str(port), "--workers", str(workers)]
    server = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/ready", server, "tickets serve")
        wait_for_workers(url, workers)
        yield url, server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A throw-away PostgreSQL server on loopback, shared by the session; tests may restart it."""
    with local_postgres() as server:
        if server is None:
            pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed here")
        yield server


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    return postgres_server.url


def artifact_keys(flow_run_id: str) -> set[str]:
    """Keys of the artifacts a flow run made (read from the Prefect API)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async def read() -> set[str]:
        async with get_client() as client:
            artifacts = await client.read_artifacts(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )
            return {str(a.key) for a in artifacts}

    return asyncio.run(read())
