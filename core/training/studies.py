"""Running a family's Optuna study: in memory in one loop (the default), or in a shared storage
(PostgreSQL, or a journal file on one machine) where several trial loops, each a task on its own
Dask worker, work on the same study. Studies in a shared storage are named by run and family, so
reruns and parallel runs never meet; each loop samples with its own seed (the same seed would
have every loop propose the same random configurations), and together they stop at the study's
trial budget."""

from __future__ import annotations

import functools
import time
import warnings
from collections.abc import Callable
from dataclasses import replace

import optuna

from core.training.families import starting_points
from core.training.folds import standard_error
from core.training.tuning import StudyResult, TrialPredictions, TuningData, objective_for

State = optuna.trial.TrialState
#: Trials that count against a study's budget: every loop's finished and running ones (not the
#: queued starting points, which are trials still to run).
COUNTED = (State.COMPLETE, State.PRUNED, State.FAIL, State.RUNNING)
OnTrial = Callable[[str, optuna.trial.FrozenTrial], None]
#: A trial whose process stopped beating this long ago is failed, and its slot freed.
HEARTBEAT_S, GRACE_S = 30, 120


def open_storage(url: str | None) -> optuna.storages.BaseStorage | None:
    """The storage ``TICKETS_OPTUNA_STORAGE`` names: ``journal:<file>`` (one machine, file
    locks) or a database URL (``postgresql://`` goes through psycopg 3); None: in memory. One
    per URL and process: a database storage holds a connection pool."""
    return _storage(url) if url else None


@functools.cache
def _storage(url: str) -> optuna.storages.BaseStorage:
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(url.removeprefix("journal:")))
    if url.startswith(("postgresql://", "postgres://")):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    with warnings.catch_warnings():  # the heartbeat is marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs={"pool_pre_ping": True},
            heartbeat_interval=HEARTBEAT_S,
            grace_period=GRACE_S,
        )


def study_name(run_key: str, family: str) -> str:
    return f"tickets-{run_key}-{family}"


def _study(
    family: str,
    data: TuningData,
    trials: int,
    storage: optuna.storages.BaseStorage | None,
    name: str,
    loop: int = 0,
) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(
        study_name=name,
        storage=storage,
        load_if_exists=storage is not None,
        direction="maximize",
        sampler=_sampler(trials, data.seed + loop),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2)
        if data.plan.prune
        else optuna.pruners.NopPruner(),
    )


def _optimize(
    study: optuna.Study,
    family: str,
    data: TuningData,
    trials: int,
    timeout_s: float,
    n_jobs: int,
    on_trial: OnTrial | None,
    n_trials: int | None = None,
) -> None:
    callbacks: list[Callable[[optuna.Study, optuna.trial.FrozenTrial], None]] = [
        optuna.study.MaxTrialsCallback(trials, states=COUNTED)
    ]
    if on_trial:
        callbacks.append(lambda _study, trial: on_trial(family, trial))
    study.optimize(
        objective_for(family, data, n_jobs),
        n_trials=n_trials or trials,
        timeout=timeout_s,
        catch=(Exception,),
        callbacks=callbacks,
    )


def run_study(
    family: str,
    data: TuningData,
    trials: int,
    timeout_s: float,
    n_jobs: int = 1,
    on_trial: OnTrial | None = None,
) -> StudyResult:
    """Tune one family in memory; a failing family is reported, not raised, so the others
    still count."""
    started = time.perf_counter()
    study = _study(family, data, trials, None, family)
    for start in starting_points(family, data.encoder):
        study.enqueue_trial(start, skip_if_exists=True)
    _optimize(study, family, data, trials, timeout_s, n_jobs, on_trial)
    return summarize(family, study, time.perf_counter() - started, data)


def prepare_shared_study(
    family: str, data: TuningData, trials: int, storage_url: str, name: str
) -> None:
    """Create the study in the shared storage with the family's starting points queued, once,
    before its trial loops start (any loop may take them)."""
    study = _study(family, data, trials, open_storage(storage_url), name)
    if not study.get_trials(deepcopy=False):
        for start in starting_points(family, data.encoder):
            study.enqueue_trial(start, skip_if_exists=True)


def run_trial_loop(
    family: str,
    data: TuningData,
    trials: int,
    timeout_s: float,
    storage_url: str,
    name: str,
    loop: int,
    n_jobs: int = 1,
    on_trial: OnTrial | None = None,
) -> int:
    """One of a study's trial loops: trials until the study holds ``trials`` (counting every
    loop's) or ``timeout_s`` passes. Returns how many trials this loop ran."""
    study = _study(family, data, trials, open_storage(storage_url), name, loop)
    remaining = trials - len(study.get_trials(deepcopy=False, states=COUNTED))
    if remaining <= 0:  # Optuna's stop is checked after a trial: never start a spare one
        return 0
    ran: list[int] = []

    def counted(label: str, trial: optuna.trial.FrozenTrial) -> None:
        ran.append(trial.number)
        if on_trial:
            on_trial(label, trial)

    _optimize(study, family, data, trials, timeout_s, n_jobs, counted, remaining)
    return len(ran)


