"""The promotion lock: a Prefect global concurrency limit of one slot. Promotions queue on it,
and so does the maintenance's pruning of bundles and archiving of model versions, which would
otherwise race a promotion in flight."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from prefect import get_client
from prefect.concurrency.sync import concurrency

PROMOTION_LIMIT = "tickets-promotion"


@contextmanager
def promotion_lock() -> Iterator[None]:
    """Hold the promotion slot. It is a lease renewed while held, so a worker killed while
    holding it frees it within about a minute. A renewal that fails (the API blipped) does not
    cancel the holder mid-sequence: the pointer moves by compare-and-set, which needs no lock to
    be safe, and a promotion cut after the pointer moved was recorded as failed though it had
    happened."""
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(PROMOTION_LIMIT, 1)
    with concurrency(
        PROMOTION_LIMIT,
        occupy=1,
        strict=True,
        lease_duration=60,
        raise_on_lease_renewal_failure=False,
    ):
        yield
