"""The operational database's tables, one schema for both engines (SQLite and PostgreSQL accept
the same statements), the columns added after the first release, and the hourly backfill."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from core.records import LOW_CONFIDENCE

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
CREATE TABLE IF NOT EXISTS prediction_hours (
    hour TEXT NOT NULL,
    model_version TEXT NOT NULL,
    prediction TEXT NOT NULL,
    n INTEGER NOT NULL,
    confidence_sum DOUBLE PRECISION NOT NULL,
    low INTEGER NOT NULL,
    PRIMARY KEY (hour, model_version, prediction)
);
CREATE INDEX IF NOT EXISTS predictions_feedback
    ON predictions (created_at, true_label, prediction) WHERE true_label IS NOT NULL;
CREATE INDEX IF NOT EXISTS predictions_labelled_at
    ON predictions (feedback_at) WHERE feedback_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS drift_reports (
    report_id TEXT PRIMARY KEY,
    checked_at TEXT NOT NULL,
    model_version TEXT NOT NULL,
    window_since TEXT,
    drift_detected INTEGER NOT NULL,
    drift_score DOUBLE PRECISION NOT NULL,
    retrain_action TEXT,
    report TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS drift_reports_checked_at ON drift_reports (checked_at);
CREATE TABLE IF NOT EXISTS promotion_decisions (
    decision_id TEXT PRIMARY KEY,
    decided_at TEXT NOT NULL,
    challenger TEXT NOT NULL,
    challenger_version TEXT,
    champion TEXT,
    promoted INTEGER NOT NULL,
    gain DOUBLE PRECISION,
    decision TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS promotion_decisions_decided_at ON promotion_decisions (decided_at);
CREATE TABLE IF NOT EXISTS locks (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    purpose TEXT NOT NULL,
    acquired_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
"""
#: Columns added after the first release; added to older databases when they are opened.
ADDED_COLUMNS = (
    ("webhook_ids", "state", "TEXT NOT NULL DEFAULT 'done'"),
    ("webhook_ids", "lease_until", "TEXT"),
    # Rollout (shadow and canary): which side answered, how long scoring took, and the shadow's
    # label and confidence, filled in after the answer left.
    ("predictions", "route", "TEXT NOT NULL DEFAULT 'champion'"),
    ("predictions", "latency_ms", "DOUBLE PRECISION"),
    ("predictions", "shadow_version", "TEXT"),
    ("predictions", "shadow_prediction", "TEXT"),
    ("predictions", "shadow_confidence", "DOUBLE PRECISION"),
    # Whether the client's key chose the side (canaries are judged on the rest).
    ("predictions", "keyed", "INTEGER NOT NULL DEFAULT 0"),
)
HOUR_BACKFILL = f"""
INSERT INTO prediction_hours (hour, model_version, prediction, n, confidence_sum, low)
SELECT substr(created_at, 1, 13), model_version, prediction, COUNT(*), SUM(confidence),
       SUM(CASE WHEN confidence < {LOW_CONFIDENCE} THEN 1 ELSE 0 END)
FROM predictions GROUP BY substr(created_at, 1, 13), model_version, prediction
"""


def statements() -> Iterator[str]:
    """The schema one statement at a time (PostgreSQL runs one per call)."""
    for statement in SCHEMA.split(";"):
        if statement.strip():
            yield statement


def backfill_hours(cursor: Any) -> None:
    """An older log gets its hourly rollup once, from the rows it already has. The caller holds
    a lock that keeps other openers and writers of the rollup out meanwhile (two workers opening
    an older log at once both saw it empty, and the second insert failed)."""
    cursor.execute("SELECT COUNT(*) FROM prediction_hours")
    if int(cursor.fetchone()[0]) == 0:
        cursor.execute(HOUR_BACKFILL)
