"""The train flow's steps (flows/train.py composes them): what rows, what model, where it
goes. Each returns a typed record the next one reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from core.data.tables import NOTES, SHORT, DataReport
from core.errors import ConfigurationError, TrainingError
from core.metrics import Evaluation
from core.release.manifest import Manifest, ReferenceProfile, SnapshotRef
from core.release.snapshots import reproduction_settings
from core.settings import Settings
from core.training.families import searches_encoder
from core.training.label_audit import Suspect, without_suspects
from core.training.leaderboard import select_winner
from core.training.refit import TrainingSummary, build_manifest, summarize
from core.training.tuning import StudyResult, TuningData
from tasks.publishing import (
    announce_promotion,
    describe_model,
    log_to_mlflow,
    promote,
    publish_leaderboard,
    write_bundle,
)
from tasks.rollout import shadow_rejected_challenger
from tasks.scale import for_runner, run_studies, task_runner
from tasks.training import (
    audit_training_labels,
    keep_label_audit,
    prepare_encoder,
    refit_and_score,
)
from tasks.training_data import (
    add_feedback,
    compare_with_original,
    load_data,
    load_snapshot,
    snapshot_data,
)


@dataclass(frozen=True)
class Rows:
    """What a training learns from and is scored on, and where it came from."""

    settings: Settings
    train: pd.DataFrame
    test: pd.DataFrame
    report: DataReport
    snapshot: SnapshotRef
    production: dict[str, Any] | None
    original: Manifest | None  # the model being reproduced


@dataclass(frozen=True)
class Fitted:
    """The studies' results, the winner and its refit model, scored once on the test rows."""

    results: list[StudyResult]
    winner: StudyResult
    model: Any  # a fitted scikit-learn pipeline
    evaluation: Evaluation
    profile: ReferenceProfile
    refit_seconds: float
    suspects: list[Suspect] | None  # None when the label audit is off


def gather_rows(
    settings: Settings,
    data_path: str | None,
    test_data_path: str | None,
    include_feedback: bool,
    reproduce: str | None,
) -> Rows:
    """The table (or the snapshot of the model being reproduced, with its settings), the
    feedback-labelled production tickets if asked, and the run's snapshot of both splits."""
    original = None
    production: dict[str, Any] | None = None
    if reproduce:
        original, train_rows, test_rows, report = load_snapshot(settings, reproduce)
        settings = reproduction_settings(settings, original.training_settings or {})
    else:
        location = data_path or settings.data_path
        if not location:
            raise ConfigurationError("no training data: pass data_path or set TICKETS_DATA_PATH")
        train_rows, test_rows, report = load_data(settings, location, test_data_path)
        if include_feedback:
            train_rows, test_rows, production = add_feedback(settings, train_rows, test_rows)
    snapshot = snapshot_data(settings, train_rows, test_rows)
    return Rows(settings, train_rows, test_rows, report, snapshot, production, original)


def search_and_refit(rows: Rows) -> Fitted:
    """One study per family, the selection, the label audit, the refit of the winner. Studies,
    the audit and the refit run on the configured runner (threads or a Dask cluster,
    tasks/scale.py); everything else stays in the flow's process."""
    settings = rows.settings
    tuning_data = TuningData(
        rows.train,
        settings.language,
        settings.cv_folds,
        settings.seed,
        small_table_rows=settings.small_table_rows,
        encoder=searches_encoder(settings.families, settings.profile),
    )
    prepare_encoder(settings, tuning_data)
    with task_runner(settings) as runner:
        shared = for_runner(tuning_data, settings)
        results = run_studies(runner, settings, shared, use_cache=rows.original is None)
        winner = select_winner(
            results,
            tuning_data.plan.small,
            truth=tuning_data.codes,
            seed=settings.seed,
            ensemble=settings.ensemble,
            encoder=tuning_data.encoder,
            cascade=settings.cascade,
        )
        if winner is None:
            errors = "; ".join(f"{r.family}: {r.error}" for r in results)
            raise TrainingError(f"no family completed a trial ({errors})")
        print(f"selected: {winner.selection}")
        suspects = None
        refit_rows = rows.train
        if settings.label_audit:
            feedback_rows = int((rows.production or {}).get("train_rows", 0))
            audit = {
                "settings": settings,
                "winner": winner,
                "train": rows.train,
                "feedback_rows": feedback_rows,
            }
            suspects = runner.submit(audit_training_labels, audit).result()
            if settings.exclude_suspected_labels:
                refit_rows = without_suspects(rows.train, suspects)
        refit = {"winner": winner, "train": refit_rows, "test": rows.test, "settings": settings}
        model, evaluation, profile, seconds = runner.submit(refit_and_score, refit).result()
    return Fitted(results, winner, model, evaluation, profile, seconds, suspects)


def publish(rows: Rows, fitted: Fitted, include_feedback: bool) -> TrainingSummary:
    """MLflow, the manifest and the bundle; then promotion when the model is better (or, when
    reproducing, the comparison with the original); then the run's summary."""
    settings, model, evaluation = rows.settings, fitted.model, fitted.evaluation
    ids = log_to_mlflow(
        settings,
        fitted.results,
        fitted.winner,
        model,
        evaluation,
        fitted.refit_seconds,
        rows.report,
        rows.test[[SHORT, NOTES]].head(3),
        (rows.snapshot, rows.train, rows.test),
    )
    terms = describe_model(settings, model, rows.test, ids.run_id)
    labels = [str(label) for label in model.classes_]
    data_report = {**rows.report.as_dict(), "production": rows.production}
    if rows.original is not None:
        data_report["reproduced_from"] = rows.original.model_version
    manifest = build_manifest(
        fitted.winner,
        evaluation,
        fitted.profile,
        ids,
        data_report,
        settings,
        labels,
        terms,
        rows.snapshot,
    )
    if fitted.suspects is not None:
        manifest = manifest.model_copy(
            update={
                "suspected_labels": len(fitted.suspects),
                "suspected_labels_excluded": settings.exclude_suspected_labels,
            }
        )
    manifest, bundle_uri = write_bundle(settings, model, manifest)
    if fitted.suspects is not None:
        keep_label_audit(settings, manifest, fitted.suspects)
    if rows.original is not None:
        outcome = compare_with_original(
            settings, rows.original, model, rows.test, evaluation.macro_f1
        )
    else:
        outcome = promote(settings, manifest, model, rows.test)
        announce_promotion(settings, manifest, outcome)
        if include_feedback and not outcome.promoted and settings.rollout.shadow_rejected:
            shadow_rejected_challenger(settings, manifest)
    summary = summarize(
        manifest,
        bundle_uri,
        evaluation,
        outcome,
        fitted.results,
        len(rows.test),
        fitted.refit_seconds,
        fitted.winner.selection,
    )
    publish_leaderboard(fitted.results, summary)
    return summary
