"""The prediction log behaves the same on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

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
