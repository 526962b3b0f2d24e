from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

import pytest

from core.errors import InputError
from core.predlog import Claim, PredictionLog, PredictionRecord
from core.records import PromotionRecord


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
    with other.dialect.read() as cursor:
        mode = cursor.execute("PRAGMA journal_mode").fetchone()[0]
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

    from core.predlog.log import window_start

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
    assert log.claim_webhook("recent") is Claim.CLAIMED
    log.finish_webhook("recent")
    assert log.claim_webhook("recent") is Claim.DUPLICATE
    with log.dialect.write() as cursor:
        cursor.execute(
            "INSERT INTO webhook_ids (webhook_id, received_at) "
            "VALUES ('old', '2020-01-01T00:00:00')"
        )
    assert log.claim_webhook("another") is Claim.CLAIMED
    assert log.claim_webhook("old") is Claim.CLAIMED, "an id older than the retention is forgotten"
    assert log.claim_webhook("recent") is Claim.DUPLICATE


def test_a_claim_is_in_progress_until_its_lease_runs_out_and_released_on_failure(
    tmp_path: Path,
) -> None:
    log = PredictionLog(tmp_path / "log.db")
    assert log.claim_webhook("w1", lease_s=60) is Claim.CLAIMED
    assert log.claim_webhook("w1", lease_s=60) is Claim.IN_PROGRESS, "someone is working on it"
    log.release_webhook("w1")
    assert log.claim_webhook("w1", lease_s=0) is Claim.CLAIMED, "released: the retry takes it"
    assert log.claim_webhook("w1", lease_s=60) is Claim.CLAIMED, "a lease that ran out is taken"
    log.finish_webhook("w1")
    log.release_webhook("w1")
    assert log.claim_webhook("w1") is Claim.DUPLICATE, "a finished id is never released"


def test_feedback_and_the_webhook_that_brought_it_commit_together(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path / "log.db")
    log.record([PredictionRecord("r1", "1", "clave", "", "a", 0.9, {})])
    assert log.claim_webhook("w1") is Claim.CLAIMED
    assert log.add_feedback([("r1", "b"), ("nope", "c")], webhook_id="w1") == ["nope"]
    assert log.claim_webhook("w1") is Claim.DUPLICATE
    assert log.window().loc[0, "true_label"] == "b"


def test_an_old_log_gains_the_new_webhook_columns(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE webhook_ids (webhook_id TEXT PRIMARY KEY, received_at TEXT NOT NULL)")
    old.execute("INSERT INTO webhook_ids VALUES ('before', '2999-01-01T00:00:00')")
    old.commit()
    old.close()
    log = PredictionLog(path)
    assert log.claim_webhook("before") is Claim.DUPLICATE, "ids received before count as done"


def test_a_row_the_database_refuses_fails_alone_in_its_group_commit(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path / "log.db")
    log.record([PredictionRecord("taken", "1", "clave", "", "a", 0.9, {})])
    group = [
        PredictionRecord("new-1", "1", "clave", "", "a", 0.9, {}),
        PredictionRecord("taken", "1", "otra", "", "a", 0.9, {}),  # the key exists: refused
        PredictionRecord("new-2", "1", "clave", "", "a", 0.9, {}),
    ]
    results = log.record_each(group)
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], sqlite3.IntegrityError)
    assert set(log.window()["request_id"]) == {"taken", "new-1", "new-2"}


def test_long_deletes_and_feedback_lists_go_in_bounded_transactions(tmp_path: Path) -> None:
    from core.predlog import predictions

    log = PredictionLog(tmp_path / "log.db")
    records = [
        PredictionRecord(f"r{i:04d}", "1", "t", "", "a", 0.9, {}, created_at="2020-01-01T00:00:00")
        for i in range(1200)
    ]
    log.record(records)
    assert log.claim_webhook("hook") is Claim.CLAIMED
    labels = [(f"r{i:04d}", "b") for i in range(1199, -1, -1)] + [("absent", "b")]
    assert log.add_feedback(labels, webhook_id="hook") == ["absent"]
    assert len(labels) > 2 * predictions.WRITE_CHUNK, "several transactions"
    assert log.claim_webhook("hook") is Claim.DUPLICATE, "the claim finished with the last chunk"
    assert log.window()["true_label"].eq("b").sum() == 1200
    deleted = log.delete_in_batches("predictions", "request_id", "created_at < ?", ("2021",), 500)
    assert deleted == 1200 and log.count() == 0


def test_the_history_tables_are_pruned(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path / "log.db")
    log.record_drift_report("2020-01-01T00:00:00", "1", None, {"drift_detected": False}, None)
    log.record_drift_report("2026-12-01T00:00:00", "1", None, {"drift_detected": False}, None)
    old = PromotionRecord(
        "2020-01-01T00:00:00", "b2", "2", "b1", "1", 0.9, 0.8, 0.1, None, True, "ok"
    )
    log.record_promotion(old)
    log.save_daily("2020-01-01", {"count": 1})
    log.save_daily("2026-11-30", {"count": 2})
    counts = log.delete_history_before("2026-06-01", "2026-01-01")
    assert counts == {"drift_reports": 1, "promotion_decisions": 1, "daily_metrics": 1}
    assert list(log.daily()) == ["2026-11-30"]
    assert [r.checked_at for r in log.drift_reports("2000-01-01")] == ["2026-12-01T00:00:00"]


def test_the_log_and_its_wal_files_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    """They hold ticket texts; the database was created 0644."""
    import stat

    from core.predlog import PredictionRecord

    path = tmp_path / "home" / "predictions.db"
    with PredictionLog(path) as log:
        log.record_each([PredictionRecord("r1", "1", "texto", "", "a", 0.9, {})])
        created = [p for p in path.parent.iterdir() if p.name.startswith("predictions.db")]
        assert {p.name for p in created} >= {"predictions.db", "predictions.db-wal"}
        for file in created:
            assert stat.S_IMODE(file.stat().st_mode) == 0o600, file.name
