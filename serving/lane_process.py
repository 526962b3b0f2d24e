"""What runs inside the monitoring lane's process (serving/lane.py), in a module that imports
nothing heavy. The process imports what reports need at normal priority (with its first
report), then computes at a lower one, ``LANE_NICE``: when the cores are busy
the kernel favours the predictions, and a report still gets a share. (At nice 19 a report on a
saturated two-core machine took minutes.)"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

LANE_NICE = 5
_lowered = False


def _lower_priority() -> None:
    global _lowered
    if not _lowered:
        with contextlib.suppress(OSError):
            os.nice(LANE_NICE)
        _lowered = True


def run_niced(compute: Callable[..., T], *args: Any) -> T:
    """``compute(*args)`` at the lane's priority (its module was imported, at normal priority,
    while this call's arguments were unpickled)."""
    _lower_priority()
    return compute(*args)
