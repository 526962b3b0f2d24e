"""Thin Prefect tasks over core: orchestration, logging and artifacts only."""

from __future__ import annotations

from typing import Any

import optuna
import pandas as pd
from prefect import get_client, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE
from prefect.concurrency.sync import concurrency

from core import bundle, registry, training
from core.data import DataReport, add_production_rows, load_training_data
from core.evaluation import Evaluation, confusion_matrix_png
from core.manifest import Manifest, MlflowRef
from core.predictions import open_prediction_log
from core.settings import Settings
from core.store import open_store
from core.tuning import (
    StudyResult,
    TuningData,
    describe_trial,
    leaderboard_rows,
    markdown_table,
    run_study,
)


@task(cache_policy=NONE)
def load_data(
    settings: Settings, location: str, test_location: str | None
) -> tuple[pd.DataFrame, pd.DataFrame, DataReport]:
    train, test, report = load_training_data(settings, location, test_location)
    get_run_logger().info(
        "%s: %d rows kept (%d duplicates dropped), %d classes; %d train / %d test",
        location,
        report.rows_kept,
        report.duplicates_dropped,
        report.classes,
        len(train),
        len(test),
    )
    return train, test, report


@task(cache_policy=NONE)
def add_feedback(
    settings: Settings, train: pd.DataFrame, test: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """The retraining set: base rows plus feedback-labelled production tickets."""
    log = open_prediction_log(settings)
    try:
        production = log.feedback_rows()
    finally:
        log.close()
    train, test, report = add_production_rows(train, test, production, settings)
    get_run_logger().info(
        "feedback: %d labelled production tickets -> %d train / %d evaluation; new classes %s",
        report.rows_read,
        report.train_rows,
        report.evaluation_rows,
        report.new_classes or "none",
    )
    return train, test, report.as_dict()


@task(cache_policy=NONE, task_run_name="study-{family}")
def tune_family(family: str, data: TuningData, settings: Settings) -> StudyResult:
    logger = get_run_logger()

    def on_trial(name: str, trial: optuna.trial.FrozenTrial) -> None:
        logger.info("%s trial %d: %s", name, trial.number, describe_trial(trial))

    result = run_study(
        family,
        data,
        settings.trials,
        settings.timeout_s,
        training.threads_per_study(settings),
        on_trial,
    )
    logger.info(
        "%s: best CV macro-F1 %.4f after %d trials", family, result.cv_macro_f1, result.trials
    )
    return result


@task(cache_policy=NONE)
def refit_and_score(
    winner: StudyResult, train: pd.DataFrame, test: pd.DataFrame, settings: Settings
) -> tuple[Any, Evaluation, dict[str, Any], float]:
    model, seconds = training.refit(winner, train, settings)
    evaluation, probabilities = training.score(model, test)
    profile = training.reference_profile(model, train, test, probabilities, settings)
    get_run_logger().info(
        "%s refit in %.1fs; test macro-F1 %.4f", winner.family, seconds, evaluation.macro_f1
    )
    return model, evaluation, profile, seconds


@task(cache_policy=NONE)
def log_to_mlflow(
    settings: Settings,
    results: list[StudyResult],
    winner: StudyResult,
    model: Any,
    evaluation: Evaluation,
    refit_seconds: float,
    data_report: DataReport,
    example: pd.DataFrame,
) -> MlflowRef:
    png = confusion_matrix_png(evaluation, f"{winner.family} on the test set")
    return registry.log_training(
        settings,
        results,
        winner,
        model,
        evaluation,
        png,
        {"refit_seconds": refit_seconds, "cv_macro_f1": winner.cv_macro_f1},
        data_report.as_dict(),
        example,
    )


@task(cache_policy=NONE)
def write_bundle(settings: Settings, model: Any, manifest: Manifest) -> tuple[Manifest, str]:
    """The manifest as stored (with the model file's digest) and the bundle's URI."""
    store = open_store(settings)
    stored = bundle.write_bundle(store, bundle.serialize_model(model), manifest)
    uri = bundle.bundle_uri(store, manifest.bundle_id)
    get_run_logger().info("bundle written to %s", uri)
    return stored, uri


PROMOTION_LIMIT = "tickets-promotion"


@task(cache_policy=NONE)
def promote(
    settings: Settings, manifest: Manifest, model: Any, evaluation_set: pd.DataFrame
) -> training.PromotionOutcome:
    """Promote under a Prefect global concurrency limit of one slot, so promotions queue."""
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(PROMOTION_LIMIT, 1)
    with concurrency(PROMOTION_LIMIT, occupy=1, strict=True):
        outcome = training.promote_if_better(
            open_store(settings),
            manifest,
            model,
            evaluation_set,
            settings.promotion_margin,
            settings.seed,
        )
    version = manifest.mlflow.model_version
    if outcome.promoted and version:
        registry.set_champion_alias(settings, version)
    if manifest.mlflow.run_id:
        registry.log_promotion(settings, manifest.mlflow.run_id, outcome.as_dict())
    get_run_logger().info("promoted=%s: %s", outcome.promoted, outcome.reason)
    return outcome


@task(cache_policy=NONE)
def publish_leaderboard(results: list[StudyResult], summary: training.TrainingSummary) -> None:
    lines = [
        f"# Training: {summary.champion_family}",
        f"test macro-F1 **{summary.test_macro_f1:.4f}**, weighted F1 "
        f"{summary.test_weighted_f1:.4f}, accuracy {summary.test_accuracy:.4f}; "
        f"promoted: {summary.promoted} ({summary.promotion_reason})",
        "",
        markdown_table(leaderboard_rows(results)),
    ]
    create_markdown_artifact("\n".join(lines), key="leaderboard", description="Study leaderboard")
