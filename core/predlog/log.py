"""The prediction log: one object over the operational database, made of each table's code
(predictions, webhook claims, retrain decisions, history) on a dialect that supplies what
differs between SQLite (the default, WAL mode: a committed row survives the process being
killed) and PostgreSQL (at scale). Use it as a context manager, or close it.

Failures of the database itself (a restart, a lost connection, a lock held too long, a full disk)
raise ``LogUnavailableError``: the service answers 503 with ``Retry-After`` and the caller may try
again. A row the database refuses for its content raises that engine's own error, and
``record_each`` isolates it from the other rows of a group commit.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType

from core.errors import InputError
from core.predlog.claims import WebhookClaims
from core.predlog.decisions import RetrainDecisions
from core.predlog.dialect import Dialect, PostgresDialect, SqliteDialect
from core.predlog.history import HistoryTables
from core.predlog.locks import LeaseLocks
from core.predlog.predictions import PredictionTables
from core.settings import Settings, duration_seconds


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


class PredictionLog(PredictionTables, WebhookClaims, RetrainDecisions, HistoryTables, LeaseLocks):
    """The log on ``dialect``; a path means SQLite at that path (waiting up to ``wait_s`` for
    a lock). Thread-safe."""

    def __init__(self, dialect: Dialect | Path, wait_s: float = 5.0) -> None:
        self.dialect = dialect if isinstance(dialect, Dialect) else SqliteDialect(dialect, wait_s)

    def check_writable(self) -> None:
        """Raise LogUnavailableError unless a write could start now."""
        self.dialect.check_writable()

    def close(self) -> None:
        self.dialect.close()

    def __enter__(self) -> PredictionLog:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()


class PostgresPredictionLog(PredictionLog):
    """The same log on PostgreSQL, over a pool of ``pool_size`` connections; every call raises
    LogUnavailableError within ``timeout_s`` while the server is away."""

    def __init__(self, url: str, pool_size: int = 4, timeout_s: float = 5.0) -> None:
        super().__init__(PostgresDialect(url, pool_size, timeout_s))


def open_prediction_log(settings: Settings) -> PredictionLog:
    """PostgreSQL when ``prediction_log_url`` is set, else SQLite under ``home``."""
    if settings.prediction_log_url:
        return PostgresPredictionLog(
            settings.prediction_log_url.get_secret_value(),
            timeout_s=settings.prediction_log_wait_s,
        )
    return PredictionLog(settings.predictions_path(), settings.prediction_log_wait_s)
