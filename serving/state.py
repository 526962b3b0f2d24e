"""The service's typed state: what ``create_app`` builds and handlers read."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from litestar.datastructures import State

from core.predlog import PredictionLog, PredictionRecord
from core.settings import Settings
from serving.errors import unavailable
from serving.lane import ExplainProcess, MonitoringLane
from serving.model_holder import ModelHolder, ServedModel

if TYPE_CHECKING:
    from serving.batcher import MicroBatcher
    from serving.rollout import ShadowScorer
    from serving.schemas import LabelScore

    Scored = tuple[str, list[LabelScore]]


def require_model(holder: ModelHolder) -> ServedModel:
    """The served model, or the one 503 that says none is loaded yet."""
    served = holder.current
    if served is None:
        raise unavailable("no model loaded yet")
    return served


class LogProbe:
    """Whether the prediction log can take a write now, checked at most every ``cache_s``
    seconds (the check takes the write lock for a moment; /ready may be polled often)."""

    def __init__(self, log: PredictionLog, cache_s: float) -> None:
        self.log = log
        self.cache_s = cache_s
        self._lock = threading.Lock()
        self._checked_at = float("-inf")
        self._error_kind: str | None = None

    def error_kind(self) -> str | None:
        """None when the log takes writes, else the kind of error that stopped it."""
        with self._lock:
            if time.monotonic() - self._checked_at >= self.cache_s:
                try:
                    self.log.check_writable()
                    self._error_kind = None
                except Exception as exc:  # any failure means "not ready", never a crash
                    self._error_kind = type(exc).__name__
                self._checked_at = time.monotonic()
            return self._error_kind


class ServiceState(State):
    """Litestar builds one per request around the app's state dict (no copy), typed for handlers
    that declare ``state: ServiceState``."""

    settings: Settings
    holder: ModelHolder
    log: PredictionLog
    log_probe: LogProbe
    model_batcher: MicroBatcher[tuple[str, str], Scored]
    canary_batcher: MicroBatcher[tuple[str, str], Scored]
    shadow: ShadowScorer
    log_batcher: MicroBatcher[PredictionRecord, None]
    monitoring_lane: MonitoringLane
    explain_process: ExplainProcess
    #: The key of the canary's split (core/release/rollout.canary_bucket).
    routing_secret: bytes

    def served_model(self) -> ServedModel:
        return require_model(self.holder)
