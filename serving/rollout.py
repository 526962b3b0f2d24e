"""The challenger on the request path: which tickets a canary answers, and the shadow scorer that
scores tickets with the challenger after their answers left.

The shadow never sits on the answer's path: tickets are offered to a bounded queue (a full queue
drops them, counted) after their rows are durable, and one thread per worker scores them in
small batches at a lower CPU priority and fills in the same log rows. Nothing it does can fail a
request; its failures are counted and logged, and its loop goes on."""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
from dataclasses import dataclass

import numpy as np

from core.predlog import PredictionLog, ShadowScore
from core.release.rollout import routes_to_canary, shadow_selected
from serving import metrics
from serving.model_holder import ModelHolder

logger = logging.getLogger("tickets.serving")

#: Tickets the shadow scores in one model call: small, so it never holds the GIL for long.
SHADOW_BATCH = 16
#: How much nicer than the request path the shadow's thread runs (Linux: per thread).
SHADOW_NICENESS = 10


@dataclass(frozen=True)
class ShadowItem:
    request_id: str
    short_description: str
    close_notes: str


def canary_flags(holder: ModelHolder, keys: list[str]) -> list[bool]:
    """Per ticket, whether the canary answers it (sticky by its key); all False without one."""
    rollout, challenger = holder.rollout, holder.challenger
    if rollout is None or challenger is None or rollout.mode != "canary":
        return [False] * len(keys)
    return [routes_to_canary(key, rollout.percent) for key in keys]


class ShadowScorer:
    """Scores offered tickets with the shadow challenger and records its answers in the log."""

    def __init__(self, holder: ModelHolder, log: PredictionLog, max_queue: int) -> None:
        self.holder = holder
        self.log = log
        self._queue: queue.Queue[ShadowItem] = queue.Queue(max_queue)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def wanted(self) -> float:
        """The share of tickets to offer now: 0 without a loaded shadow challenger."""
        rollout = self.holder.rollout
        if rollout is None or rollout.mode != "shadow" or self.holder.challenger is None:
            return 0.0
        return rollout.shadow_share

    def offer(self, items: list[ShadowItem]) -> None:
        share = self.wanted()
        if share <= 0:
            return
        self._ensure_started()
        for item in items:
            if not shadow_selected(item.request_id, share):
                continue
            try:
                self._queue.put_nowait(item)
            except queue.Full:
                metrics.SHADOW.labels("dropped").inc()

    def join(self, timeout_s: float) -> bool:
        """Wait until every offered ticket was handled (tests, shutdown); True if it was."""
        done = threading.Event()

        def wait() -> None:
            self._queue.join()
            done.set()

        threading.Thread(target=wait, daemon=True).start()
        return done.wait(timeout_s)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _ensure_started(self) -> None:
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="shadow", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        with contextlib.suppress(OSError, AttributeError):  # best effort: Linux only
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), SHADOW_NICENESS)
        while not self._stop.is_set():
            try:
                batch = [self._queue.get(timeout=0.5)]
            except queue.Empty:
                continue
            while len(batch) < SHADOW_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._score(batch)
            except Exception:  # the loop must go on; the tickets stay unscored, counted
                metrics.SHADOW.labels("failed").inc(len(batch))
                logger.exception("the shadow failed to score %d tickets; it goes on", len(batch))
            finally:
                for _ in batch:
                    self._queue.task_done()

    def _score(self, batch: list[ShadowItem]) -> None:
        served, rollout = self.holder.challenger, self.holder.rollout
        if served is None or rollout is None or rollout.mode != "shadow":
            metrics.SHADOW.labels("skipped").inc(len(batch))
            return
        probabilities = served.predict_proba(
            [(item.short_description, item.close_notes) for item in batch]
        )
        best = probabilities.argmax(axis=1)
        scores = [
            ShadowScore(
                item.request_id,
                served.version,
                str(served.classes[j]),
                round(float(probabilities[i, j]), 6),
            )
            for i, (item, j) in enumerate(zip(batch, np.asarray(best), strict=True))
        ]
        self.log.record_shadow(scores)
        metrics.SHADOW.labels("scored").inc(len(batch))
