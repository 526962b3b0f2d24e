"""The prediction log: every prediction with its inputs, label, confidence and top probabilities;
feedback fills in the true label. SQLite in WAL mode by default (a committed row survives the
process being killed); the drift monitor and the retraining set read from it."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from core.errors import InputError
from core.settings import Settings

SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    request_id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    model_version TEXT NOT NULL,
    short_description TEXT NOT NULL,
    close_notes TEXT NOT NULL DEFAULT '',
    prediction TEXT NOT NULL,
    confidence DOUBLE PRECISION NOT NULL,
    top_probabilities TEXT NOT NULL,
    true_label TEXT,
    feedback_at TEXT
);
CREATE INDEX IF NOT EXISTS predictions_created_at ON predictions (created_at);
CREATE TABLE IF NOT EXISTS webhook_ids (
    webhook_id TEXT PRIMARY KEY,
    received_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS daily_metrics (
    day TEXT PRIMARY KEY,
    saved_at TEXT NOT NULL,
    metrics TEXT NOT NULL
);
"""
SAVE_DAILY_SQL = """
INSERT INTO daily_metrics (day, saved_at, metrics) VALUES (?, ?, ?)
ON CONFLICT (day) DO UPDATE SET saved_at = excluded.saved_at, metrics = excluded.metrics
"""
WEBHOOK_ID_RETENTION = timedelta(days=7)
"""How long a webhook id is remembered: senders retry with the same id for about a day."""
WINDOW_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
FEEDBACK_SQL = "UPDATE predictions SET true_label = ?, feedback_at = ? WHERE request_id = ?"
COLUMNS = (
    "request_id",
    "created_at",
    "model_version",
    "short_description",
    "close_notes",
    "prediction",
    "confidence",
    "top_probabilities",
    "true_label",
    "feedback_at",
)


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def window_start(window: str, now: datetime | None = None) -> str:
    """The ISO start time of a window such as ``30m``, ``24h`` or ``7d``; ValueError otherwise."""
    text = window.strip().lower()
    if len(text) < 2 or text[-1] not in WINDOW_UNITS or not text[:-1].isdigit():
        raise InputError(f"window {window!r} is not a duration like 30m, 24h or 7d")
    seconds = int(text[:-1]) * WINDOW_UNITS[text[-1]]
    if not 0 < seconds <= 366 * 86400:
        raise InputError(f"window {window!r} must be between 1s and 366d")
    start = (now or datetime.now(UTC)) - timedelta(seconds=seconds)
    return start.isoformat(timespec="microseconds")


@dataclass(frozen=True)
class PredictionRecord:
    request_id: str
    model_version: str
    short_description: str
    close_notes: str
    prediction: str
    confidence: float
    top_probabilities: dict[str, float]
    true_label: str | None = None
    created_at: str = field(default_factory=utc_now)

    def row(self) -> tuple[Any, ...]:
        return (
            self.request_id,
            self.created_at,
            self.model_version,
            self.short_description,
            self.close_notes,
            self.prediction,
            self.confidence,
            json.dumps(self.top_probabilities, ensure_ascii=False),
            self.true_label,
            self.created_at if self.true_label else None,
        )


