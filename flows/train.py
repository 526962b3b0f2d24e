"""The ``train`` flow: load, fan out one study per family, refit the winner, score it once on
the held-out test set, log to MLflow, write the bundle and promote it when it is better."""

from __future__ import annotations

from typing import Any

from prefect import flow

from core.data.tables import NOTES, SHORT
from core.errors import ConfigurationError, TrainingError
from core.release.snapshots import reproduction_settings
from core.settings import Settings
from core.training.families import searches_encoder
from core.training.label_audit import without_suspects
from core.training.leaderboard import select_winner
from core.training.refit import TrainingSummary, build_manifest, summarize
from core.training.tuning import TuningData
from tasks.rollout import shadow_rejected_challenger
from tasks.scale import for_runner, run_studies, task_runner
from tasks.store_block import resolve_settings
from tasks.training import (
    add_feedback,
    announce_promotion,
    audit_training_labels,
    compare_with_original,
    describe_model,
    keep_label_audit,
    load_data,
    load_snapshot,
    log_to_mlflow,
    prepare_encoder,
    promote,
    publish_leaderboard,
    refit_and_score,
    snapshot_data,
    write_bundle,
)


@flow(name="train", log_prints=True)
def train(
    settings: Settings | None = None,
    data_path: str | None = None,
    test_data_path: str | None = None,
    include_feedback: bool = False,
    reproduce: str | None = None,
) -> TrainingSummary:
    """Train every configured family and return the run's summary. With ``include_feedback``
    the feedback-labelled production tickets join both the training and the evaluation rows.
    With ``reproduce`` (a model version) the table and settings that made that model are used
    again, the studies search afresh, and the result is compared with it, never promoted."""
    settings = resolve_settings(settings)
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
    tuning_data = TuningData(
        train_rows,
        settings.language,
        settings.cv_folds,
        settings.seed,
        small_table_rows=settings.small_table_rows,
        encoder=searches_encoder(settings.families, settings.profile),
    )
    prepare_encoder(settings, tuning_data)
    # Studies, the label audit and the refit run on the configured runner (threads or a Dask
    # cluster, tasks/scale.py); everything else stays in the flow's process.
    with task_runner(settings) as runner:
        shared = for_runner(tuning_data, settings)
        results = run_studies(runner, settings, shared, use_cache=original is None)
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
        refit_rows = train_rows
        if settings.label_audit:
            feedback_rows = int((production or {}).get("train_rows", 0))
            suspects = runner.submit(
                audit_training_labels,
                {
                    "settings": settings,
                    "winner": winner,
                    "train": train_rows,
                    "feedback_rows": feedback_rows,
                },
            ).result()
            if settings.exclude_suspected_labels:
                refit_rows = without_suspects(train_rows, suspects)
        model, evaluation, profile, refit_seconds = runner.submit(
            refit_and_score,
            {"winner": winner, "train": refit_rows, "test": test_rows, "settings": settings},
        ).result()
    example = test_rows[[SHORT, NOTES]].head(3)
    ids = log_to_mlflow(
        settings,
        results,
        winner,
        model,
        evaluation,
        refit_seconds,
        report,
        example,
        (snapshot, train_rows, test_rows),
    )
    terms = describe_model(settings, model, test_rows, ids.run_id)
    labels = [str(label) for label in model.classes_]
    data_report = {**report.as_dict(), "production": production}
    if original is not None:
        data_report["reproduced_from"] = original.model_version
    manifest = build_manifest(
        winner, evaluation, profile, ids, data_report, settings, labels, terms, snapshot
    )
    if suspects is not None:
        manifest = manifest.model_copy(
            update={
                "suspected_labels": len(suspects),
                "suspected_labels_excluded": settings.exclude_suspected_labels,
            }
        )
    manifest, bundle_uri = write_bundle(settings, model, manifest)
    if suspects is not None:
        keep_label_audit(settings, manifest, suspects)
    if original is not None:
        outcome = compare_with_original(settings, original, model, test_rows, evaluation.macro_f1)
    else:
        outcome = promote(settings, manifest, model, test_rows)
        announce_promotion(settings, manifest, outcome)
        if include_feedback and not outcome.promoted and settings.rollout.shadow_rejected:
            shadow_rejected_challenger(settings, manifest)
    summary = summarize(
        manifest,
        bundle_uri,
        evaluation,
        outcome,
        results,
        len(test_rows),
        refit_seconds,
        winner.selection,
    )
    publish_leaderboard(results, summary)
    return summary
