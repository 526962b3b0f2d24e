"""The monitoring lane's process initializer, in a module of its own that imports nothing
heavy: the lane process lowers its CPU priority before it imports pandas, scikit-learn and the
rest (that import alone is seconds of CPU the predictions should not lose)."""

from __future__ import annotations

import contextlib
import os


def lowest_priority() -> None:
    with contextlib.suppress(OSError):
        os.nice(19)


def warm() -> int:
    """Import what the lane's computations need, so the first report does not pay for it."""
    import serving.dashboard
    import serving.monitoring  # noqa: F401

    return os.getpid()
