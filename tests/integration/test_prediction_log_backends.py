"""The prediction log behaves the same on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from core.predlog import Claim, PredictionLog, PredictionRecord, open_prediction_log
from core.settings import Settings
from serving.app import create_app
from tests.integration.conftest import publish_model, running

pytestmark = pytest.mark.integration
LABEL_KEY = "label-key-for-the-test"


@pytest.fixture(params=["sqlite", "postgresql"])
def log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PredictionLog]:
    if request.param == "sqlite":
        settings = Settings(home=tmp_path)
    else:
        settings = Settings(
            home=tmp_path, prediction_log_url=request.getfixturevalue("postgres_url")
        )
    opened = open_prediction_log(settings)
    yield opened
    opened.close()


def _record(request_id: str, label: str | None = None) -> PredictionRecord:
    return PredictionRecord(
        request_id=request_id,
        model_version="7",
        short_description="sesión bloqueada ñandú",
        close_notes="",
        prediction="acceso",
        confidence=0.8125,
        top_probabilities={"acceso": 0.8125, "pagos": 0.1875},
        true_label=label,
    )


def test_records_feedback_window_daily_and_webhook_ids(log: PredictionLog) -> None:
    prefix = uuid.uuid4().hex
    ids = [f"{prefix}-{i}" for i in range(5)]
    before = log.count()
    log.record([_record(request_id) for request_id in ids])
    assert log.count() == before + 5
    assert log.add_feedback([(ids[1], "pagos"), ("nope", "x")]) == ["nope"]
    frame = log.window().set_index("request_id")
    row = frame.loc[ids[1]].to_dict()
    assert row["true_label"] == "pagos" and row["feedback_at"] and row["confidence"] == 0.8125
    assert json.loads(row["top_probabilities"]) == {"acceso": 0.8125, "pagos": 0.1875}
    assert frame.loc[ids[0], "short_description"] == "sesión bloqueada ñandú"
    assert len(log.window(limit=2)) == 2 and log.window(since="2999-01-01").empty
    assert ("sesión bloqueada ñandú", "pagos") in {
        (r.short_description, r.label) for r in log.feedback_rows().itertuples()
    }
    today = row["feedback_at"][:10]
    received = dict(log.labels_by_day("2000-01-01"))
    assert received[today] >= 1
    # A labeller's undo: only the label it set, and the ticket is unlabelled again.
    assert log.clear_feedback(ids[1], "acceso") == "changed"
    assert log.clear_feedback(ids[1], "pagos") == "cleared"
    assert log.clear_feedback(ids[1]) == "unknown" and log.clear_feedback("nope") == "unknown"
    cleared = log.window().set_index("request_id").loc[ids[1]]
    assert cleared["true_label"] is None and cleared["feedback_at"] is None
    assert dict(log.labels_by_day("2000-01-01")).get(today, 0) == received[today] - 1
    assert log.add_feedback([(ids[1], "pagos")]) == []
    log.save_daily(f"{prefix}-day", {"count": 1})
    log.save_daily(f"{prefix}-day", {"count": 2})
    assert log.daily()[f"{prefix}-day"] == {"count": 2}
    hook = f"{prefix}-hook"
    assert log.claim_webhook(hook) is Claim.CLAIMED
    assert log.claim_webhook(hook) is Claim.IN_PROGRESS
    log.release_webhook(hook)
    assert log.claim_webhook(hook) is Claim.CLAIMED
    assert log.add_feedback([(ids[2], "acceso")], webhook_id=hook) == []
    assert log.claim_webhook(hook) is Claim.DUPLICATE
    aggregates = log.aggregates(since="2000-01-01")
    assert sum(n for *_, n, _, _ in aggregates.groups) == log.count()
    assert (("pagos", "acceso", 1) in aggregates.confusion) or log.count() > 5
    sampled = log.sample(since="2000-01-01", max_rows=3, seed=1)
    assert len(sampled) <= 3 and set(sampled.columns) >= {"short_description", "prediction"}
    window = log.drift_window("2000-01-01", max_rows=10**6, sample_rows=2, seed=1)
    assert list(window.rows.columns) == ["model_version", "prediction", "confidence", "true_label"]
    assert len(window.rows) == log.count() and len(window.sample) <= 2
    assert set(window.sample["request_id"]) <= set(log.window()["request_id"])


def test_a_failed_batch_writes_nothing_and_concurrent_writers_lose_nothing(
    log: PredictionLog,
) -> None:
    prefix = uuid.uuid4().hex
    log.record([_record(f"{prefix}-dup")])
    before = log.count()
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
        log.record([_record(f"{prefix}-new"), _record(f"{prefix}-dup")])
    assert log.count() == before
    threads = [
        threading.Thread(
            target=lambda k=k: log.record([_record(f"{prefix}-{k}-{i}") for i in range(25)])
        )
        for k in range(6)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert log.count() == before + 150
    results = log.record_each(
        [_record(f"{prefix}-ok-1"), _record(f"{prefix}-dup"), _record(f"{prefix}-ok-2")]
    )
    assert results[0] is None and results[1] is not None and results[2] is None
    assert log.count() == before + 152, "one refused row does not fail its group"


def test_the_service_logs_to_postgresql_when_a_url_is_given(
    tmp_path: Path, demo_frame: pd.DataFrame, postgres_url: str
) -> None:
    settings = Settings(home=tmp_path, prediction_log_url=postgres_url, label_api_keys=(LABEL_KEY,))
    publish_model(settings, demo_frame)
    with running(create_app(settings)) as url:
        nul = httpx.post(f"{url}/predict", json={"short_description": "clave\x00bloqueada"})
        assert nul.status_code == 400 and "short_description" in nul.text
        answer = httpx.post(f"{url}/predict", json={"short_description": "clave bloqueada"})
        assert answer.status_code == 200
        request_id = answer.json()["request_id"]
        feedback = {"request_id": request_id, "true_label": "acceso_contrasenas"}
        labelled = {"X-API-Key": LABEL_KEY}
        assert httpx.post(f"{url}/feedback", json=feedback, headers=labelled).json()["updated"] == 1
    log = open_prediction_log(settings)
    stored = log.window().set_index("request_id")
    assert stored.loc[request_id, "true_label"] == "acceso_contrasenas"
    assert not (tmp_path / "predictions.db").exists()
    log.close()


def _deadlocks(url: str) -> int:
    import psycopg

    with psycopg.connect(url) as connection:
        row = connection.execute(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
        assert row is not None
        return int(row[0])


def test_two_workers_writing_labels_in_opposite_orders_never_deadlock(postgres_url: str) -> None:
    """Two workers (a pool each) commit groups whose labels come in opposite orders, and label
    the same tickets in opposite orders: the hourly-rollup upserts and the feedback updates take
    their row locks in one order, so PostgreSQL never fails a group with "deadlock detected"."""
    from core.predlog import PostgresPredictionLog

    version = f"v-{uuid.uuid4().hex[:8]}"
    labels = [f"clase-{i:02d}" for i in range(12)]
    workers = [PostgresPredictionLog(postgres_url) for _ in range(2)]
    before = _deadlocks(postgres_url)
    failures: list[BaseException] = []
    ids: list[list[str]] = [[], []]

    def write(worker: int) -> None:
        order = labels if worker == 0 else labels[::-1]
        try:
            for group in range(150):
                batch = [
                    PredictionRecord(
                        f"{version}-{worker}-{group}-{label}", version, "t", "", label, 0.5, {}
                    )
                    for label in order
                ]
                workers[worker].record(batch)
                ids[worker] += [record.request_id for record in batch]
        except BaseException as exc:
            failures.append(exc)

    def label(worker: int) -> None:
        shared = sorted(ids[0])[:200]
        order = shared if worker == 0 else shared[::-1]
        try:
            for _ in range(20):
                workers[worker].add_feedback([(request_id, "clase-00") for request_id in order])
        except BaseException as exc:
            failures.append(exc)

    try:
        for target in (write, label):
            threads = [threading.Thread(target=target, args=(w,)) for w in (0, 1)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        assert not failures, failures[:3]
        assert _deadlocks(postgres_url) == before
        hours = workers[0].prediction_hours(since="2000-01-01")
        assert sum(h.n for h in hours if h.model_version == version) == 2 * 150 * 12
    finally:
        for worker in workers:
            worker.close()


@pytest.fixture
def fresh_postgres_url(postgres_url: str) -> Iterator[str]:
    """A database of the test's own on the session's server."""
    import psycopg

    name = f"fresh_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    yield postgres_url.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_workers_opening_a_log_without_its_rollup_at_once_backfill_it_once(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """An older log (predictions, no hourly rollup) opened by several workers at once: no
    opener fails, and every prediction is counted once."""
    url = request.getfixturevalue("fresh_postgres_url") if backend == "postgresql" else None
    settings = Settings(home=tmp_path, prediction_log_url=url)
    with open_prediction_log(settings) as log:
        log.record([_record(f"old-{i}") for i in range(40)])
        with log.dialect.write() as cursor:
            cursor.execute("DELETE FROM prediction_hours")
    opened: list[PredictionLog] = []
    failures: list[BaseException] = []

    def open_one() -> None:
        try:
            opened.append(open_prediction_log(settings))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert not failures, failures[:3]
        opened[0].record([_record("new-1")])
        assert sum(hour.n for hour in opened[0].prediction_hours(since="2000-01-01")) == 41
    finally:
        for log in opened:
            log.close()


@pytest.mark.slow
def test_after_a_long_postgresql_outage_the_log_is_back_within_seconds_of_the_database(
    postgres_server: Any,
) -> None:
    """The pool's wait between reconnection attempts doubled without a cap: after 80 s down
    the log stayed away 33 s more. Capped at 2 s, it is back within a few seconds of the
    server, however long the outage was."""
    import time

    from core.errors import LogUnavailableError
    from core.predlog import PostgresPredictionLog

    log = PostgresPredictionLog(postgres_server.url, timeout_s=1.0)
    try:
        log.record_each([_record(f"before-{uuid.uuid4()}")])
        postgres_server.stop()
        down_until = time.monotonic() + 40
        try:
            while time.monotonic() < down_until:  # callers keep trying, as the service does
                with pytest.raises(LogUnavailableError):
                    log.record_each([_record(f"during-{uuid.uuid4()}")])
                time.sleep(0.5)
        finally:
            postgres_server.start()
        back = time.monotonic()
        while True:
            try:
                log.record_each([_record(f"after-{uuid.uuid4()}")])
                break
            except LogUnavailableError:
                assert time.monotonic() - back < 10, "still away 10 s after the database"
                time.sleep(0.25)
    finally:
        log.close()
