"""Study progress: published to whoever listens, drawn as bars on a terminal only."""

from __future__ import annotations

import io

from rich.console import Console

from core.progress import StudyProgress, listening, publish
from flows.progress import study_progress


def test_progress_reaches_listeners_only_while_they_listen_and_a_broken_one_is_ignored() -> None:
    seen: list[StudyProgress] = []

    def broken(_: StudyProgress) -> None:
        raise RuntimeError("display gone")

    state = StudyProgress("linear_svm", 3, 12, 0.91, 40.0, 150.0)
    with listening(broken), listening(seen.append):
        publish(state)
    publish(state)
    assert seen == [state]
    assert state.seconds_left == 110.0
    assert StudyProgress("x", 5, 12, None, 10.0, 150.0, finished=True).seconds_left == 0.0


def test_a_terminal_gets_a_bar_per_study_with_trials_best_and_time_left() -> None:
    output = io.StringIO()
    console = Console(file=output, force_terminal=True, width=120, color_system=None)
    with study_progress(("linear_svm", "lightgbm"), 12, console) as bars:
        assert bars is not None
        publish(StudyProgress("linear_svm", 3, 12, 0.9177, 30.0, 150.0))
        publish(StudyProgress("lightgbm", 4, 12, None, 150.0, 150.0, finished=True))
        publish(StudyProgress("not_a_study_of_this_run", 1, 12, 0.5, 1.0, 150.0))
    text = output.getvalue()
    assert "linear_svm" in text and "3/12 trials" in text and "best 0.9177" in text
    assert "120s left" in text
    assert "4/4 trials" in text and "done" in text


def test_off_a_terminal_nothing_is_drawn() -> None:
    output = io.StringIO()
    with study_progress(("linear_svm",), 12, Console(file=output)) as bars:
        assert bars is None
        publish(StudyProgress("linear_svm", 3, 12, 0.9, 30.0, 150.0))
    assert output.getvalue() == ""
