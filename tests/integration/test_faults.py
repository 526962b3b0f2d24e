"""The service under real faults, over real HTTP, with clients sending predictions all along: the
S3 server stopped and restarted on the same port, a garbage or dangling champion pointer, a
PostgreSQL restart (pg_ctl), a worker killed with SIGKILL, a flood of unauthenticated labels and
tickets of 10,000 characters without a space. Every test checks that the service recovers by
itself and that no acknowledged prediction is missing from the log."""

from __future__ import annotations

import contextlib
import os
import signal
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import httpx
import pandas as pd
import pytest

from benchmarks.load import SteadyLoad
from core.io.store import CHAMPION_KEY, open_store
from core.predlog import open_prediction_log
from core.release.bundle import MODEL_FILE, bundle_key, champion_pointer, swap_pointer
from core.setting_groups import ServingSettings
from core.settings import Settings
from deployments.local_servers import PostgresServer, RestartableS3
from deployments.local_servers import restartable_s3 as start_s3
from serving.app import create_app
from tests.integration.conftest import (
    publish_model,
    running,
    serve_process,
    wait_for,
    wait_for_workers,
)

pytestmark = pytest.mark.integration
LABEL_KEY = "fault-tests-label-key"


def children(pid: int) -> set[int]:
    """The live child processes of ``pid`` (every thread's list, from /proc)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):
            found |= {int(child) for child in (task / "children").read_text().split()}
    return found


def health(url: str) -> dict[str, Any]:
    return dict(httpx.get(f"{url}/health", timeout=10).json())


def served_version(url: str) -> str | None:
    model = health(url)["model"]
    return str(model["model_version"]) if model else None


def assert_nothing_lost(settings: Settings, load: SteadyLoad) -> None:
    print(f"answers {dict(load.statuses)}, transport errors {load.transport_errors}")
    assert load.unexpected == [], load.unexpected[:5]
    with open_prediction_log(settings) as log:
        logged = set(log.window()["request_id"])
    missing = set(load.acknowledged) - logged
    assert not missing, f"{len(missing)} acknowledged predictions are not in the log"


@pytest.fixture
def restartable_s3(s3_endpoint: str) -> Iterator[RestartableS3]:
    """An S3 server of the test's own (the session's stays up), on the test's AWS variables."""
    s3 = start_s3()
    yield s3
    s3.stop()


def _s3_settings(tmp_path: Path, s3: RestartableS3, **overrides: Any) -> Settings:
    bucket = f"faults-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=s3.endpoint).create_bucket(Bucket=bucket)
    return Settings(
        home=tmp_path / "home",
        store_url=f"s3://{bucket}/models",
        s3_endpoint_url=s3.endpoint,
        serving=ServingSettings(model_poll_s=0.2, model_watch_max_backoff_s=0.6),
        s3_connect_timeout_s=0.5,
        s3_read_timeout_s=2,
        s3_max_attempts=1,
        **overrides,
    )


def test_an_s3_outage_keeps_the_old_model_serving_and_a_new_champion_is_picked_up_after(
    tmp_path: Path, demo_frame: pd.DataFrame, restartable_s3: RestartableS3
) -> None:
    settings = _s3_settings(tmp_path, restartable_s3)
    publish_model(settings, demo_frame, "v1", "1")
    with running(create_app(settings)) as url, SteadyLoad(url) as load:
        load.answered(20)
        restartable_s3.stop()
        watch = wait_for(
            lambda: (w := health(url)["model_watch"])["consecutive_failures"] >= 3 and w,
            "the watch to count the outage",
        )
        assert watch["last_error_kind"] == "TransientStoreError"
        during = load.statuses[200]
        load.answered(during + 20)  # the old model answers all through the outage
        restartable_s3.start()
        publish_model(settings, demo_frame, "v2", "2")
        wait_for(lambda: served_version(url) == "2", "the new champion after the outage", 10)
        assert health(url)["model_watch"]["consecutive_failures"] == 0
        load.answered(load.statuses[200] + 10)
    assert load.versions == {"1", "2"}
    assert_nothing_lost(settings, load)


