"""A study in a shared storage (a journal file here): trial loops share its budget and its
starting points, and its result is read back from the storage alone."""

from __future__ import annotations

import os
from pathlib import Path

import optuna
import pandas as pd

from core.training.studies import (
    collect_study,
    open_storage,
    prepare_shared_study,
    run_trial_loop,
    study_name,
)
from core.training.tuning import TuningData


def test_trial_loops_share_one_budget_and_the_result_comes_from_the_storage(
    tmp_path: Path, demo_frame: pd.DataFrame
) -> None:
    data = TuningData(demo_frame, "spanish", cv_folds=3, seed=1)
    storage = f"journal:{tmp_path / 'optuna.log'}"
    name = study_name("run-1", "logistic_regression")
    prepare_shared_study("logistic_regression", data, 3, storage, name)
    prepare_shared_study("logistic_regression", data, 3, storage, name)  # a retry: no new queue
    first = run_trial_loop("logistic_regression", data, 3, 120, storage, name, loop=0)
    second = run_trial_loop("logistic_regression", data, 3, 120, storage, name, loop=1)
    assert (first, second) == (3, 0), "the second loop finds the budget spent"
    shared = open_storage(storage)
    assert shared is not None
    study = optuna.load_study(study_name=name, storage=shared)
    ran = [t for t in study.trials if t.state != optuna.trial.TrialState.WAITING]
    assert len(ran) == 3, "the fourth starting point waits: the budget is 3"
    assert all(t.user_attrs["pid"] == os.getpid() and t.user_attrs["host"] for t in ran)
    result = collect_study("logistic_regression", data, storage, name, seconds=1.0)
    assert result.ok and result.trials + result.pruned == 3 and result.fits >= 3
    assert result.default_params is not None, "the starting points were queued once and ran"
    summaries = optuna.get_all_study_summaries(shared)
    assert [s.study_name for s in summaries] == [name] != [study_name("run-2", "linear_svm")]
