"""Thin Prefect tasks over core: orchestration, logging and artifacts only.

Tasks that are safe to repeat (reading, writing a bundle, logging under a key, promoting, which is
idempotent) retry transient faults with backoff and jitter (tasks/retries.py) and have a timeout
where a hang is possible. Studies are cached by what decides their outcome, so a training run that
failed after some studies finished reruns only the others."""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import optuna
import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE
from prefect.events import emit_event
from prefect.runtime import flow_run

from core import events, progress
from core.data.tables import LABEL, TEXT, DataReport, add_production_rows, load_training_data
from core.encoder import attach_cache
from core.errors import PromotionError, TrainingError
from core.explain import global_terms
from core.io.store import open_store
from core.metrics import Evaluation, confusion_matrix_png
from core.predlog import open_prediction_log
from core.progress import StudyProgress
from core.records import PromotionRecord
from core.release import bundle, registry, snapshots
from core.release.manifest import Manifest, MlflowRef, ReferenceProfile, SnapshotRef
from core.release.promotion import (
    ALREADY_CHAMPION,
    PromotionOutcome,
    promote_challenger,
    promotion_record,
)
from core.settings import Settings
from core.training import label_audit
from core.training import refit as training
from core.training.leaderboard import leaderboard_rows, markdown_table
from core.training.studies import convergence_note, describe_trial, run_study
from core.training.study_cache import open_study_cache
from core.training.tracking import log_label_audit, log_top_terms, log_training
from core.training.tuning import StudyResult, TuningData, code_version
from tasks.locks import promotion_lock
from tasks.retries import RETRY_TRANSIENT


@task(cache_policy=NONE, timeout_seconds=900, **RETRY_TRANSIENT)
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


