"""Monitoring's own lane, so that reports never starve predictions.

Drift reports, aggregates and dashboard pages are the expensive reads of the service, and anyone
may ask for them. They used to run on the default thread pool that the model and log batchers
need: 40 concurrent drift calls moved /predict's median from 7 ms to 391 ms. Here

- the CPU-heavy ones (drift reports, dashboard pages) run in a process of their own per worker,
  at a lower CPU priority (serving/lane_process.py): they hold no lock the request path needs,
  not even the GIL, and when the cores are busy the kernel favours predictions
  (``monitoring_isolation = "thread"`` runs them on the lane's threads instead: measured in the
  fault benchmark, 40 concurrent reports then moved /predict's p99 3.5x, against 1.03x);
- the rest run on a ``CapacityLimiter`` of their own, ``monitoring_threads`` at a time, never
  on the default pool;
- at most ``monitoring_threads + monitoring_queue`` requests are admitted at once; beyond that
  the answer is 503 with ``Retry-After`` at once, instead of a pile of waiting work;
- concurrent callers of one key share one computation, and its result is reused for
  ``monitoring_cache_s``: forty dashboards polling the same report cost one.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

import anyio

from serving import explain_process
from serving.errors import unavailable
from serving.lane_process import exit_with_parent, lane_log, run_niced, warm

__all__ = ["ExplainProcess", "MonitoringLane", "helper_pool", "lane_log", "stop_pool"]

T = TypeVar("T")


class MonitoringLane:
    def __init__(self, threads: int, queue: int, cache_s: float, processes: bool = True) -> None:
        self.threads = threads
        self.queue = queue
        self.cache_s = cache_s
        self.processes = processes
        self._limiter: anyio.CapacityLimiter | None = None
        self._executor: ProcessPoolExecutor | None = None
        self._admitted = 0
        self._cached: dict[Hashable, tuple[float, Any]] = {}
        self._inflight: dict[Hashable, asyncio.Future[Any]] = {}
        self.computed = 0  # how many computations ran (the lane's own metric, and for tests)

    @property
    def busy(self) -> int:
        """Monitoring requests computing or waiting for the lane now."""
        return self._admitted

    @property
    def limiter(self) -> anyio.CapacityLimiter:
        # Created on first use, inside the event loop that serves the requests.
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.threads)
        return self._limiter

    def _pool(self) -> ProcessPoolExecutor:
        """The lane's process, started on first use, so a worker nobody monitors never pays for
        it (its imports cost a first report a few seconds); with "spawn": a fork of a worker
        whose threads may hold locks could hang."""
        if self._executor is None:
            self._executor = helper_pool(self.threads)
        return self._executor

    async def run(
        self,
        key: Hashable,
        compute: Callable[..., T],
        *args: Any,
        isolate: bool = False,
        reuse: bool = True,
    ) -> T:
        """``compute(*args)``, or the result of the same key computed within ``cache_s`` (unless
        not ``reuse``), or the one being computed now. With ``isolate`` (and processes enabled)
        it runs in the lane's process, so ``compute`` and ``args`` must pickle; else on a lane
        thread. 503 when the lane is full, or when its process died (the next call starts a new
        one)."""
        cached = self._cached.get(key) if reuse else None
        if cached is not None and time.monotonic() - cached[0] < self.cache_s:
            return cached[1]
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        if self._admitted >= self.threads + self.queue:
            raise unavailable("monitoring is busy: try again shortly")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        self._admitted += 1
        try:
            value = await self._compute(compute, args, isolate)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody waits
            raise
        else:
            future.set_result(value)
            self._cached[key] = (time.monotonic(), value)
            self.computed += 1
            self._forget_stale()
            return value
        finally:
            self._admitted -= 1
            self._inflight.pop(key, None)

    async def _compute(self, compute: Callable[..., T], args: tuple[Any, ...], isolate: bool) -> T:
        if not (isolate and self.processes):
            return await anyio.to_thread.run_sync(
                functools.partial(compute, *args), limiter=self.limiter
            )
        async with self.limiter:
            try:
                return await asyncio.wrap_future(self._pool().submit(run_niced, compute, *args))
            except BrokenProcessPool as exc:
                self._executor = None
                raise unavailable("the monitoring process stopped; try again") from exc

    def warm(self) -> None:
        """Start the lane's process now, at its lower priority (see serving/lane_process.py)."""
        if self.processes:
            self._pool().submit(warm)

    def process_ids(self) -> list[int]:
        """The lane processes running now (none before the first isolated computation)."""
        processes = getattr(self._executor, "_processes", None) or {}
        return sorted(int(pid) for pid in processes)

    def close(self) -> None:
        if self._executor is not None:
            stop_pool(self._executor)
            self._executor = None

    def _forget_stale(self) -> None:
        now = time.monotonic()
        for key in [k for k, (at, _) in self._cached.items() if now - at >= self.cache_s]:
            del self._cached[key]


def helper_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of helper processes for this worker (the lane's, the shadow's, the
    explanations'): "spawn", because a fork of a worker whose threads may hold locks could hang;
    each process exits once this worker is gone (serving/lane_process.exit_with_parent)."""
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=exit_with_parent,
        initargs=(os.getpid(),),
    )


def stop_pool(executor: ProcessPoolExecutor) -> None:
    """Stop a worker's process pool now: what its processes compute never outlives the worker.
    Terminated, not only told: where the worker is itself a multiprocessing child (granian's
    workers), it joins its children on exit before the hook that would tell them to stop runs,
    and a child still waiting for work kept it from exiting."""
    processes = list((getattr(executor, "_processes", None) or {}).values())
    executor.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        with contextlib.suppress(Exception):
            process.terminate()


class ExplainProcess:
    """The worker's explanations' process (``explain_isolation="process"``): started on first
    use or by ``warm``, with "spawn" (a fork of a worker whose threads hold locks could hang),
    at a lower CPU priority, gone with the worker (serving/lane_process.py)."""

    def __init__(self) -> None:
        self._executor: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def _pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = helper_pool(1)
            return self._executor

    def warm(self) -> None:
        self._pool().submit(explain_process.warm)

    def preload(self, settings: Any, served: Any) -> None:
        """Load ``served``'s bundle in the process now (in the background; a failure there
        only means the first explanation loads it)."""
        arguments = (settings, served.bundle_id, served.manifest_sha256)
        with contextlib.suppress(BrokenProcessPool, RuntimeError):
            future = self._pool().submit(explain_process.load, *arguments)
            future.add_done_callback(lambda done: done.exception())

    def process_ids(self) -> list[int]:
        """The explanations' process (none before the first explanation or ``warm``)."""
        processes = getattr(self._executor, "_processes", None) or {}
        return sorted(int(pid) for pid in processes)

    def run(self, *args: Any) -> dict[str, Any]:
        """``explain_process.explain_bundle(*args)`` in the process (blocking: call it from a
        thread); 503 if the process died (the next call starts a new one)."""
        try:
            return self._pool().submit(explain_process.explain_bundle, *args).result()
        except BrokenProcessPool as exc:
            with self._lock:
                self._executor = None
            raise unavailable("the explanations' process stopped; try again") from exc

    def close(self) -> None:
        with self._lock:
            if self._executor is not None:
                stop_pool(self._executor)
                self._executor = None