def collect_study(
    family: str, data: TuningData, storage_url: str, name: str, seconds: float
) -> StudyResult:
    """The result of a study whose trial loops have finished, read from the shared storage."""
    study = optuna.load_study(study_name=name, storage=open_storage(storage_url) or storage_url)
    return summarize(family, study, seconds, data)


def convergence_note(result: StudyResult) -> str | None:
    """One line for a study whose models stopped at their iteration limit, or None."""
    if not result.unconverged_fits:
        return None
    return (
        f"{result.family}: {result.unconverged_fits} of {result.fits} fits stopped at the "
        "solver's iteration limit (liblinear); their scores count as they are"
    )


def _sampler(trials: int, seed: int) -> optuna.samplers.TPESampler:
    """TPE that starts modelling after a third of the budget (at least the enqueued starting
    points): with Optuna's default of 10 random trials first, a 12-trial study would be almost
    pure random search."""
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(3, trials // 3))


def summarize(family: str, study: optuna.Study, seconds: float, data: TuningData) -> StudyResult:
    """The study's result from its trials alone (they carry their fold scores, fit counts and
    out-of-fold predictions), wherever they ran."""
    result = _result(family, study, seconds, data.plan.folds, data.encoder)
    trials = study.get_trials(deepcopy=False)
    kept = [
        TrialPredictions(
            dict(trial.params),
            float(trial.value or 0.0),
            standard_error(list(trial.user_attrs.get("fold_scores", [])), data.plan.folds),
            list(trial.user_attrs.get("out_of_fold", [])),
            str(trial.user_attrs.get("oof_proba", "")),
        )
        for trial in trials
        if trial.state == optuna.trial.TrialState.COMPLETE
        and ("out_of_fold" in trial.user_attrs or "oof_proba" in trial.user_attrs)
    ]
    return replace(
        result,
        fits=sum(int(t.user_attrs.get("fits", 0)) for t in trials),
        unconverged_fits=sum(int(t.user_attrs.get("unconverged", 0)) for t in trials),
        trial_predictions=kept,
    )


def _result(
    family: str, study: optuna.Study, seconds: float, folds: int, encoder: bool = False
) -> StudyResult:
    states = [trial.state for trial in study.trials]
    complete = states.count(optuna.trial.TrialState.COMPLETE)
    pruned = states.count(optuna.trial.TrialState.PRUNED)
    if complete == 0:
        failures = [t.system_attrs.get("fail_reason", "") for t in study.trials]
        reason = next((f for f in failures if f), "no trial completed within the budget")
        return StudyResult(family, {}, float("nan"), 0, pruned, seconds, error=reason)
    best = study.best_trial
    best_folds = list(best.user_attrs.get("fold_scores", []))
    default = starting_points(family, encoder)[0]
    default_trial = next(
        (
            t
            for t in study.trials
            if t.state == optuna.trial.TrialState.COMPLETE
            and all(default.get(key) == value for key, value in t.params.items())
        ),
        None,
    )
    default_folds = list(default_trial.user_attrs.get("fold_scores", [])) if default_trial else []
    return StudyResult(
        family,
        dict(best.params),
        float(best.value or 0.0),
        complete,
        pruned,
        seconds,
        cv_std_error=standard_error(best_folds, folds),
        cv_folds=len(best_folds),
        default_params=dict(default_trial.params) if default_trial else None,
        default_cv_macro_f1=float(default_trial.value or 0.0) if default_trial else float("nan"),
        default_cv_std_error=standard_error(default_folds, folds),
    )


def describe_trial(trial: optuna.trial.FrozenTrial) -> str:
    """One line for the progress log. Optuna gives a pruned trial the last fold mean it reported,
    which can be above the study's best (the first fold is often the easiest), so a pruned trial
    says so instead of looking like a better score that was thrown away."""
    if trial.state == optuna.trial.TrialState.PRUNED:
        if not trial.intermediate_values:
            return "pruned"
        last = trial.intermediate_values[max(trial.intermediate_values)]
        folds = len(trial.intermediate_values)
        return f"pruned after {folds} fold{'s' if folds > 1 else ''} (mean so far {last:.4f})"
    if trial.state == optuna.trial.TrialState.COMPLETE and trial.value is not None:
        return f"{trial.value:.4f}"
    return trial.state.name.lower()
