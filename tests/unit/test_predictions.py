from __future__ import annotations

import json
import threading
from pathlib import Path

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