class PredictionLog:
    """A prediction log in SQLite (WAL mode, every commit fsynced). Thread-safe; every write is
    one committed transaction. ``PostgresPredictionLog`` is the same log on PostgreSQL."""

    begin = "BEGIN IMMEDIATE"

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._connection: Any = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute("PRAGMA synchronous=FULL")
        self._connection.execute("PRAGMA busy_timeout=10000")
        self._connection.executescript(SCHEMA)

    def _sql(self, sql: str) -> str:
        """The statement in this database's parameter style."""
        return sql

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        cursor = self._connection.cursor()
        cursor.execute(self._sql(sql), tuple(params))
        return cursor

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        with self._lock:
            self._connection.cursor().execute(self.begin)
            try:
                yield
            except BaseException:
                self._connection.cursor().execute("ROLLBACK")
                raise
            self._connection.cursor().execute("COMMIT")

    def record(self, records: Sequence[PredictionRecord]) -> None:
        """Write predictions in one transaction; returns only once they are durable."""
        if not records:
            return
        placeholders = ", ".join("?" * len(COLUMNS))
        sql = f"INSERT INTO predictions ({', '.join(COLUMNS)}) VALUES ({placeholders})"
        with self._transaction():
            self._connection.cursor().executemany(
                self._sql(sql), [record.row() for record in records]
            )

    def add_feedback(self, feedback: Iterable[tuple[str, str]]) -> list[str]:
        """Set true labels by request id; returns the ids that were not found."""
        missing = []
        now = utc_now()
        with self._transaction():
            for request_id, label in feedback:
                if self._execute(FEEDBACK_SQL, (label, now, request_id)).rowcount == 0:
                    missing.append(request_id)
        return missing

    def window(
        self, since: str | None = None, limit: int | None = None, until: str | None = None
    ) -> pd.DataFrame:
        """Predictions created in [``since``, ``until``) (ISO times), newest ``limit`` of them."""
        sql = f"SELECT {', '.join(COLUMNS)} FROM predictions WHERE 1 = 1"
        params: list[Any] = []
        if since:
            sql += " AND created_at >= ?"
            params.append(since)
        if until:
            sql += " AND created_at < ?"
            params.append(until)
        sql += " ORDER BY created_at DESC"
        if limit:
            sql += " LIMIT ?"
            params.append(limit)
        with self._lock:
            rows = self._execute(sql, params).fetchall()
        return pd.DataFrame(rows, columns=list(COLUMNS))

    def claim_webhook(self, webhook_id: str) -> bool:
        """Record a webhook id; False when it was already there (a replay). Shared by every
        process that opens the same log, so an id is accepted once across workers."""
        sql = (
            "INSERT INTO webhook_ids (webhook_id, received_at) VALUES (?, ?) ON CONFLICT DO NOTHING"
        )
        expired = (datetime.now(UTC) - WEBHOOK_ID_RETENTION).isoformat(timespec="microseconds")
        with self._lock:
            self._execute("DELETE FROM webhook_ids WHERE received_at < ?", (expired,))
            return int(self._execute(sql, (webhook_id, utc_now())).rowcount) == 1

    def release_webhook(self, webhook_id: str) -> None:
        """Forget a claimed id whose work failed, so the sender's retry is accepted."""
        with self._lock:
            self._execute("DELETE FROM webhook_ids WHERE webhook_id = ?", (webhook_id,))

    def feedback_rows(self) -> pd.DataFrame:
        """Every prediction with a true label, as a training table (short, notes, label)."""
        sql = (
            "SELECT short_description, close_notes, true_label AS label FROM predictions "
            "WHERE true_label IS NOT NULL ORDER BY created_at"
        )
        with self._lock:
            rows = self._execute(sql).fetchall()
        return pd.DataFrame(rows, columns=["short_description", "close_notes", "label"])

    def save_daily(self, day: str, metrics: dict[str, Any]) -> str:
        """Store (or replace) the aggregate of ``day`` (YYYY-MM-DD); returns the time saved."""
        saved_at = utc_now()
        payload = json.dumps(metrics, ensure_ascii=False, sort_keys=True)
        with self._lock:
            self._execute(SAVE_DAILY_SQL, (day, saved_at, payload))
        return saved_at

    def daily(self) -> dict[str, dict[str, Any]]:
        """Saved daily aggregates by day."""
        with self._lock:
            rows = self._execute("SELECT day, metrics FROM daily_metrics").fetchall()
        return {day: json.loads(metrics) for day, metrics in rows}

    def count(self) -> int:
        with self._lock:
            return int(self._execute("SELECT COUNT(*) FROM predictions").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._connection.close()


class PostgresPredictionLog(PredictionLog):
    """The prediction log on PostgreSQL (a committed transaction is durable by default)."""

    begin = "BEGIN"

    def __init__(self, url: str) -> None:
        import psycopg

        self.path = Path(url)
        self._lock = threading.Lock()
        self._connection = psycopg.connect(url, autocommit=True)
        with self._lock:
            self._connection.execute(SCHEMA)

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s")


def open_prediction_log(settings: Settings) -> PredictionLog:
    """PostgreSQL when ``prediction_log_url`` is set, else SQLite under ``home``."""
    if settings.prediction_log_url:
        return PostgresPredictionLog(settings.prediction_log_url)
    return PredictionLog(settings.predictions_path())
