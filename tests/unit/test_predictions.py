from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from core.errors import InputError
from core.predictions import PredictionLog, PredictionRecord


def _record(i: int, label: str | None = None) -> PredictionRecord:
    return PredictionRecord(
        request_id=f"r{i}",
        model_version="1",
        short_description=f"sesión {i}",
        close_notes="",
        prediction="acceso",
        confidence=0.8,
        top_probabilities={"acceso": 0.8, "pagos": 0.2},
        true_label=label,
    )


def test_records_feedback_and_window(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path / "p.db")
    log.record([_record(i) for i in range(5)])
    assert log.count() == 5
    assert log.add_feedback([("r1", "pagos"), ("nope", "x")]) == ["nope"]
    frame = log.window()
    assert len(frame) == 5
    row = frame.set_index("request_id").loc["r1"].to_dict()
    assert row["true_label"] == "pagos" and row["feedback_at"]
    assert json.loads(row["top_probabilities"]) == {"acceso": 0.8, "pagos": 0.2}
    assert len(log.window(limit=2)) == 2
    assert log.window(since="2999-01-01").empty


def test_wal_mode_and_rows_visible_to_another_connection(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path / "p.db")
    log.record([_record(1)])
    other = PredictionLog(tmp_path / "p.db")
    assert other.count() == 1
    mode = other._connection.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path / "p.db")
    threads = [
        threading.Thread(target=lambda k=k: log.record([_record(k * 100 + i) for i in range(50)]))
        for k in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert log.count() == 400


def test_window_start_parses_durations_and_refuses_nonsense() -> None:
    from datetime import UTC, datetime

    from core.predictions import window_start

    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    assert window_start("30m", now).startswith("2026-11-26T11:30:00")
    assert window_start("7d", now).startswith("2026-11-19T12:00:00")
    for bad in ("", "h", "-1h", "5y", "0s", "400d", "1.5h"):
        with pytest.raises(InputError, match="window"):
            window_start(bad, now)


def test_daily_aggregates_are_replaced_not_duplicated(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path / "log.db")
    log.save_daily("2026-11-25", {"count": 1})
    log.save_daily("2026-11-25", {"count": 2})
    log.save_daily("2026-11-26", {"count": 3})
    assert log.daily() == {"2026-11-25": {"count": 2}, "2026-11-26": {"count": 3}}


def test_webhook_ids_are_remembered_for_a_week_then_forgotten(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path / "log.db")
    assert log.claim_webhook("recent") and not log.claim_webhook("recent")
    log._connection.execute(
        "INSERT INTO webhook_ids (webhook_id, received_at) VALUES ('old', '2020-01-01T00:00:00')"
    )
    assert log.claim_webhook("another")
    assert log.claim_webhook("old"), "an id older than the retention is forgotten"
    assert not log.claim_webhook("recent")
