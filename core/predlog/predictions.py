"""The predictions table: every prediction with its inputs, label, confidence and top
probabilities, written in group commits that also keep the hourly rollup up to date; feedback
fills in the true label. The drift monitor, the retraining set and the monitoring endpoints read
windows, samples and aggregates of it."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import pandas as pd

from core.errors import LogUnavailableError
from core.predlog.claims import finish_claim
from core.predlog.dialect import Tables
from core.predlog.history import HOUR_UPSERT, hour_rows
from core.records import LOW_CONFIDENCE, WindowAggregates

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
    "route",
    "latency_ms",
    "keyed",
)
#: Filled in by the shadow after the row is written (``record_shadow``).
SHADOW_COLUMNS = ("shadow_version", "shadow_prediction", "shadow_confidence")
ALL_COLUMNS = COLUMNS + SHADOW_COLUMNS
#: What a drift report's counting tests read of every row of a window (the class mix, the
#: low-confidence share, macro-F1 on feedback): the ``predictions_window`` index covers them, so
#: the table's text is never read for them.
COUNT_COLUMNS = ("model_version", "prediction", "confidence", "true_label")
SHADOW_SQL = (
    "UPDATE predictions SET shadow_version = ?, shadow_prediction = ?, shadow_confidence = ? "
    "WHERE request_id = ?"
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
    #: "champion" or "canary": which model answered.
    route: str = "champion"
    #: Milliseconds from the request's arrival to its scores (the log write not included).
    latency_ms: float | None = None
    #: Whether the client's ``X-Client-Key`` chose the side that answered (a canary is judged
    #: only on tickets whose side the service drew: core/monitoring/rollout.py).
    keyed: bool = False

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
            self.route,
            self.latency_ms,
            int(self.keyed),
        )


@dataclass(frozen=True)
class DriftWindow:
    """A window as a drift report reads it: ``rows``, the ``COUNT_COLUMNS`` of every row (or of
    an evenly spread sample of at most ``max_rows``), and ``sample``, every column of a seeded,
    evenly spread sample of the same window for the tests that read text and probabilities."""

    rows: pd.DataFrame
    sample: pd.DataFrame


@dataclass(frozen=True)
class ShadowScore:
    """The shadow challenger's answer for a logged ticket."""

    request_id: str
    model_version: str
    prediction: str
    confidence: float


def _where(since: str | None, until: str | None) -> tuple[str, list[Any]]:
    where, params = "1 = 1", []
    if since:
        where += " AND created_at >= ?"
        params.append(since)
    if until:
        where += " AND created_at < ?"
        params.append(until)
    return where, params


#: Rows per transaction for long deletes and long feedback lists.
DELETE_BATCH = 5000
WRITE_CHUNK = 500


