"""Where the train flow's heavy tasks run (TICKETS_TASK_RUNNER): this process's threads, or a
Dask cluster through prefect-dask, an existing one (TICKETS_DASK_ADDRESS) or a local cluster of
worker processes started for the run. The flow's code is the same for both: it submits to the
runner this module gives it.

A study's several trial loops (TICKETS_WORKERS_PER_STUDY) are tasks of their own against one study
in the shared Optuna storage (TICKETS_OPTUNA_STORAGE): the flow creates the study, the loops run
wherever the runner puts them, and the flow reads the result back from the storage."""

from __future__ import annotations

import time
import uuid
from typing import Any, cast

import optuna
from prefect import get_run_logger, task
from prefect.cache_policies import NONE
from prefect.runtime import flow_run
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from core.errors import ConfigurationError
from core.settings import Settings
from core.training import refit as training
from core.training.shared_data import publish
from core.training.studies import (
    collect_study,
    convergence_note,
    describe_trial,
    prepare_shared_study,
    run_trial_loop,
    study_name,
)
from core.training.study_cache import open_study_cache
from core.training.tuning import StudyResult, TuningData
from tasks.training import study_key, tune_family


def task_runner(settings: Settings) -> TaskRunner[Any]:
    """Threads (model fits release the GIL, so threads share the cores), or Dask: worker
    processes with one thread each, so a study's models get the worker's cores and no task
    starts processes inside a daemonic worker (distributed#2142)."""
    scale = settings.scale
    if scale.task_runner == "threads":
        return cast("TaskRunner[Any]", ThreadPoolTaskRunner(settings.max_concurrent_studies))
    from prefect_dask import DaskTaskRunner

    if scale.dask_address:
        return cast("TaskRunner[Any]", DaskTaskRunner(address=scale.dask_address))
    import dask

    # Off means not listening: the scheduler and the workers start an HTTP server whatever the
    # dashboard setting (the scheduler's on 127.0.0.1:8787), so it gets a free port and, like
    # the workers', no routes at all (the config reaches the worker processes with their nanny).
    dask.config.set({"distributed.scheduler.http.routes": [], "distributed.worker.http.routes": []})
    cluster = {
        "n_workers": scale.dask_workers,
        "threads_per_worker": 1,
        "processes": True,
        "dashboard_address": "127.0.0.1:0",
        "scheduler_kwargs": {"dashboard": False},
    }
    return cast(
        "TaskRunner[Any]",
        DaskTaskRunner(cluster_class="distributed.LocalCluster", cluster_kwargs=cluster),
    )


def for_runner(data: TuningData, settings: Settings) -> TuningData:
    """On Dask, the table goes to the artifact store once and tasks carry only where it is;
    each worker process reads it once (core/training/shared_data.py)."""
    return publish(data, settings) if settings.scale.task_runner == "dask" else data


def run_studies(
    runner: TaskRunner[Any], settings: Settings, data: TuningData, use_cache: bool = True
) -> list[StudyResult]:
    """One study per family on ``runner``; with ``workers_per_study`` above one, each study's
    trial loops are separate tasks against the shared storage."""
    if settings.scale.workers_per_study > 1:
        return _shared_studies(runner, settings, data, use_cache)
    futures = [
        runner.submit(
            tune_family,
            {"family": family, "data": data, "settings": settings, "use_cache": use_cache},
        )
        for family in settings.families
    ]
    return [future.result() for future in futures]


def _shared_studies(
    runner: TaskRunner[Any], settings: Settings, data: TuningData, use_cache: bool
) -> list[StudyResult]:
    storage = settings.scale.storage_url()
    if not storage:
        raise ConfigurationError("TICKETS_WORKERS_PER_STUDY above 1 needs TICKETS_OPTUNA_STORAGE")
    run_key = str(flow_run.id or uuid.uuid4())
    names = {family: study_name(run_key, family) for family in settings.families}
    cached = {
        family: start_shared_study(family, data, settings, names[family], use_cache)
        for family in settings.families
    }
    started = time.perf_counter()
    loops = [
        runner.submit(
            tune_trial_loop,
            {
                "family": family,
                "data": data,
                "settings": settings,
                "name": names[family],
                "loop": loop,
            },
        )
        for family in settings.families
        if cached[family] is None
        for loop in range(settings.scale.workers_per_study)
    ]
    for future in loops:
        future.result()
    seconds = time.perf_counter() - started
    return [
        cached[family] or finish_shared_study(family, data, settings, names[family], seconds)
        for family in settings.families
    ]


@task(task_run_name="study-{family}-start", cache_policy=NONE)
def start_shared_study(
    family: str, data: TuningData, settings: Settings, name: str, use_cache: bool
) -> StudyResult | None:
    """The cached result of an identical finished study, or None after creating the study in
    the shared storage with its starting points queued."""
    if use_cache:
        result = open_study_cache(settings).load(study_key(family, data, settings))
        if result is not None:
            get_run_logger().info("%s: study finished earlier on the same data, cached", family)
            return result
    prepare_shared_study(family, data, settings.trials, str(settings.scale.storage_url()), name)
    return None


@task(task_run_name="study-{family}-loop-{loop}", cache_policy=NONE)
def tune_trial_loop(family: str, data: TuningData, settings: Settings, name: str, loop: int) -> int:
    """One trial loop of a shared study, wherever the runner put it."""
    logger = get_run_logger()

    def on_trial(label: str, trial: optuna.trial.FrozenTrial) -> None:
        logger.info("%s loop %d trial %d: %s", label, loop, trial.number, describe_trial(trial))

    done = run_trial_loop(
        family,
        data,
        settings.trials,
        settings.timeout_s,
        str(settings.scale.storage_url()),
        name,
        loop,
        training.threads_per_study(settings),
        on_trial,
    )
    logger.info("%s loop %d: %d trials", family, loop, done)
    return done


@task(task_run_name="study-{family}-finish", cache_policy=NONE)
def finish_shared_study(
    family: str, data: TuningData, settings: Settings, name: str, seconds: float
) -> StudyResult:
    """The study's result, read from the shared storage, and cached like any study's."""
    result = collect_study(family, data, str(settings.scale.storage_url()), name, seconds)
    get_run_logger().info(
        "%s: best CV macro-F1 %.4f after %d trials", family, result.cv_macro_f1, result.trials
    )
    note = convergence_note(result)
    if note:
        get_run_logger().info(note)
    if result.ok:
        open_study_cache(settings).save(study_key(family, data, settings), result)
    return result
