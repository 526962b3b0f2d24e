"""The service's typed state: what ``create_app`` builds and handlers read."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from litestar.datastructures import State

from core.predlog import PredictionLog, PredictionRecord
from core.settings import Settings
from serving.errors import unavailable
from serving.model_holder import ModelHolder, ServedModel

if TYPE_CHECKING:
    from serving.batcher import MicroBatcher
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


class PageCache:
    """Drawn pages reused for ``seconds`` per window and served model: the charts move by the
    hour, and a wall screen or many operators refreshing then cost one set of queries."""

    def __init__(self, seconds: float = 10.0) -> None:
        self.seconds = seconds
        self._pages: dict[tuple[str, str | None], tuple[float, str]] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str | None]) -> str | None:
        with self._lock:
            cached = self._pages.get(key)
        if cached is None or time.monotonic() - cached[0] >= self.seconds:
            return None
        return cached[1]

    def put(self, key: tuple[str, str | None], page: str) -> None:
        with self._lock:
            self._pages[key] = (time.monotonic(), page)


class ServiceState(State):
    """Litestar builds one per request around the app's state dict (no copy), typed for handlers
    that declare ``state: ServiceState``."""

    settings: Settings
    holder: ModelHolder
    log: PredictionLog
    log_probe: LogProbe
    model_batcher: MicroBatcher[tuple[str, str], Scored]
    log_batcher: MicroBatcher[PredictionRecord, None]
    dashboard_pages: PageCache

    def served_model(self) -> ServedModel:
        return require_model(self.holder)
