"""How far each study has got, for whoever is watching (the CLI's progress bars).

Studies report after every trial; listeners are called in the study's thread. A listener that
fails is ignored: a display must never stop a training.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass


@dataclass(frozen=True)
class StudyProgress:
    """One study's state after a trial: trials done of its budget, the best CV macro-F1 so far
    and the seconds spent of its time budget."""

    family: str
    trials_done: int
    trials_budget: int
    best: float | None
    elapsed_s: float
    budget_s: float
    finished: bool = False

    @property
    def seconds_left(self) -> float:
        return 0.0 if self.finished else max(0.0, self.budget_s - self.elapsed_s)


Listener = Callable[[StudyProgress], None]
_listeners: list[Listener] = []
_lock = threading.Lock()


def publish(progress: StudyProgress) -> None:
    with _lock:
        listeners = list(_listeners)
    for listener in listeners:
        with suppress(Exception):  # a broken display must not stop the study
            listener(progress)


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Call ``listener`` with every study's progress until the block ends."""
    with _lock:
        _listeners.append(listener)
    try:
        yield
    finally:
        with _lock:
            _listeners.remove(listener)