def test_a_service_started_while_the_store_is_down_becomes_ready_by_itself(
    tmp_path: Path, demo_frame: pd.DataFrame, restartable_s3: RestartableS3
) -> None:
    settings = _s3_settings(tmp_path, restartable_s3)
    publish_model(settings, demo_frame, "v1", "1")
    restartable_s3.stop()
    with running(create_app(settings)) as url:
        not_ready = httpx.get(f"{url}/ready")
        assert not_ready.status_code == 503 and int(not_ready.headers["retry-after"]) > 0
        assert not_ready.json()["model_watch"]["last_error_kind"] == "TransientStoreError"
        answer = httpx.post(f"{url}/predict", json={"short_description": "clave"})
        assert answer.status_code == 503 and answer.headers["retry-after"]
        restartable_s3.start()
        wait_for(lambda: httpx.get(f"{url}/ready").status_code == 200, "readiness", 10)
        assert httpx.post(f"{url}/predict", json={"short_description": "clave"}).status_code == 200


@pytest.mark.parametrize("garbage", [b"null", b"1", b"[]", b"{}", b'{"bundle_id": 7', b"\xff"])
def test_a_garbage_pointer_keeps_the_old_model_and_a_valid_one_is_picked_up(
    tmp_path: Path, demo_frame: pd.DataFrame, restartable_s3: RestartableS3, garbage: bytes
) -> None:
    settings = _s3_settings(tmp_path, restartable_s3)
    publish_model(settings, demo_frame, "v1", "1")
    store = open_store(settings)
    with running(create_app(settings)) as url, SteadyLoad(url, clients=2) as load:
        load.answered(10)
        store.put(CHAMPION_KEY, garbage)
        watch = wait_for(
            lambda: (w := health(url)["model_watch"])["consecutive_failures"] >= 2 and w,
            "the watch to refuse the pointer",
        )
        assert watch["last_error_kind"] == "BundleError"
        assert served_version(url) == "1"
        load.answered(load.statuses[200] + 10)
        publish_model(settings, demo_frame, "v2", "2")
        wait_for(lambda: served_version(url) == "2", "the valid pointer", 10)
    assert_nothing_lost(settings, load)


def test_a_champion_whose_bundle_is_gone_is_refused_then_loaded_once_it_is_back(
    tmp_path: Path, demo_frame: pd.DataFrame, restartable_s3: RestartableS3
) -> None:
    settings = _s3_settings(tmp_path, restartable_s3)
    publish_model(settings, demo_frame, "v1", "1")
    store = open_store(settings)
    with running(create_app(settings)) as url, SteadyLoad(url, clients=2) as load:
        load.answered(10)
        # v2 is promoted, then its model file vanishes. The pointer is made while the file is
        # there (a pointer is never made otherwise) and written after it is gone, so no poll
        # of the service can load v2 in between.
        publish_model(settings, demo_frame, "v2", "2", champion=False)
        pointer = champion_pointer(store, "v2")
        model_key = bundle_key("v2", MODEL_FILE)
        saved = store.get(model_key)
        store.delete(model_key)
        _, token = store.read_versioned(CHAMPION_KEY)
        assert swap_pointer(store, pointer, token)
        wait_for(lambda: health(url)["model_watch"]["consecutive_failures"] >= 1, "a refusal")
        load.answered(load.statuses[200] + 10)
        store.put(model_key, saved)
        wait_for(lambda: served_version(url) == "2", "the restored bundle", 10)
    assert "1" in load.versions and "2" in load.versions
    assert_nothing_lost(settings, load)


def test_a_postgresql_restart_answers_503_then_recovers_by_itself(
    tmp_path: Path, demo_frame: pd.DataFrame, postgres_server: PostgresServer
) -> None:
    settings = Settings(home=tmp_path / "home", prediction_log_url=postgres_server.url)
    publish_model(settings, demo_frame)
    started = _postmaster_start(postgres_server.url)
    with running(create_app(settings)) as url, SteadyLoad(url) as load:
        load.answered(30)
        postgres_server.restart()
        assert _postmaster_start(postgres_server.url) != started, "the server really restarted"
        before = load.statuses[200]
        load.answered(before + 30)  # by itself: nobody restarts the service
        wait_for(lambda: httpx.get(f"{url}/ready").status_code == 200, "readiness", 10)
    assert_nothing_lost(settings, load)


def _postmaster_start(url: str) -> str:
    import psycopg

    with psycopg.connect(url) as connection:
        return str(connection.execute("SELECT pg_postmaster_start_time()").fetchone())


