"""The promotion lock: a lease in the operational database (core/predlog/locks.py) that
promotions queue on, and so do the maintenance's pruning of bundles and archiving of model
versions, which would otherwise race a promotion in flight. Its holder renews it while it works;
a holder that dies stops renewing and loses it within ``LEASE_S`` (at once when it was a
process of this host), so the next training promotes. ``tickets status`` shows who holds it."""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from prefect import get_run_logger
from prefect.exceptions import MissingContextError

from core.errors import LogUnavailableError, PromotionError
from core.predlog import PredictionLog, open_prediction_log
from core.settings import Settings

PROMOTION_LOCK = "tickets-promotion"
#: How long the lock outlives a holder that stopped renewing it.
LEASE_S = 30.0
#: How long a promotion waits for the lock before it gives up, saying who holds it.
WAIT_S = 15 * 60.0
log = logging.getLogger(__name__)


@contextmanager
def promotion_lock(settings: Settings, purpose: str, wait_s: float = WAIT_S) -> Iterator[None]:
    """Hold the promotion lock for ``purpose`` (what ``tickets status`` shows). A renewal that
    fails (the database blipped) does not cancel the holder mid-sequence: the pointer moves by
    compare-and-set, which needs no lock to be safe, and a promotion cut after the pointer
    moved was recorded as failed though it had happened."""
    holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    with open_prediction_log(settings) as database:
        _acquire(database, holder, purpose, wait_s)
        done = threading.Event()
        renewer = threading.Thread(
            target=_renew, args=(database, holder, done), name="promotion-lock", daemon=True
        )
        renewer.start()
        try:
            yield
        finally:
            done.set()
            renewer.join(timeout=5)
            try:
                database.release_lock(PROMOTION_LOCK, holder)
            except LogUnavailableError:
                log.warning("the promotion lock could not be released: it expires in %ss", LEASE_S)


def _acquire(database: PredictionLog, holder: str, purpose: str, wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    delay = 0.25
    waiting = False
    while True:
        current = database.try_lock(PROMOTION_LOCK, holder, purpose, LEASE_S)
        if current is None:
            return
        if not waiting:
            _logger().info("waiting for the promotion lock: %s", current.describe())
            waiting = True
        if time.monotonic() >= deadline:
            raise PromotionError(
                f"the promotion lock is still held after {wait_s:.0f} s: {current.describe()}"
            )
        time.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 2.0)


def _logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The run's logger inside a flow or task (so the wait shows where the run's logs go)."""
    try:
        return get_run_logger()
    except MissingContextError:
        return log


def _renew(database: PredictionLog, holder: str, done: threading.Event) -> None:
    """Renew every third of the lease until ``done``; a failed renewal is logged, not raised
    (this thread must never die silently, and the holder goes on)."""
    while not done.wait(LEASE_S / 3):
        try:
            if not database.renew_lock(PROMOTION_LOCK, holder, LEASE_S):
                log.warning("the promotion lock was taken over while held (a long stall?)")
        except Exception:
            log.exception("renewing the promotion lock failed; trying again")
