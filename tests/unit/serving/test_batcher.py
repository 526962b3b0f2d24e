"""The micro-batcher gathers concurrent callers into one call and hands back each caller's slice."""

from __future__ import annotations

import asyncio
import threading

import pytest

from serving.batcher import MicroBatcher


def test_concurrent_callers_share_calls_and_get_their_own_results() -> None:
    calls: list[list[int]] = []
    gate = threading.Event()

    def double(items: list[int]) -> list[int]:
        gate.wait(1)
        calls.append(items)
        return [2 * item for item in items]

    async def scenario() -> list[list[int]]:
        batcher = MicroBatcher(double, max_items=100, max_wait_s=0.05)
        tasks = [asyncio.create_task(batcher.submit([i, i + 100])) for i in range(20)]
        await asyncio.sleep(0.01)
        gate.set()
        results = await asyncio.gather(*tasks)
        await batcher.stop()
        return results

    results = asyncio.run(scenario())
    assert results == [[2 * i, 2 * (i + 100)] for i in range(20)]
    assert len(calls) < 20
    assert sorted(item for call in calls for item in call) == sorted(
        [i for i in range(20)] + [i + 100 for i in range(20)]
    )


def test_a_full_batch_does_not_wait_and_size_is_bounded() -> None:
    calls: list[int] = []

    def identity(items: list[int]) -> list[int]:
        calls.append(len(items))
        return items

    async def scenario() -> None:
        batcher = MicroBatcher(identity, max_items=4, max_wait_s=10.0)
        results = await asyncio.wait_for(
            asyncio.gather(*(batcher.submit([i]) for i in range(8))), timeout=5
        )
        assert results == [[i] for i in range(8)]
        await batcher.stop()

    asyncio.run(scenario())
    assert max(calls) <= 4 and sum(calls) == 8


def test_a_failing_call_fails_its_callers_and_the_batcher_goes_on() -> None:
    def picky(items: list[int]) -> list[int]:
        if -1 in items:
            raise ValueError("bad item")
        return items

    async def scenario() -> None:
        batcher = MicroBatcher(picky, max_items=1, max_wait_s=0.0)
        with pytest.raises(ValueError, match="bad item"):
            await batcher.submit([-1])
        assert await batcher.submit([3]) == [3]
        await batcher.stop()

    asyncio.run(scenario())


def test_an_item_that_fails_fails_only_its_own_caller() -> None:
    def per_item(items: list[int]) -> list[int | Exception]:
        return [ValueError(f"refused {i}") if i < 0 else i * 10 for i in items]

    async def scenario() -> list[object]:
        batcher = MicroBatcher(per_item, max_items=10, max_wait_s=0.05)
        results = await asyncio.gather(
            batcher.submit([1, 2]), batcher.submit([-3]), batcher.submit([4]),
            return_exceptions=True,
        )  # fmt: skip
        await batcher.stop()
        return list(results)

    first, second, third = asyncio.run(scenario())
    assert first == [10, 20] and third == [40]
    assert isinstance(second, ValueError) and "refused -3" in str(second)
