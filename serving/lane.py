"""Monitoring's own lane, so that reports never starve predictions.

Drift reports, aggregates and dashboard pages are the expensive reads of the service, and anyone
may ask for them. They used to run on the default thread pool that the model and log batchers
need: 40 concurrent drift calls moved /predict's median from 7 ms to 391 ms. Here they run

- on a ``CapacityLimiter`` of their own, ``monitoring_threads`` at a time (never the default pool);
- with at most ``monitoring_queue`` requests waiting; beyond that the answer is 503 with
  ``Retry-After`` at once, instead of a pile of waiting work;
- once per key for concurrent callers (the first computes, the others await its result), and
  reused for ``monitoring_cache_s``: forty dashboards polling the same report cost one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import anyio

from serving.errors import unavailable

T = TypeVar("T")


class MonitoringLane:
    def __init__(self, threads: int, queue: int, cache_s: float) -> None:
        self.threads = threads
        self.queue = queue
        self.cache_s = cache_s
        self._limiter: anyio.CapacityLimiter | None = None
        self._admitted = 0
        self._cached: dict[Hashable, tuple[float, Any]] = {}
        self._inflight: dict[Hashable, asyncio.Future[Any]] = {}
        self.computed = 0  # how many computations ran (the lane's own metric, and for tests)

    @property
    def busy(self) -> int:
        """Monitoring requests computing or waiting for a lane thread now."""
        return self._admitted

    @property
    def limiter(self) -> anyio.CapacityLimiter:
        # Created on first use, inside the event loop that serves the requests.
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.threads)
        return self._limiter

    async def run(self, key: Hashable, compute: Callable[[], T]) -> T:
        """``compute()`` in a lane thread, or the result of the same key computed within
        ``cache_s``, or the one being computed now. 503 when the lane is full."""
        cached = self._cached.get(key)
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
            value = await anyio.to_thread.run_sync(compute, limiter=self.limiter)
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

    def _forget_stale(self) -> None:
        now = time.monotonic()
        for key in [k for k, (at, _) in self._cached.items() if now - at >= self.cache_s]:
            del self._cached[key]
