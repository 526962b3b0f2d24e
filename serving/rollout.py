"""The challenger on the request path: which tickets a canary answers, and the shadow scorer that
scores tickets with the challenger after their answers left.

The shadow never sits on the answer's path: tickets are offered to a bounded queue (a full queue
drops them, counted) after their rows are durable; one thread per worker gathers them into
groups and has them scored and written into the same log rows, by default in a process of its
own at a lower CPU priority (serving/shadow_process.py: on busy cores the kernel favours the
answers, and a shadow that falls behind drops tickets instead of slowing anyone), else on that
thread. Nothing it does can fail a request; its failures are counted and logged, and its loop
goes on."""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

from core.predlog import PredictionLog
from core.release.rollout import routes_to_canary, shadow_selected
from core.settings import Settings
from serving import metrics, shadow_process
from serving.lane import helper_pool, stop_pool
from serving.model_holder import ModelHolder

logger = logging.getLogger("tickets.serving")

#: Tickets the shadow scores in one model call: small, so it never holds the GIL for long.
SHADOW_BATCH = 16
#: The shadow writes its answers in groups of up to this many tickets, gathered for up to
#: SHADOW_GATHER_S: each write takes the log's write lock and an fsync that answers wait for.
SHADOW_GROUP = 500
SHADOW_GATHER_S = 0.25
#: Longest a group may take in the shadow's process (its first includes loading the model).
SHADOW_TIMEOUT_S = 300
#: How much nicer than the request path the shadow's thread runs (Linux: per thread).
SHADOW_NICENESS = 10


@dataclass(frozen=True)
class ShadowItem:
    request_id: str
    short_description: str
    close_notes: str


def canary_flags(holder: ModelHolder, keys: list[str], secret: bytes) -> list[bool]:
    """Per ticket, whether the canary answers it (sticky by its key, placed by an HMAC under
    the service's routing ``secret``); all False without one."""
    rollout, challenger = holder.rollout, holder.challenger
    if rollout is None or challenger is None or rollout.mode != "canary":
        return [False] * len(keys)
    return [routes_to_canary(key, rollout.percent, secret) for key in keys]


class ShadowScorer:
    """Scores offered tickets with the shadow challenger and records its answers in the log."""

    def __init__(
        self,
        holder: ModelHolder,
        log: PredictionLog,
        max_queue: int,
        settings: Settings | None = None,
    ) -> None:
        """With ``settings`` the scoring runs in the shadow's process (which opens the store
        and the log itself), else on the scorer's thread."""
        self.holder = holder
        self.log = log
        self.settings = settings
        self._executor: ProcessPoolExecutor | None = None
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
        if self._executor is not None:
            stop_pool(self._executor)

    def _pool(self) -> ProcessPoolExecutor:
        """Started on first use; "spawn", because a fork of a worker whose threads hold locks
        could hang."""
        if self._executor is None:
            self._executor = helper_pool(1)
        return self._executor

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
            deadline = time.monotonic() + SHADOW_GATHER_S
            while len(batch) < SHADOW_GROUP:
                try:
                    batch.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
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
        items = [(i.request_id, i.short_description, i.close_notes) for i in batch]
        if self.settings is not None:
            job = self._pool().submit(
                shadow_process.score,
                self.settings,
                served.bundle_id,
                rollout.manifest_file_sha256,
                items,
            )
            try:
                written = job.result(timeout=SHADOW_TIMEOUT_S)
            except BrokenProcessPool:
                self._executor = None  # the next group starts a new process
                raise
            metrics.SHADOW.labels("scored").inc(written)
            return
        # On this thread: small chunks, yielding the interpreter to the request path after each.
        scores = shadow_process.shadow_scores(
            served.model,
            served.classes,
            served.version,
            items,
            SHADOW_BATCH,
            between=lambda: time.sleep(0),
        )
        self.log.record_shadow(scores)
        metrics.SHADOW.labels("scored").inc(len(batch))
