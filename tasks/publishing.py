"""Prefect tasks that publish a trained model: MLflow, the bundle, the promotion (under the
promotion lock, tasks/locks.py), its announcement and the leaderboard artifact. Tasks that are
safe to repeat (logging under a key, writing a bundle, promoting, which is idempotent) retry
transient faults with backoff and jitter (tasks/retries.py)."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE
from prefect.events import emit_event
from prefect.runtime import flow_run

from core import events
from core.data.tables import TEXT, DataReport
from core.errors import PromotionError
from core.explain import global_terms
from core.io.store import open_store
from core.metrics import Evaluation, confusion_matrix_png
from core.predlog import open_prediction_log
from core.records import PromotionRecord
from core.release import bundle, registry
from core.release.manifest import Manifest, MlflowRef, SnapshotRef
from core.release.promotion import (
    ALREADY_CHAMPION,
    PromotionOutcome,
    promote_challenger,
    promotion_record,
)
from core.settings import Settings
from core.training import refit as training
from core.training.leaderboard import leaderboard_rows, markdown_table
from core.training.tracking import log_top_terms, log_training
from core.training.tuning import StudyResult
from tasks.locks import promotion_lock
from tasks.retries import RETRY_TRANSIENT


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
