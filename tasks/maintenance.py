"""Thin Prefect tasks for the daily maintenance (core/release/retention.py says what is kept)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE

from core.errors import BundleError
from core.io.store import open_store
from core.monitoring.daily import save_day
from core.predlog import open_prediction_log
from core.release import registry, snapshots
from core.release.bundle import delete_bundle, read_champion, read_manifest, stored_bundles
from core.release.retention import (
    Cutoffs,
    MaintenanceReport,
    bundles_to_delete,
    grace_cutoff,
    snapshots_to_delete,
)
from core.release.rollout import protected_bundles
from core.settings import Settings
from core.training.study_cache import open_study_cache
from tasks.locks import promotion_lock
from tasks.retries import RETRY_TRANSIENT


@task(cache_policy=NONE, timeout_seconds=900, **RETRY_TRANSIENT)
def save_yesterday(settings: Settings) -> str:
    """The previous UTC day's aggregate, saved for the dashboard (replacing an earlier save)."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = today - timedelta(days=1)
    store = open_store(settings)
    pointer, _ = read_champion(store)
    labels = read_manifest(store, pointer.bundle_id).labels if pointer else None
    with open_prediction_log(settings) as log:
        save_day(log, start.date(), labels)
    return start.date().isoformat()


@task(cache_policy=NONE, timeout_seconds=3600, **RETRY_TRANSIENT)
def prune_log(settings: Settings) -> dict[str, int]:
    cutoffs = Cutoffs.at(datetime.now(UTC), settings)
    with open_prediction_log(settings) as log:
        deleted, labelled = log.delete_before(cutoffs.predictions, cutoffs.feedback)
        counts = {
            "predictions_deleted": deleted,
            "feedback_rows_deleted": labelled,
            "decisions_deleted": log.delete_decisions_before(cutoffs.feedback),
            "webhook_ids_deleted": log.forget_old_webhook_ids(),
        }
        history = log.delete_history_before(cutoffs.predictions, cutoffs.feedback)
        counts |= {f"{table}_deleted": count for table, count in history.items()}
    counts["study_results_deleted"] = open_study_cache(settings).prune()
    get_run_logger().info("deleted %d prediction rows (%d labelled)", deleted, labelled)
    return counts


@task(cache_policy=NONE, timeout_seconds=1800, **RETRY_TRANSIENT)
def prune_bundles(settings: Settings) -> tuple[list[str], int]:
    """(bundles deleted, bundles kept). Never the champion: an unreadable pointer stops the
    pruning (it raises) rather than letting it guess. Nothing younger than the grace period, and
    all of it under the promotion lock, so no promotion in flight loses its bundle."""
    store = open_store(settings)
    younger_than = grace_cutoff(datetime.now(UTC), settings).isoformat()
    with promotion_lock(settings, "maintenance: pruning bundles"):
        pointer, _ = read_champion(store)
        bundles = stored_bundles(store)
        champion = pointer.bundle_id if pointer else None
        protected = frozenset(protected_bundles(store, settings.rollout.rollback_depth))
        doomed = bundles_to_delete(
            bundles, champion, settings.keep_bundles, younger_than, protected
        )
        for bundle_id in doomed:
            delete_bundle(store, bundle_id)
    return doomed, len(bundles) - len(doomed)


@task(cache_policy=NONE, timeout_seconds=900, **RETRY_TRANSIENT)
def prune_snapshots(settings: Settings) -> int:
    """Training data snapshots no stored bundle names any more, past the grace period, under
    the promotion lock (a training names its snapshot in the bundle it is writing)."""
    store = open_store(settings)
    younger_than = grace_cutoff(datetime.now(UTC), settings).isoformat()
    with promotion_lock(settings, "maintenance: pruning data snapshots"):
        referenced = set()
        for bundle_id, _ in stored_bundles(store):
            try:
                snapshot = read_manifest(store, bundle_id).data_snapshot
            except BundleError:
                continue
            if snapshot is not None:
                referenced.add(snapshot.sha256)
        stored = {ref.sha256: ref for ref in snapshots.stored_snapshots(store)}
        pairs = [(digest, ref.created_at) for digest, ref in stored.items()]
        doomed = snapshots_to_delete(pairs, referenced, younger_than)
        for digest in doomed:
            snapshots.delete_snapshot(store, stored[digest])
    return len(doomed)


@task(cache_policy=NONE, timeout_seconds=900, **RETRY_TRANSIENT)
def archive_versions(settings: Settings) -> list[str]:
    """Never-promoted model versions tagged archived, except those younger than the grace
    period (their training may be promoting them), under the promotion lock."""
    older_than_ms = int(grace_cutoff(datetime.now(UTC), settings).timestamp() * 1000)
    with promotion_lock(settings, "maintenance: archiving model versions"):
        return registry.archive_unpromoted_versions(settings, older_than_ms)


@task(cache_policy=NONE, timeout_seconds=120, **RETRY_TRANSIENT)
def publish_maintenance(report: MaintenanceReport) -> None:
    create_markdown_artifact(report.markdown(), key="maintenance", description="Maintenance")
