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
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from core.predlog import PredictionLog
    from core.settings import Settings

T = TypeVar("T")

LANE_NICE = 5
_lowered: set[int] = set()


def lower_priority(nice: int = LANE_NICE) -> None:
    """Lower this process's priority by ``nice``, once per process (the lane's and the
    shadow's helper processes call it before any work)."""
    if nice not in _lowered:
        with contextlib.suppress(OSError):
            os.nice(nice)
        _lowered.add(nice)


#: How often a helper process checks that the worker that started it is still there.
PARENT_CHECK_S = 1.0


def exit_with_parent(parent: int | None = None) -> None:
    """The initializer of the helper processes (the lane's, the shadow's, the explanations'):
    a thread that ends the process once the worker that started it is gone. A worker killed with
    SIGKILL never stops its pools, and their processes (300-400 MB each) lived on, re-parented,
    for good. ``parent``: the worker's pid, passed by the worker (``initargs``), so a helper
    still starting when the worker died exits too instead of watching its new parent."""
    expected = os.getppid() if parent is None else parent

    def watch() -> None:
        while os.getppid() == expected:
            time.sleep(PARENT_CHECK_S)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def run_niced(compute: Callable[..., T], *args: Any) -> T:
    """``compute(*args)`` at the lane's priority (its module was imported, at normal priority,
    while this call's arguments were unpickled)."""
    lower_priority()
    return compute(*args)


def warm() -> int:
    """A server's lane at its start: lower the priority first, then import what reports need,
    so that the imports (seconds of CPU) never compete with predictions. Returns the pid."""
    lower_priority()
    import litestar  # noqa: F401

    import core.metrics
    import core.monitoring.check
    import core.monitoring.daily
    import core.monitoring.dashboard
    import core.monitoring.rollout  # noqa: F401

    return os.getpid()


_LANE_LOGS: dict[str, PredictionLog] = {}


def lane_log(settings: Settings) -> PredictionLog:
    """The prediction log as a helper process sees it: opened on first use and kept for the
    life of the process."""
    from core.predlog import open_prediction_log

    where = (
        settings.prediction_log_url.get_secret_value()
        if settings.prediction_log_url
        else str(settings.predictions_path())
    )
    if where not in _LANE_LOGS:
        _LANE_LOGS[where] = open_prediction_log(settings)
    return _LANE_LOGS[where]
