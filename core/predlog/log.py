"""The prediction log: every prediction with its inputs, label, confidence and top probabilities;
feedback fills in the true label. SQLite in WAL mode by default (a committed row survives the
process being killed), PostgreSQL through a small pool of health-checked connections at scale;
the drift monitor, the retraining set and the monitoring endpoints read from it.

Failures of the database itself (a restart, a lost connection, a lock held too long, a full disk)
raise ``LogUnavailableError``: the service answers 503 with ``Retry-After`` and the caller may try
again. A row the database refuses for its content raises that backend's own error, and
``record_each`` isolates it from the other rows of a group commit.
"""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import pandas as pd

from core.errors import InputError, LogUnavailableError
from core.predlog.history import HISTORY_SCHEMA, HOUR_UPSERT, HistoryTables, hour_rows
from core.records import RetrainDecision, WindowAggregates
from core.settings import Settings, duration_seconds

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
CREATE INDEX IF NOT EXISTS predictions_window
    ON predictions (created_at, model_version, prediction, confidence, true_label);
CREATE TABLE IF NOT EXISTS webhook_ids (
    webhook_id TEXT PRIMARY KEY,
    received_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS daily_metrics (
    day TEXT PRIMARY KEY,
    saved_at TEXT NOT NULL,
    metrics TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS retrain_decisions (
    decision_id TEXT PRIMARY KEY,
    decided_at TEXT NOT NULL,
    model_version TEXT NOT NULL,
    fired TEXT NOT NULL,
    action TEXT NOT NULL,
    reason TEXT NOT NULL,
    source TEXT NOT NULL,
    next_allowed_at TEXT,
    outcome TEXT,
    outcome_at TEXT
);
CREATE INDEX IF NOT EXISTS retrain_decisions_model
    ON retrain_decisions (model_version, decided_at);
"""
DECISION_COLUMNS = (
    "decision_id",
    "decided_at",
    "model_version",
    "fired",
    "action",
    "reason",
    "source",
    "next_allowed_at",
    "outcome",
)
#: Columns added after the first release; added to older databases when they are opened.
ADDED_COLUMNS = (
    ("webhook_ids", "state", "TEXT NOT NULL DEFAULT 'done'"),
    ("webhook_ids", "lease_until", "TEXT"),
)
SAVE_DAILY_SQL = """
INSERT INTO daily_metrics (day, saved_at, metrics) VALUES (?, ?, ?)
ON CONFLICT (day) DO UPDATE SET saved_at = excluded.saved_at, metrics = excluded.metrics
"""
WEBHOOK_ID_RETENTION = timedelta(days=7)
"""How long a webhook id is remembered: senders retry with the same id for about a day."""
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
LOW_CONFIDENCE = 0.5


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def window_seconds(window: str) -> int:
    """Seconds in a window such as ``30m``, ``24h`` or ``7d``; InputError otherwise."""
    try:
        return duration_seconds(window)
    except InputError as exc:
        raise InputError(f"window {exc}") from exc


def window_start(window: str, now: datetime | None = None, longest: str = "366d") -> str:
    """The ISO start time of a window such as ``30m``, ``24h`` or ``7d``, at most ``longest``
    back; InputError otherwise."""
    seconds = window_seconds(window)
    if not 0 < seconds <= window_seconds(longest):
        raise InputError(f"window {window!r} must be between 1s and {longest}")
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


class Claim(StrEnum):
    """What ``claim_webhook`` found: the id is now ours, was done before, or is being worked on
    by someone whose lease has not run out."""

    CLAIMED = "claimed"
    DUPLICATE = "duplicate"
    IN_PROGRESS = "in_progress"


class PredictionLog(HistoryTables):
    """The prediction log in SQLite (WAL mode, every commit fsynced). Thread-safe: writes go
    through one connection under a lock, one committed transaction each; reads use a second
    connection, so a long read never holds up a write. ``PostgresPredictionLog`` is the same log
    on PostgreSQL."""

    def __init__(self, path: Path, wait_s: float = 5.0) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.wait_ms = int(wait_s * 1000)
        self._lock = threading.Lock()
        self._read_lock = threading.Lock()
        with self._errors():
            self._connection = self._connect(busy_timeout_ms=self.wait_ms)
            self._connection.execute("PRAGMA journal_mode=WAL")
            self._connection.executescript(SCHEMA + HISTORY_SCHEMA)
            self._add_columns()
            self._backfill_hours(self._connection.cursor())
            self._reader = self._connect(busy_timeout_ms=self.wait_ms)

    def _connect(self, busy_timeout_ms: int) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        return connection

    def _add_columns(self) -> None:
        for table, column, definition in ADDED_COLUMNS:
            existing = {row[1] for row in self._connection.execute(f"PRAGMA table_info({table})")}
            if column not in existing:
                self._connection.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """The database's own failures as LogUnavailableError; a row's content errors pass."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            raise LogUnavailableError(f"prediction log unavailable: {exc}") from exc

    @contextlib.contextmanager
    def _write(self) -> Iterator[Any]:
        """One committed transaction on the write connection; yields a cursor."""
        with self._lock, self._errors():
            cursor = self._connection.cursor()
            cursor.execute("BEGIN IMMEDIATE")
            try:
                yield cursor
            except BaseException:
                cursor.execute("ROLLBACK")
                raise
            cursor.execute("COMMIT")

    @contextlib.contextmanager
    def _read(self) -> Iterator[Any]:
        """A cursor on the read connection (WAL: it sees committed rows, blocks no writer)."""
        with self._read_lock, self._errors():
            yield self._reader.cursor()

    def _sql(self, sql: str) -> str:
        """The statement in this database's parameter style."""
        return sql

    def record(self, records: Sequence[PredictionRecord]) -> None:
        """Write predictions in one transaction; returns only once they are durable."""
        if not records:
            return
        placeholders = ", ".join("?" * len(COLUMNS))
        sql = self._sql(f"INSERT INTO predictions ({', '.join(COLUMNS)}) VALUES ({placeholders})")
        hours = hour_rows(
            [(r.created_at, r.model_version, r.prediction, r.confidence) for r in records]
        )
        with self._write() as cursor:
            cursor.executemany(sql, [record.row() for record in records])
            cursor.executemany(self._sql(HOUR_UPSERT), hours)

    def record_each(self, records: Sequence[PredictionRecord]) -> list[Exception | None]:
        """Write a group in one commit; if the database refuses a row for its content, write
        the rows one by one so that only that row fails. Per row: None, or its error. A log that
        is unavailable raises for the whole group."""
        try:
            self.record(records)
            return [None] * len(records)
        except LogUnavailableError:
            raise
        except Exception:
            if len(records) == 1:
                raise
        results: list[Exception | None] = []
        for record in records:
            try:
                self.record([record])
                results.append(None)
            except LogUnavailableError:
                raise
            except Exception as exc:
                results.append(exc)
        return results

    def add_feedback(
        self, feedback: Iterable[tuple[str, str]], webhook_id: str | None = None
    ) -> list[str]:
        """Set true labels by request id; returns the ids that were not found. With
        ``webhook_id`` the claim on it is marked done in the same transaction, so the labels and
        the record that they arrived are committed together or not at all."""
        missing = []
        now = utc_now()
        with self._write() as cursor:
            for request_id, label in feedback:
                cursor.execute(self._sql(FEEDBACK_SQL), (label, now, request_id))
                if cursor.rowcount == 0:
                    missing.append(request_id)
            if webhook_id is not None:
                self._finish(cursor, webhook_id)
        return missing

    def window(
        self, since: str | None = None, limit: int | None = None, until: str | None = None
    ) -> pd.DataFrame:
        """Predictions created in [``since``, ``until``) (ISO times), newest ``limit`` of them."""
        where, params = self._where(since, until)
        sql = f"SELECT {', '.join(COLUMNS)} FROM predictions WHERE {where} ORDER BY created_at DESC"
        if limit:
            sql += " LIMIT ?"
            params.append(limit)
        with self._read() as cursor:
            cursor.execute(self._sql(sql), params)
            rows = cursor.fetchall()
        return pd.DataFrame(rows, columns=list(COLUMNS))

    def sample(
        self,
        since: str,
        max_rows: int,
        seed: int,
        model_version: str | None = None,
        until: str | None = None,
    ) -> pd.DataFrame:
        """The window's rows (of one model version, if given), or an evenly spread, seeded
        sample of about ``max_rows`` of them when there are more: every k-th row in insertion
        order from a seeded offset. Reads at most ``max_rows`` rows whatever the window holds."""
        where, params = self._where(since, until)
        if model_version is not None:
            where += " AND model_version = ?"
            params.append(model_version)
        with self._read() as cursor:
            cursor.execute(self._sql(f"SELECT COUNT(*) FROM predictions WHERE {where}"), params)
            total = int(cursor.fetchone()[0])
            sql = f"SELECT {', '.join(COLUMNS)} FROM predictions WHERE {where}"
            if total > max_rows:
                step = math.ceil(total / max_rows)
                sql += f" AND {self._sample_key()} % ? = ?"
                params = [*params, step, seed % step]
            cursor.execute(self._sql(sql + " ORDER BY created_at LIMIT ?"), [*params, max_rows])
            rows = cursor.fetchall()
        return pd.DataFrame(rows, columns=list(COLUMNS))

    def _sample_key(self) -> str:
        """A non-negative integer per row, spread evenly: SQLite's rowid (insertion order)."""
        return "rowid"

    def aggregates(self, since: str, until: str | None = None) -> WindowAggregates:
        """Counts and sums of a window, computed by the database (no row leaves it)."""
        where, params = self._where(since, until)
        groups_sql = (
            "SELECT model_version, prediction, COUNT(*), SUM(confidence), "
            f"SUM(CASE WHEN confidence < {LOW_CONFIDENCE} THEN 1 ELSE 0 END), "
            f"MIN(created_at), MAX(created_at) FROM predictions WHERE {where} "
            "GROUP BY model_version, prediction"
        )
        confusion_sql = (
            "SELECT true_label, prediction, COUNT(*) FROM predictions "
            f"WHERE {where} AND true_label IS NOT NULL GROUP BY true_label, prediction"
        )
        with self._read() as cursor:
            cursor.execute(self._sql(groups_sql), params)
            groups = cursor.fetchall()
            cursor.execute(self._sql(confusion_sql), params)
            confusion = cursor.fetchall()
        firsts = [row[5] for row in groups]
        lasts = [row[6] for row in groups]
        return WindowAggregates(
            groups=[(str(v), str(p), int(n), float(s), int(low)) for v, p, n, s, low, *_ in groups],
            confusion=[(str(t), str(p), int(n)) for t, p, n in confusion],
            first_at=str(min(firsts)) if firsts else None,
            last_at=str(max(lasts)) if lasts else None,
        )

    @staticmethod
    def _where(since: str | None, until: str | None) -> tuple[str, list[Any]]:
        where, params = "1 = 1", []
        if since:
            where += " AND created_at >= ?"
            params.append(since)
        if until:
            where += " AND created_at < ?"
            params.append(until)
        return where, params

    def claim_webhook(self, webhook_id: str, lease_s: float = 300) -> Claim:
        """Claim a webhook id before doing its work. Shared by every process that opens the same
        log, so an id is worked on once across workers: DUPLICATE when its work was done,
        IN_PROGRESS while someone else's lease runs, else CLAIMED (new, or a lease that ran out,
        so a crash between claim and work does not lose the work for good)."""
        now = datetime.now(UTC)
        expired = (now - WEBHOOK_ID_RETENTION).isoformat(timespec="microseconds")
        lease_until = (now + timedelta(seconds=lease_s)).isoformat(timespec="microseconds")
        stamp = now.isoformat(timespec="microseconds")
        insert = (
            "INSERT INTO webhook_ids (webhook_id, received_at, state, lease_until) "
            "VALUES (?, ?, 'claimed', ?) ON CONFLICT DO NOTHING"
        )
        with self._write() as cursor:
            cursor.execute(self._sql("DELETE FROM webhook_ids WHERE received_at < ?"), (expired,))
            cursor.execute(self._sql(insert), (webhook_id, stamp, lease_until))
            if cursor.rowcount == 1:
                return Claim.CLAIMED
            cursor.execute(
                self._sql(
                    "SELECT state, lease_until FROM webhook_ids WHERE webhook_id = ?"
                    + self._for_update()
                ),
                (webhook_id,),
            )
            state, current_lease = cursor.fetchone()
            if state == "done":
                return Claim.DUPLICATE
            if current_lease is not None and str(current_lease) > stamp:
                return Claim.IN_PROGRESS
            cursor.execute(
                self._sql("UPDATE webhook_ids SET lease_until = ? WHERE webhook_id = ?"),
                (lease_until, webhook_id),
            )
            return Claim.CLAIMED

    def _for_update(self) -> str:
        """SQLite's BEGIN IMMEDIATE already holds the write lock."""
        return ""

    def _lock_table(self, cursor: Any, table: str) -> None:
        """Serialise read-decide-write transactions on ``table`` (SQLite: already serial)."""

    def finish_webhook(self, webhook_id: str) -> None:
        """Mark a claimed id done: from now on a delivery with it is a duplicate."""
        with self._write() as cursor:
            self._finish(cursor, webhook_id)

    def _finish(self, cursor: Any, webhook_id: str) -> None:
        cursor.execute(
            self._sql("UPDATE webhook_ids SET state = 'done' WHERE webhook_id = ?"), (webhook_id,)
        )

    def release_webhook(self, webhook_id: str) -> None:
        """Forget a claimed id whose work failed, so the sender's retry is accepted."""
        with self._write() as cursor:
            cursor.execute(
                self._sql("DELETE FROM webhook_ids WHERE webhook_id = ? AND state = 'claimed'"),
                (webhook_id,),
            )

    def record_decision(
        self,
        decide: Callable[[list[RetrainDecision]], RetrainDecision],
        model_version: str | None = None,
        since: str | None = None,
    ) -> RetrainDecision:
        """Decide from the earlier decisions (of ``model_version``, since ``since``) and store
        the decision, in one transaction: two monitors deciding at once cannot both retrain."""
        where, params = "1 = 1", []
        if model_version is not None:
            where += " AND model_version = ?"
            params.append(model_version)
        if since is not None:
            where += " AND decided_at >= ?"
            params.append(since)
        select = f"SELECT {', '.join(DECISION_COLUMNS)} FROM retrain_decisions WHERE {where}"
        placeholders = ", ".join("?" * len(DECISION_COLUMNS))
        insert = (
            f"INSERT INTO retrain_decisions ({', '.join(DECISION_COLUMNS)}) VALUES ({placeholders})"
        )
        with self._write() as cursor:
            self._lock_table(cursor, "retrain_decisions")
            cursor.execute(self._sql(select), params)
            history = [_decision(row) for row in cursor.fetchall()]
            decision = decide(history)
            cursor.execute(
                self._sql(insert),
                (
                    decision.decision_id,
                    decision.decided_at,
                    decision.model_version,
                    decision.fired_json(),
                    decision.action,
                    decision.reason,
                    decision.source,
                    decision.next_allowed_at,
                    decision.outcome,
                ),
            )
        return decision

    def record_outcome(self, decision_id: str, outcome: str) -> None:
        """How a requested retrain ended: promoted, not promoted or failed."""
        with self._write() as cursor:
            cursor.execute(
                self._sql(
                    "UPDATE retrain_decisions SET outcome = ?, outcome_at = ? WHERE decision_id = ?"
                ),
                (outcome, utc_now(), decision_id),
            )

    def forget_decision(self, decision_id: str) -> None:
        """Drop a decision whose request never reached Prefect, so the sender's retry counts."""
        with self._write() as cursor:
            cursor.execute(
                self._sql("DELETE FROM retrain_decisions WHERE decision_id = ?"), (decision_id,)
            )

    def decisions(self, since: str | None = None) -> list[RetrainDecision]:
        """Retrain decisions, oldest first."""
        where, params = ("decided_at >= ?", [since]) if since else ("1 = 1", [])
        sql = (
            f"SELECT {', '.join(DECISION_COLUMNS)} FROM retrain_decisions WHERE {where} "
            "ORDER BY decided_at"
        )
        with self._read() as cursor:
            cursor.execute(self._sql(sql), params)
            return [_decision(row) for row in cursor.fetchall()]

    def feedback_rows(self, since: str | None = None) -> pd.DataFrame:
        """Predictions with a true label (created since ``since``), as a training table (short,
        notes, label): the retraining set."""
        where, params = ("AND created_at >= ?", [since]) if since else ("", [])
        sql = (
            "SELECT short_description, close_notes, true_label AS label FROM predictions "
            f"WHERE true_label IS NOT NULL {where} ORDER BY created_at"
        )
        with self._read() as cursor:
            cursor.execute(self._sql(sql), params)
            rows = cursor.fetchall()
        return pd.DataFrame(rows, columns=["short_description", "close_notes", "label"])

    def delete_before(self, predictions: str, feedback: str) -> tuple[int, int]:
        """Delete unlabelled predictions created before ``predictions`` and labelled ones created
        before ``feedback`` (ISO times); returns (rows deleted, of which labelled)."""
        labelled_sql = "DELETE FROM predictions WHERE true_label IS NOT NULL AND created_at < ?"
        unlabelled_sql = "DELETE FROM predictions WHERE true_label IS NULL AND created_at < ?"
        with self._write() as cursor:
            cursor.execute(self._sql(labelled_sql), (feedback,))
            labelled = int(cursor.rowcount)
            cursor.execute(self._sql(unlabelled_sql), (predictions,))
            deleted = labelled + int(cursor.rowcount)
            cursor.execute(
                self._sql("DELETE FROM prediction_hours WHERE hour < ?"), (predictions[:13],)
            )
            return deleted, labelled

    def delete_decisions_before(self, cutoff: str) -> int:
        with self._write() as cursor:
            cursor.execute(
                self._sql("DELETE FROM retrain_decisions WHERE decided_at < ?"), (cutoff,)
            )
            return int(cursor.rowcount)

    def forget_old_webhook_ids(self) -> int:
        expired = (datetime.now(UTC) - WEBHOOK_ID_RETENTION).isoformat(timespec="microseconds")
        with self._write() as cursor:
            cursor.execute(self._sql("DELETE FROM webhook_ids WHERE received_at < ?"), (expired,))
            return int(cursor.rowcount)

    def save_daily(self, day: str, metrics: dict[str, Any]) -> str:
        """Store (or replace) the aggregate of ``day`` (YYYY-MM-DD); returns the time saved."""
        saved_at = utc_now()
        payload = json.dumps(metrics, ensure_ascii=False, sort_keys=True)
        with self._write() as cursor:
            cursor.execute(self._sql(SAVE_DAILY_SQL), (day, saved_at, payload))
        return saved_at

    def daily(self) -> dict[str, dict[str, Any]]:
        """Saved daily aggregates by day."""
        with self._read() as cursor:
            cursor.execute(self._sql("SELECT day, metrics FROM daily_metrics ORDER BY day"))
            rows = cursor.fetchall()
        return {day: json.loads(metrics) for day, metrics in rows}

    def count(self) -> int:
        with self._read() as cursor:
            cursor.execute("SELECT COUNT(*) FROM predictions")
            return int(cursor.fetchone()[0])

    def check_writable(self) -> None:
        """Raise LogUnavailableError unless a write could start now: a short-lived connection
        takes the write lock (waiting at most a second) and lets it go again."""
        with self._errors():
            probe = self._connect(busy_timeout_ms=1000)
            try:
                probe.execute("BEGIN IMMEDIATE")
                probe.execute("ROLLBACK")
            finally:
                probe.close()

    def close(self) -> None:
        with self._lock, self._read_lock:
            self._connection.close()
            self._reader.close()


def _decision(row: Sequence[Any]) -> RetrainDecision:
    decision_id, decided_at, version, fired, action, reason, source, next_at, outcome = row
    return RetrainDecision(
        str(decision_id),
        str(decided_at),
        str(version),
        tuple(json.loads(fired)),
        str(action),
        str(reason),
        str(source),
        next_at,
        outcome,
    )


class PostgresPredictionLog(PredictionLog):
    """The prediction log on PostgreSQL (a committed transaction is durable by default), over a
    small pool whose connections are checked before use. While the server is down or restarting,
    every call raises LogUnavailableError within ``timeout_s``; once it is back, new connections
    replace the broken ones by themselves."""

    def __init__(self, url: str, pool_size: int = 4, timeout_s: float = 5.0) -> None:
        import psycopg
        from psycopg_pool import ConnectionPool, PoolTimeout

        self.path = Path("postgresql")
        self._unavailable: tuple[type[BaseException], ...] = (
            psycopg.OperationalError,
            PoolTimeout,
        )
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            timeout=timeout_s,
            check=ConnectionPool.check_connection,
            kwargs={"connect_timeout": max(1, math.ceil(timeout_s))},
            reconnect_timeout=3600,
            open=False,
            name="tickets-prediction-log",
        )
        self._schema_lock = threading.Lock()
        self._schema_ready = False
        self._pool.open(wait=False)  # a database that is down at start-up is waited for, not fatal
        with contextlib.suppress(LogUnavailableError):
            self._ensure_schema()

    def _ensure_schema(self) -> None:
        """Create the tables on first contact (and add columns of newer versions)."""
        if self._schema_ready:
            return
        with self._schema_lock, self._errors():
            if self._schema_ready:
                return
            with self._pool.connection() as connection:
                connection.execute(SCHEMA)
                for table, column, definition in ADDED_COLUMNS:
                    connection.execute(
                        f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {definition}"
                    )
                for statement in self._history_schema_statements():
                    connection.execute(statement)
                with connection.cursor() as cursor:
                    self._backfill_hours(cursor)
            self._schema_ready = True

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except self._unavailable as exc:
            raise LogUnavailableError(f"prediction log unavailable: {exc}") from exc

    @contextlib.contextmanager
    def _write(self) -> Iterator[Any]:
        """A pooled connection; its block is one transaction, committed on a clean exit."""
        self._ensure_schema()
        with self._errors(), self._pool.connection() as connection, connection.cursor() as cursor:
            yield cursor

    @contextlib.contextmanager
    def _read(self) -> Iterator[Any]:
        self._ensure_schema()
        with self._errors(), self._pool.connection() as connection, connection.cursor() as cursor:
            yield cursor

    def _sql(self, sql: str) -> str:
        return sql.replace("%", "%%").replace("?", "%s")

    def _sample_key(self) -> str:
        return "(hashtext(request_id) & 2147483647)"

    def _for_update(self) -> str:
        return " FOR UPDATE"

    def _lock_table(self, cursor: Any, table: str) -> None:
        cursor.execute(f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE")

    def check_writable(self) -> None:
        with self._read() as cursor:
            cursor.execute("SHOW transaction_read_only")
            if cursor.fetchone()[0] != "off":
                raise LogUnavailableError("prediction log unavailable: the database is read-only")

    def close(self) -> None:
        self._pool.close()


def open_prediction_log(settings: Settings) -> PredictionLog:
    """PostgreSQL when ``prediction_log_url`` is set, else SQLite under ``home``."""
    if settings.prediction_log_url:
        return PostgresPredictionLog(
            settings.prediction_log_url, timeout_s=settings.prediction_log_wait_s
        )
    return PredictionLog(settings.predictions_path(), settings.prediction_log_wait_s)