@task(cache_policy=NONE, timeout_seconds=900, **RETRY_TRANSIENT)
def add_feedback(
    settings: Settings, train: pd.DataFrame, test: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """The retraining set: base rows plus feedback-labelled production tickets."""
    since = datetime.now(UTC) - timedelta(days=settings.feedback_retention_days)
    with open_prediction_log(settings) as log:
        production = log.feedback_rows(since=since.isoformat())
    train, test, report = add_production_rows(train, test, production, settings)
    get_run_logger().info(
        "feedback: %d labelled production tickets -> %d train / %d evaluation; new classes %s",
        report.rows_read,
        report.train_rows,
        report.evaluation_rows,
        report.new_classes or "none",
    )
    return train, test, report.as_dict()


@task(cache_policy=NONE, timeout_seconds=900, **RETRY_TRANSIENT)
def snapshot_data(settings: Settings, train: pd.DataFrame, test: pd.DataFrame) -> SnapshotRef:
    """The exact table this training uses, stored content-addressed (core/release/snapshots)."""
    ref = snapshots.write_snapshot(open_store(settings), train, test)
    get_run_logger().info(
        "training data: %d train + %d test rows, snapshot %s",
        ref.train_rows,
        ref.test_rows,
        ref.uri,
    )
    return ref


@task(cache_policy=NONE, timeout_seconds=900, **RETRY_TRANSIENT)
def load_snapshot(
    settings: Settings, version: str
) -> tuple[Manifest, pd.DataFrame, pd.DataFrame, DataReport]:
    """The manifest of model ``version`` and the table it was trained and tested on."""
    store = open_store(settings)
    manifest = snapshots.find_manifest(store, version, registry.manifest_voucher(settings, store))
    if manifest.data_snapshot is None:
        raise TrainingError(
            f"model {version} was trained before training data was kept: it cannot be reproduced"
        )
    train, test = snapshots.read_snapshot(store, manifest.data_snapshot)
    report = DataReport(
        source=manifest.data_snapshot.uri,
        rows_read=len(train) + len(test),
        duplicates_dropped=0,
        rows_kept=len(train) + len(test),
        classes=train[LABEL].nunique(),
        format="parquet",
    )
    get_run_logger().info(
        "reproducing model %s from %s (%d train / %d test rows)",
        version,
        manifest.data_snapshot.uri,
        len(train),
        len(test),
    )
    return manifest, train, test, report


@task(cache_policy=NONE, timeout_seconds=900, **RETRY_TRANSIENT)
def compare_with_original(
    settings: Settings, original: Manifest, model: Any, test: pd.DataFrame, macro_f1: float
) -> PromotionOutcome:
    """A reproduction is never promoted: its outcome says how many of the original model's
    test predictions it repeats."""
    before, _ = bundle.load_bundle(open_store(settings), original.bundle_id)
    rows = test[TEXT]
    comparison = snapshots.compare_reproduction(
        np.asarray(before.predict_proba(rows)),
        [str(label) for label in before.classes_],
        np.asarray(model.predict_proba(rows)),
        [str(label) for label in model.classes_],
        encoder=original.encoder is not None,
    )
    reason = comparison.describe(original.model_version)
    get_run_logger().info(reason)
    return PromotionOutcome(
        promoted=False,
        reason=reason,
        champion_bundle_id=original.bundle_id,
        challenger_macro_f1=macro_f1,
        champion_macro_f1=original.test_macro_f1,
        evaluation_rows=len(test),
        champion_version=original.model_version,
    )


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


@task(cache_policy=NONE, timeout_seconds=900, **RETRY_TRANSIENT)
def log_to_mlflow(
    settings: Settings,
    results: list[StudyResult],
    winner: StudyResult,
    model: Any,
    evaluation: Evaluation,
    refit_seconds: float,
    data_report: DataReport,
    example: pd.DataFrame,
    datasets: tuple[SnapshotRef, pd.DataFrame, pd.DataFrame] | None = None,
) -> MlflowRef:
    png = confusion_matrix_png(evaluation, f"{winner.family} on the test set")
    return log_training(
        settings,
        results,
        winner,
        model,
        evaluation,
        png,
        {"refit_seconds": refit_seconds, "cv_macro_f1": winner.cv_macro_f1},
        data_report.as_dict(),
        example,
        key=str(flow_run.id or uuid.uuid4()),
        datasets=datasets,
    )


#: Held-out tickets whose explanations make a non-linear model's global view.
GLOBAL_VIEW_ROWS = 40


@task(cache_policy=NONE, timeout_seconds=900, **RETRY_TRANSIENT)
def describe_model(
    settings: Settings, model: Any, test: pd.DataFrame, run_id: str | None
) -> dict[str, list[tuple[str, float]]]:
    """The model's global view (core/explain.global_terms), on its MLflow run."""
    rows = test[TEXT].head(GLOBAL_VIEW_ROWS).fillna("").to_numpy(dtype=object)
    terms = global_terms(model, [(str(s), str(n)) for s, n in rows])
    if run_id:
        log_top_terms(settings, run_id, terms)
    return terms


@task(cache_policy=NONE, timeout_seconds=900, **RETRY_TRANSIENT)
def write_bundle(settings: Settings, model: Any, manifest: Manifest) -> tuple[Manifest, str]:
    """The manifest as stored (with the model file's digest) and the bundle's URI."""
    store = open_store(settings)
    stored = bundle.write_bundle(store, bundle.serialize_model(model), manifest)
    if stored.mlflow.model_version:
        digest = hashlib.sha256(stored.to_json()).hexdigest()
        registry.record_manifest_digest(settings, stored.mlflow.model_version, digest)
    uri = bundle.bundle_uri(store, manifest.bundle_id)
    get_run_logger().info("bundle written to %s", uri)
    return stored, uri


@task(cache_policy=NONE, timeout_seconds=900, **RETRY_TRANSIENT)
def promote(
    settings: Settings, manifest: Manifest, model: Any, evaluation_set: pd.DataFrame
) -> PromotionOutcome:
    """Promote under the promotion lock (tasks/locks.py), so promotions queue; the pointer and
    the MLflow ``champion`` alias move under that same lock. A champion that cannot be read
    refuses the promotion (the run fails, saying why)."""
    with promotion_lock(settings, f"promoting {manifest.bundle_id}"):
        try:
            outcome = promote_challenger(settings, manifest, model, evaluation_set)
        except PromotionError as exc:
            if manifest.mlflow.run_id:
                refused = {"promoted": False, "reason": str(exc)}
                registry.log_promotion(settings, manifest.mlflow.run_id, refused)
            raise
    if manifest.mlflow.run_id:
        registry.log_promotion(settings, manifest.mlflow.run_id, outcome.as_dict())
    get_run_logger().info("promoted=%s: %s", outcome.promoted, outcome.reason)
    return outcome


@task(cache_policy=NONE, timeout_seconds=300, **RETRY_TRANSIENT)
def announce_promotion(settings: Settings, manifest: Manifest, outcome: PromotionOutcome) -> None:
    """The decision in the log's database (the dashboard's history) and as an event
    (``tickets.model.promoted`` or ``tickets.model.rejected``) that notifications act on. Both
    are keyed by the challenger and the champion it was judged against, not by the run: a retried
    promotion (the same task, or a rerun of the flow) writes the same row and the same event."""
    if outcome.reason == ALREADY_CHAMPION:
        return
    record = promotion_record(manifest, outcome, datetime.now(UTC).isoformat())
    name = events.MODEL_PROMOTED if outcome.promoted else events.MODEL_REJECTED
    announce_decision(settings, record, name, manifest.family)


def announce_decision(
    settings: Settings,
    record: PromotionRecord,
    name: str,
    family: str | None,
    extra: dict[str, Any] | None = None,
) -> None:
    """A decision about a model (promotion, rollback, canary rollback) in the log's history and
    as the event ``name`` about the model it names, both keyed by the decision, so a retry
    writes the same row and the same event (Prefect keeps one event per id)."""
    with open_prediction_log(settings) as log:
        log.record_promotion(record)
    version = record.challenger_version or record.challenger
    emit_event(
        event=name,
        resource={"prefect.resource.id": f"tickets.model.{version}", "model_version": version},
        payload={**record.as_dict(), "family": family, **(extra or {})},
        id=events.flow_event_id(f"{record.decision_key()}/{name}"),
    )


@task(cache_policy=NONE, timeout_seconds=120, **RETRY_TRANSIENT)
def publish_leaderboard(results: list[StudyResult], summary: training.TrainingSummary) -> None:
    lines = [
        f"# Training: {summary.champion_family}",
        f"test macro-F1 **{summary.test_macro_f1:.4f}**, weighted F1 "
        f"{summary.test_weighted_f1:.4f}, accuracy {summary.test_accuracy:.4f}; "
        f"promoted: {summary.promoted} ({summary.promotion_reason})",
        "",
        f"Selected: {summary.selection}",
        "",
        markdown_table(leaderboard_rows(results)),
    ]
    create_markdown_artifact("\n".join(lines), key="leaderboard", description="Study leaderboard")