def test_a_killed_worker_loses_no_acknowledged_prediction_and_is_replaced(
    tmp_path: Path, demo_frame: pd.DataFrame
) -> None:
    settings = Settings(home=tmp_path / "home")
    publish_model(settings, demo_frame)
    with (
        serve_process(settings.home, workers=2) as (url, server),
        SteadyLoad(url, clients=6) as load,
    ):
        load.answered(50)
        pids = wait_for_workers(url, 2)  # both answer (serve_process waited for them already)
        before = children(server.pid)
        assert pids <= before
        victim = min(pids)
        os.kill(victim, signal.SIGKILL)
        # The supervisor starts a replacement within a second or two; the replacement then boots
        # (imports, loads and verifies the bundle, starts its lane) on cores the load keeps busy,
        # which on a loaded two-core machine can take a minute, hence the generous wait.
        (newcomer,) = wait_for(lambda: children(server.pid) - before, "a new worker process", 60)
        wait_for(
            lambda: newcomer in {health(url)["worker_pid"] for _ in range(20)},
            f"the new worker {newcomer} to answer",
            240,
        )
        with pytest.raises(ProcessLookupError):
            os.kill(victim, 0)
        load.answered(load.statuses[200] + 50)
    assert_nothing_lost(settings, load)


def test_a_flood_of_unauthenticated_labels_writes_nothing(
    tmp_path: Path, demo_frame: pd.DataFrame
) -> None:
    settings = Settings(home=tmp_path / "home", label_api_keys=(LABEL_KEY,))
    publish_model(settings, demo_frame)
    with running(create_app(settings)) as url:
        ids = [
            httpx.post(f"{url}/predict", json={"short_description": f"clave {i}"}).json()[
                "request_id"
            ]
            for i in range(20)
        ]

        def attack(worker: int) -> Counter[int]:
            statuses: Counter[int] = Counter()
            with httpx.Client(base_url=url) as http:
                for i in range(worker, 1000, 8):
                    key = {"X-API-Key": "guessed-label-key-" + str(i).zfill(4)}
                    headers = {} if i % 2 else key
                    if i % 3 == 0:
                        path = "/predict"
                        body = {"short_description": "clave", "true_label": "fraude"}
                    else:
                        path = "/feedback"
                        body = {"request_id": ids[i % len(ids)], "true_label": "fraude"}
                    statuses[http.post(path, json=body, headers=headers).status_code] += 1
            return statuses

        with ThreadPoolExecutor(8) as pool:
            statuses = sum(pool.map(attack, range(8)), Counter())
    assert statuses == Counter({401: 1000})
    log = open_prediction_log(settings)
    assert log.window()["true_label"].notna().sum() == 0
    assert log.count() == 20, "a refused labelled prediction is not logged either"
    log.close()


def test_tickets_of_ten_thousand_characters_without_a_space_are_all_answered(
    tmp_path: Path, demo_frame: pd.DataFrame
) -> None:
    settings = Settings(home=tmp_path / "home")
    publish_model(settings, demo_frame)
    long_tickets = [
        {"short_description": ("x@" if i % 2 else "<script") + chr(97 + i % 26) * 9990}
        for i in range(800)
    ]
    with running(create_app(settings)) as url, SteadyLoad(url, clients=2) as load:

        def send(start: int) -> int:
            batch = {"tickets": long_tickets[start : start + 50]}
            return httpx.post(f"{url}/predict/batch", json=batch, timeout=60).status_code

        with ThreadPoolExecutor(4) as pool:
            statuses = list(pool.map(send, range(0, 800, 50)))
        load.answered(load.statuses[200] + 10)  # ordinary tickets were answered meanwhile
    assert statuses == [200] * 16
    assert_nothing_lost(settings, load)
    log = open_prediction_log(settings)
    assert log.count() >= 800 + len(load.acknowledged)
    log.close()


@contextlib.contextmanager
def _silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never answers: a database that hangs."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


def test_liveness_answers_at_once_while_the_prediction_log_hangs(
    tmp_path: Path, demo_frame: pd.DataFrame
) -> None:
    """A probe with Kubernetes' default 1 s timeout: /livez answers, /health (which waits on the
    log's pool, up to its timeout: 2 s here, 5 s by default) would have had the worker killed."""
    with _silent_server() as port:
        url = f"postgresql://tickets@127.0.0.1:{port}/tickets"
        settings = Settings(home=tmp_path / "home", prediction_log_url=url, prediction_log_wait_s=2)
        publish_model(settings, demo_frame)
        with running(create_app(settings)) as service:
            for _ in range(3):
                live = httpx.get(f"{service}/livez", timeout=1)
                assert live.status_code == 200 and live.json()["status"] == "ok"
            with pytest.raises(httpx.TimeoutException):
                httpx.get(f"{service}/health", timeout=1)
            ready = httpx.get(f"{service}/ready", timeout=15)
            assert ready.status_code == 503 and ready.headers["Retry-After"]
