"""Micro-batching: concurrent requests are gathered into one call of a batch function.

A model answers a batch of 16 tickets in about four times the time of one, and a SQLite commit
costs one fsync whatever its size, so the service funnels single predictions and log writes
through two of these. The log's batch function runs in a thread of the batcher's own (an fsync
waits on the disk, not the CPU); a TF-IDF model's runs ``inline`` on the event loop, since
handing it to a thread only made the two trade the GIL. So the model's next batch is computed
while the log commits the last. A model with the sentence encoder spends its time in native code
that releases the GIL (tens of milliseconds a ticket), so its batches go to the batcher's thread
and the loop keeps parsing, logging and answering meanwhile: ``inline`` may be a function asked
before each batch.

Waiting is adaptive: a batch is what queued up while the previous call ran, so a lone request
goes at once and a busy service batches by itself. Only when the last call had company and fewer
items are queued now does it wait for more, at most ``max_wait_s`` (0: never waits).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar, cast

Item = TypeVar("Item")
Result = TypeVar("Result")

#: Loop turns a batcher gives requests already being handled to join its batch, stopping at the
#: first turn in which none joined.
YIELDS = 8


class MicroBatcher(Generic[Item, Result]):
    """``await submit(items)`` returns ``process(items)``, computed together with other callers.

    ``process`` may return an exception in place of an item's result: only the caller that
    submitted that item sees it raised, the others of the batch get their results. An exception
    raised by ``process`` itself fails the whole batch."""

    def __init__(
        self,
        process: Callable[[list[Item]], Sequence[Result | Exception]],
        max_items: int,
        max_wait_s: float,
        on_depth: Callable[[int], None] | None = None,
        name: str = "batcher",
        inline: bool | Callable[[], bool] = False,
    ) -> None:
        self.process = process
        self.max_items = max_items
        self.max_wait_s = max_wait_s
        self.on_depth = on_depth
        self.name = name
        self.inline = inline
        self._queue: deque[tuple[Sequence[Item], asyncio.Future[list[Result]]]] = deque()
        self._queued = 0
        self._last_batch = 0
        self._arrived: asyncio.Event | None = None
        self._runner: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None

    async def submit(self, items: Sequence[Item]) -> list[Result]:
        if self._runner is None:
            self._start()
        assert self._arrived is not None
        future: asyncio.Future[list[Result]] = asyncio.get_running_loop().create_future()
        self._queue.append((items, future))
        self._queued += len(items)
        self._arrived.set()
        self._report_depth()
        return await future

    def _report_depth(self) -> None:
        if self.on_depth is not None:
            self.on_depth(len(self._queue))

    def _start(self) -> None:
        self._arrived = asyncio.Event()
        self._runner = asyncio.create_task(self._run())

    def _inline_now(self) -> bool:
        return self.inline() if callable(self.inline) else self.inline

    def _thread(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"tickets-{self.name}")
        return self._executor

    async def stop(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
            self._runner = None
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None

    async def _gather(self) -> list[tuple[Sequence[Item], asyncio.Future[list[Result]]]]:
        """The next batch: at least one waiting request, then whatever else is queued up to
        ``max_items``, waiting for company only as described in the module's docstring."""
        assert self._arrived is not None
        while not self._queue:
            self._arrived.clear()
            await self._arrived.wait()
        for _ in range(YIELDS):  # let requests already in the loop join first: no idle wait
            before = self._queued
            await asyncio.sleep(0)
            if self._queued == before or self._queued >= self.max_items:
                break
        if self.max_wait_s > 0 and self._last_batch > 1 and self._queued < self._last_batch:
            deadline = asyncio.get_running_loop().time() + self.max_wait_s
            while self._queued < min(self._last_batch, self.max_items):
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                self._arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._arrived.wait(), remaining)
        pending = [self._queue.popleft()]
        count = len(pending[0][0])
        while self._queue and count + len(self._queue[0][0]) <= self.max_items:
            pending.append(self._queue.popleft())
            count += len(pending[-1][0])
        self._queued -= count
        self._last_batch = count
        return pending

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            pending = await self._gather()
            self._report_depth()
            flat = [item for items, _ in pending for item in items]
            try:
                if self._inline_now():
                    results = self.process(flat)
                else:
                    results = await loop.run_in_executor(self._thread(), self.process, flat)
            except Exception as exc:
                for _, future in pending:
                    if not future.done():
                        future.set_exception(exc)
                continue
            start = 0
            for items, future in pending:
                mine = results[start : start + len(items)]
                start += len(items)
                if future.done():
                    continue
                failed = next((r for r in mine if isinstance(r, BaseException)), None)
                if failed is not None:
                    future.set_exception(failed)
                else:
                    future.set_result(cast("list[Result]", list(mine)))
