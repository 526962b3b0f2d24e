"""Live progress bars for ``tickets train`` on a terminal: one per study, with trials done, the
best CV macro-F1 so far and the time left of its budget. Off a terminal nothing is drawn and
the per-trial log lines are the record."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn

from core.progress import StudyProgress, listening

#: Loggers whose console output would scroll through the bars; they still reach Prefect's API.
QUIETED = ("prefect.flow_runs", "prefect.task_runs", "prefect")


class StudyBars:
    """Rich progress bars fed by study progress (called from the studies' threads)."""

    def __init__(self, families: tuple[str, ...], trials: int, console: Console) -> None:
        self.progress = Progress(
            TextColumn("{task.description:<20}"),
            BarColumn(bar_width=24),
            TextColumn("{task.completed:>3.0f}/{task.total:.0f} trials"),
            TextColumn("best {task.fields[best]}"),
            TextColumn("{task.fields[left]}"),
            console=console,
            transient=False,
        )
        self.tasks: dict[str, TaskID] = {
            family: self.progress.add_task(family, total=trials, best="-", left="waiting")
            for family in families
        }

    def __call__(self, state: StudyProgress) -> None:
        task = self.tasks.get(state.family)
        if task is None:
            return
        left = "done" if state.finished else f"{state.seconds_left:.0f}s left"
        best = "-" if state.best is None else f"{state.best:.4f}"
        total = state.trials_done if state.finished else state.trials_budget
        self.progress.update(task, completed=state.trials_done, total=total, best=best, left=left)


@contextmanager
def study_progress(
    families: tuple[str, ...], trials: int, console: Console | None = None
) -> Iterator[StudyBars | None]:
    """Bars on ``console`` (standard error) while the block runs, if it is a terminal."""
    console = console or Console(stderr=True)
    if not console.is_terminal:
        yield None
        return
    bars = StudyBars(families, trials, console)
    handlers = [
        (handler, handler.level)
        for name in QUIETED
        for handler in logging.getLogger(name).handlers
        if isinstance(handler, logging.StreamHandler)
    ]
    for handler, _ in handlers:
        handler.setLevel(logging.WARNING)
    try:
        with bars.progress, listening(bars):
            yield bars
    finally:
        for handler, level in handlers:
            handler.setLevel(level)
