"""Micro-batching: concurrent requests are gathered into one call of a batch function.

A model answers a batch of 50 tickets in little more than the time of one, and a SQLite commit
costs one fsync whatever its size, so the service funnels single predictions and log writes through
two of these. The wait for company is bounded (a few milliseconds) and skipped when a batch is
already full; the batch function runs in a worker thread so the event loop stays free.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar, cast

import anyio

Item = TypeVar("Item")
Result = TypeVar("Result")


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
    ) -> None:
        self.process = process
        self.max_items = max_items
        self.max_wait_s = max_wait_s
        self.on_depth = on_depth
        self._queue: asyncio.Queue[tuple[Sequence[Item], asyncio.Future[list[Result]]]] | None = (
            None
        )
        self._runner: asyncio.Task[None] | None = None

    async def submit(self, items: Sequence[Item]) -> list[Result]:
        if self._queue is None:
            self._start()
        assert self._queue is not None
        future: asyncio.Future[list[Result]] = asyncio.get_running_loop().create_future()
        await self._queue.put((items, future))
        self._report_depth()
        return await future

    def _report_depth(self) -> None:
        if self.on_depth is not None and self._queue is not None:
            self.on_depth(self._queue.qsize())

    def _start(self) -> None:
        self._queue = asyncio.Queue()
        self._runner = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
            self._runner = None

    async def _gather(self) -> list[tuple[Sequence[Item], asyncio.Future[list[Result]]]]:
        """The next batch: one waiting request, everything queued, and what arrives in time."""
        assert self._queue is not None
        pending = [await self._queue.get()]
        count = len(pending[0][0])
        deadline = asyncio.get_running_loop().time() + self.max_wait_s
        while count < self.max_items:
            if self._queue.empty():
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                try:
                    pending.append(await asyncio.wait_for(self._queue.get(), remaining))
                except TimeoutError:
                    break
            else:
                pending.append(self._queue.get_nowait())
            count += len(pending[-1][0])
        return pending

    async def _run(self) -> None:
        while True:
            pending = await self._gather()
            self._report_depth()
            flat = [item for items, _ in pending for item in items]
            try:
                results = await anyio.to_thread.run_sync(self.process, flat)
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
