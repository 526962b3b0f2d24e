"""Thin Prefect tasks over core: orchestration, logging and artifacts only.

The search: the encoder warmed once, one study per family (cached by what decides its outcome,
so a training run that failed after some studies finished reruns only the others), the label
audit and the refit of the winner. The rows are read in tasks/training_data.py; the model is
published in tasks/publishing.py."""

from __future__ import annotations

import os
import time
from typing import Any

import optuna
import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NONE

from core import progress
from core.encoder import attach_cache
from core.io.store import open_store
from core.metrics import Evaluation
from core.progress import StudyProgress
from core.release.manifest import Manifest, ReferenceProfile
from core.settings import Settings
from core.training import label_audit
from core.training import refit as training
from core.training.studies import convergence_note, describe_trial, run_study
from core.training.study_cache import open_study_cache
from core.training.tracking import log_label_audit
from core.training.tuning import StudyResult, TuningData, code_version
from tasks.retries import RETRY_TRANSIENT


@task(cache_policy=NONE)
def prepare_encoder(settings: Settings, data: TuningData) -> int:
    """With the accurate profile, embed the training texts once (a file under ``home`` keeps
    the vectors, so a retrain embeds only new tickets) before the studies start."""
    if not data.encoder:
        return 0
    attach_cache(settings.encoder_cache_path(), memory_rows=4 * len(data.frame) + 10_000)
    started = time.perf_counter()
    embedded = data.warm_encoder()
    get_run_logger().info(
        "sentence encoder: %d of %d training texts embedded in %.0f s, the rest cached",
        embedded,
        len(data.frame),
        time.perf_counter() - started,
    )
    return embedded


def study_key(family: str, data: TuningData, settings: Settings) -> str:
    """A study's cache key: the family, the data it searches (rows, language, folds, seed), its
    budget, and the version of the search code."""
    budget = f"{settings.trials}-{settings.timeout_s:g}"
    return f"study-{family}-{data.fingerprint()}-{budget}-{code_version()}"


@task(task_run_name="study-{family}", cache_policy=NONE)
def tune_family(
    family: str, data: TuningData, settings: Settings, use_cache: bool = True
) -> StudyResult:
    """One family's study, or its result from the cache when a run on the same data, budget and
    code finished it within ``STUDY_CACHE_AGE`` (not for a reproduction, which searches again)."""
    logger = get_run_logger()
    cache = open_study_cache(settings)
    key = study_key(family, data, settings)
    cached = cache.load(key) if use_cache else None
    if cached is not None:
        logger.info("%s: study finished earlier on the same data, taken from the cache", family)
        return cached
    started = time.perf_counter()
    best: list[float] = []

    def report(done: int, finished: bool = False) -> None:
        elapsed = time.perf_counter() - started
        progress.publish(
            StudyProgress(
                family,
                done,
                settings.trials,
                max(best) if best else None,
                elapsed,
                settings.timeout_s,
                finished,
            )
        )

    def on_trial(name: str, trial: optuna.trial.FrozenTrial) -> None:
        logger.info("%s trial %d: %s", name, trial.number, describe_trial(trial))
        if trial.state == optuna.trial.TrialState.COMPLETE and trial.value is not None:
            best.append(trial.value)
        report(trial.number + 1)

    report(0)
    result = run_study(
        family,
        data,
        settings.trials,
        settings.timeout_s,
        training.threads_per_study(settings),
        on_trial,
    )
    report(result.trials + result.pruned, finished=True)
    logger.info(
        "%s: best CV macro-F1 %.4f after %d trials", family, result.cv_macro_f1, result.trials
    )
    note = convergence_note(result)
    if note:
        logger.info(note)
    if result.ok:
        cache.save(key, result)
    return result


@task(cache_policy=NONE, timeout_seconds=3600)
def audit_training_labels(
    settings: Settings, winner: StudyResult, train: pd.DataFrame, feedback_rows: int
) -> list[label_audit.Suspect]:
    """Training rows whose label looks wrong, judged out of fold by the winner's configuration
    (core/training/label_audit)."""
    kept = label_audit.kept_out_of_fold(winner.oof_probabilities, train)
    probabilities, classes = kept or label_audit.out_of_fold_probabilities(
        winner.family,
        winner.best_params,
        train,
        settings.language,
        settings.seed,
        settings.cv_folds,
        n_jobs=os.cpu_count() or 1,
    )
    suspects = label_audit.audit_labels(train, probabilities, classes, feedback_rows)
    from_feedback = sum(suspect.source == "feedback" for suspect in suspects)
    get_run_logger().info(
        "label audit: %d of %d training rows look mislabelled (%d from feedback)%s",
        len(suspects),
        len(train),
        from_feedback,
        "; the refit leaves them out" if settings.exclude_suspected_labels else "",
    )
    return suspects


@task(cache_policy=NONE, timeout_seconds=900, **RETRY_TRANSIENT)
def keep_label_audit(
    settings: Settings, manifest: Manifest, suspects: list[label_audit.Suspect]
) -> str:
    """The suspects beside the bundle (``tickets audit-labels`` reads them) and on the run."""
    uri = label_audit.store_audit(open_store(settings), manifest.bundle_id, suspects)
    if manifest.mlflow.run_id:
        log_label_audit(settings, manifest.mlflow.run_id, [s.as_dict() for s in suspects])
    return uri


@task(cache_policy=NONE)
def refit_and_score(
    winner: StudyResult, train: pd.DataFrame, test: pd.DataFrame, settings: Settings
) -> tuple[Any, Evaluation, ReferenceProfile, float]:
    model, seconds = training.refit(winner, train, settings)
    evaluation, probabilities = training.score(model, test)
    profile = training.reference_profile(model, train, test, probabilities, settings)
    get_run_logger().info(
        "%s refit in %.1fs; test macro-F1 %.4f", winner.family, seconds, evaluation.macro_f1
    )
    return model, evaluation, profile, seconds
