"""The prediction log: every prediction with its inputs, label, confidence and top probabilities;
feedback fills in the true label. SQLite in WAL mode by default (a committed row survives the
process being killed); the drift monitor and the retraining set read from it."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    request_id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    model_version TEXT NOT NULL,
    short_description TEXT NOT NULL,
    close_notes TEXT NOT NULL DEFAULT '',
    prediction TEXT NOT NULL,
    confidence REAL NOT NULL,
    top_probabilities TEXT NOT NULL,
    true_label TEXT,
    feedback_at TEXT
);
CREATE INDEX IF NOT EXISTS predictions_created_at ON predictions (created_at);
"""
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
    """A SQLite prediction log. Thread-safe; every write is one committed transaction."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute("PRAGMA synchronous=FULL")
        self._connection.execute("PRAGMA busy_timeout=10000")
        self._connection.executescript(SCHEMA)

    def record(self, records: Sequence[PredictionRecord]) -> None:
        """Write predictions in one transaction; returns only once they are durable."""
        if not records:
            return
        placeholders = ", ".join("?" * len(COLUMNS))
        sql = f"INSERT INTO predictions ({', '.join(COLUMNS)}) VALUES ({placeholders})"
        with self._lock:
            self._connection.execute("BEGIN IMMEDIATE")
            try:
                self._connection.executemany(sql, [record.row() for record in records])
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise
            self._connection.execute("COMMIT")

    def add_feedback(self, feedback: Iterable[tuple[str, str]]) -> list[str]:
        """Set true labels by request id; returns the ids that were not found."""
        missing = []
        now = utc_now()
        with self._lock:
            self._connection.execute("BEGIN IMMEDIATE")
            try:
                for request_id, label in feedback:
                    cursor = self._connection.execute(FEEDBACK_SQL, (label, now, request_id))
                    if cursor.rowcount == 0:
                        missing.append(request_id)
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise
            self._connection.execute("COMMIT")
        return missing

    def window(self, since: str | None = None, limit: int | None = None) -> pd.DataFrame:
        """Predictions created at or after ``since`` (ISO time), newest ``limit`` of them."""
        sql = f"SELECT {', '.join(COLUMNS)} FROM predictions"
        params: list[Any] = []
        if since:
            sql += " WHERE created_at >= ?"
            params.append(since)
        sql += " ORDER BY created_at DESC"
        if limit:
            sql += " LIMIT ?"
            params.append(limit)
        with self._lock:
            rows = self._connection.execute(sql, params).fetchall()
        return pd.DataFrame(rows, columns=list(COLUMNS))

    def count(self) -> int:
        with self._lock:
            return int(self._connection.execute("SELECT COUNT(*) FROM predictions").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._connection.close()