class PredictionTables(Tables):
    """Reads and writes of the predictions table (and its hourly rollup)."""

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

    def record_shadow(self, scores: Sequence[ShadowScore]) -> None:
        """Fill in the shadow's label and confidence on rows already written (in request-id
        order, like feedback, so concurrent writers never deadlock)."""
        ordered = sorted(scores, key=lambda score: score.request_id)
        for start in range(0, len(ordered), WRITE_CHUNK):
            rows = [
                (s.model_version, s.prediction, s.confidence, s.request_id)
                for s in ordered[start : start + WRITE_CHUNK]
            ]
            with self._write() as cursor:
                cursor.executemany(self._sql(SHADOW_SQL), rows)

    def shadow_rows(self, since: str, until: str | None, limit: int) -> pd.DataFrame:
        """Rows of the window that the shadow scored, newest ``limit`` of them."""
        where, params = _where(since, until)
        sql = (
            f"SELECT {', '.join(ALL_COLUMNS)} FROM predictions WHERE {where} "
            "AND shadow_prediction IS NOT NULL ORDER BY created_at DESC LIMIT ?"
        )
        with self._read() as cursor:
            cursor.execute(self._sql(sql), [*params, limit])
            rows = cursor.fetchall()
        return pd.DataFrame(rows, columns=list(ALL_COLUMNS))

    def add_feedback(
        self, feedback: Iterable[tuple[str, str]], webhook_id: str | None = None
    ) -> list[str]:
        """Set true labels by request id; returns the ids that were not found. With
        ``webhook_id`` the claim on it is marked done in the same transaction, so the labels and
        the record that they arrived are committed together or not at all."""
        pairs = list(feedback)
        missing: set[str] = set()
        now = utc_now()
        # Rows are locked in request-id order: two writers labelling the same tickets in
        # opposite orders would otherwise deadlock, and PostgreSQL would fail one of them. A
        # long list is written WRITE_CHUNK rows per transaction, so no writer waits behind one
        # unbounded transaction; the webhook's claim is marked done with the last chunk (a crash
        # before it leaves the claim open and the sender's retry sets the same labels again).
        ordered = sorted(pairs, key=lambda pair: pair[0])
        chunks = [ordered[i : i + WRITE_CHUNK] for i in range(0, len(ordered), WRITE_CHUNK)] or [[]]
        for index, chunk in enumerate(chunks):
            with self._write() as cursor:
                for request_id, label in chunk:
                    cursor.execute(self._sql(FEEDBACK_SQL), (label, now, request_id))
                    if cursor.rowcount == 0:
                        missing.add(request_id)
                if webhook_id is not None and index == len(chunks) - 1:
                    finish_claim(cursor, self.dialect, webhook_id)
        return [request_id for request_id, _ in pairs if request_id in missing]

    def clear_feedback(
        self, request_id: str, expected_label: str | None = None
    ) -> Literal["cleared", "unknown", "changed"]:
        """Take back the true label of one ticket (a labeller's undo): ``"cleared"``,
        ``"unknown"`` (no such ticket, or no label to take back) or ``"changed"`` (its label is
        no longer ``expected_label``: someone relabelled it since, and their label stays)."""
        sql = (
            "UPDATE predictions SET true_label = NULL, feedback_at = NULL "
            "WHERE request_id = ? AND true_label IS NOT NULL"
        )
        params: list[str] = [request_id]
        if expected_label is not None:
            sql += " AND true_label = ?"
            params.append(expected_label)
        with self._write() as cursor:  # one statement: no other writer slips in between
            cursor.execute(self._sql(sql), params)
            if cursor.rowcount == 1:
                return "cleared"
            cursor.execute(
                self._sql("SELECT true_label FROM predictions WHERE request_id = ?"),
                (request_id,),
            )
            row = cursor.fetchone()
        return "unknown" if row is None or row[0] is None else "changed"

    def window(
        self, since: str | None = None, limit: int | None = None, until: str | None = None
    ) -> pd.DataFrame:
        """Predictions created in [``since``, ``until``) (ISO times), newest ``limit`` of them."""
        where, params = _where(since, until)
        columns = ", ".join(ALL_COLUMNS)
        sql = f"SELECT {columns} FROM predictions WHERE {where} ORDER BY created_at DESC"
        if limit:
            sql += " LIMIT ?"
            params.append(limit)
        with self._read() as cursor:
            cursor.execute(self._sql(sql), params)
            rows = cursor.fetchall()
        return pd.DataFrame(rows, columns=list(ALL_COLUMNS))

    def sample(
        self,
        since: str,
        max_rows: int,
        seed: int,
        model_version: str | None = None,
        until: str | None = None,
        columns: Sequence[str] = COLUMNS,
    ) -> pd.DataFrame:
        """The window's rows (of one model version, if given), or an evenly spread, seeded
        sample of about ``max_rows`` of them when there are more: every k-th row by the
        dialect's sample key from a seeded offset. Reads at most ``max_rows`` rows whatever the
        window holds, and only ``columns``."""
        where, params = _where(since, until)
        if model_version is not None:
            where += " AND model_version = ?"
            params.append(model_version)
        with self._read() as cursor:
            cursor.execute(self._sql(f"SELECT COUNT(*) FROM predictions WHERE {where}"), params)
            total = int(cursor.fetchone()[0])
            sql = f"SELECT {', '.join(columns)} FROM predictions WHERE {where}"
            if total > max_rows:
                step = math.ceil(total / max_rows)
                sql += f" AND {self.dialect.sample_key} % ? = ?"
                params = [*params, step, seed % step]
            cursor.execute(self._sql(sql + " ORDER BY created_at LIMIT ?"), [*params, max_rows])
            rows = cursor.fetchall()
        return pd.DataFrame(rows, columns=list(columns))

    def drift_window(
        self,
        since: str,
        max_rows: int,
        sample_rows: int,
        seed: int,
        model_version: str | None = None,
    ) -> DriftWindow:
        """The counting columns of up to ``max_rows`` rows and every column of up to
        ``sample_rows``: a million-row window is read in a few seconds instead of a minute."""
        return DriftWindow(
            self.sample(since, max_rows, seed, model_version, columns=COUNT_COLUMNS),
            self.sample(since, min(sample_rows, max_rows), seed, model_version),
        )

    def unlabelled(self, since: str, limit: int) -> pd.DataFrame:
        """The newest ``limit`` predictions since ``since`` that have no true label yet."""
        where, params = _where(since, None)
        sql = (
            f"SELECT {', '.join(COLUMNS)} FROM predictions WHERE {where} "
            "AND true_label IS NULL ORDER BY created_at DESC LIMIT ?"
        )
        with self._read() as cursor:
            cursor.execute(self._sql(sql), [*params, limit])
            rows = cursor.fetchall()
        return pd.DataFrame(rows, columns=list(COLUMNS))

    def aggregates(self, since: str, until: str | None = None) -> WindowAggregates:
        """Counts and sums of a window, computed by the database (no row leaves it)."""
        where, params = _where(since, until)
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
        before ``feedback`` (ISO times), and the hourly rollup before ``predictions``; returns
        (rows deleted, of which labelled)."""
        labelled = self.delete_in_batches(
            "predictions", "request_id", "true_label IS NOT NULL AND created_at < ?", (feedback,)
        )
        unlabelled = self.delete_in_batches(
            "predictions", "request_id", "true_label IS NULL AND created_at < ?", (predictions,)
        )
        with self._write() as cursor:
            cursor.execute(
                self._sql("DELETE FROM prediction_hours WHERE hour < ?"), (predictions[:13],)
            )
        return labelled + unlabelled, labelled

    def delete_in_batches(
        self, table: str, key: str, where: str, params: Sequence[Any], batch: int = 0
    ) -> int:
        """Delete the rows of ``table`` matching ``where``, ``batch`` (default DELETE_BATCH) per
        transaction, so the service's writes never wait behind one long delete; returns how
        many went. ``table``, ``key`` and ``where`` are the caller's constants, never input."""
        batch = batch or DELETE_BATCH
        sql = self._sql(
            f"DELETE FROM {table} WHERE {key} IN "
            f"(SELECT {key} FROM {table} WHERE {where} LIMIT {int(batch)})"
        )
        deleted = 0
        while True:
            with self._write() as cursor:
                cursor.execute(sql, tuple(params))
                count = int(cursor.rowcount)
            deleted += count
            if count < batch:
                return deleted

    def count(self) -> int:
        with self._read() as cursor:
            cursor.execute("SELECT COUNT(*) FROM predictions")
            return int(cursor.fetchone()[0])
