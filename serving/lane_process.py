"""What runs inside the monitoring lane's process (serving/lane.py), in a module that imports
nothing heavy. In a server (``tickets serve``) the process starts with the worker, lowers its
priority, then imports what reports need; elsewhere (``create_app`` in tests) it starts with the
first report and imports at normal priority, so that report is not starved. Either way reports
are computed at ``LANE_NICE``: when the cores are busy
the kernel favours the predictions, and a report still gets a share. (At nice 19 a report on a
saturated two-core machine took minutes.)"""

from __future__ import annotations

import contextlib
import os
import threading
import time
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


#: How often a helper process checks that the worker that started it is still there.
PARENT_CHECK_S = 1.0


def exit_with_parent() -> None:
    """The initializer of the lane's and the shadow's processes: a thread that ends the process
    once the worker that started it is gone. A worker killed with SIGKILL never stops its
    pools, and their processes (300-400 MB each) lived on, re-parented, for good."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_S)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def run_niced(compute: Callable[..., T], *args: Any) -> T:
    """``compute(*args)`` at the lane's priority (its module was imported, at normal priority,
    while this call's arguments were unpickled)."""
    _lower_priority()
    return compute(*args)


def warm() -> int:
    """A server's lane at its start: lower the priority first, then import what reports need,
    so that the imports (seconds of CPU) never compete with predictions. Returns the pid."""
    _lower_priority()
    import serving.dashboard
    import serving.monitoring  # noqa: F401

    return os.getpid()
