"""The operational database (SQLite or PostgreSQL): predictions, feedback, webhook claims,
retrain decisions, drift reports, promotions, hourly history and named locks. Import from here;
the modules behind it are one per table group, plus the dialect that holds what differs between
engines."""

from core.predlog.claims import Claim
from core.predlog.locks import LockHolder
from core.predlog.log import (
    PostgresPredictionLog,
    PredictionLog,
    open_prediction_log,
    window_seconds,
    window_start,
)
from core.predlog.predictions import (
    COLUMNS,
    DriftWindow,
    PredictionRecord,
    ShadowScore,
    utc_now,
)

__all__ = [
    "COLUMNS",
    "Claim",
    "DriftWindow",
    "LockHolder",
    "PostgresPredictionLog",
    "PredictionLog",
    "PredictionRecord",
    "ShadowScore",
    "open_prediction_log",
    "utc_now",
    "window_seconds",
    "window_start",
]
