"""The ``maintenance`` flow (deployment ``maintenance/daily``): save the previous day's metrics,
delete what retention lets go (old predictions, old bundles), archive never-promoted MLflow
versions, and count every action in the run's artifact."""

from __future__ import annotations

from typing import Any

from prefect import flow

from core.release.retention import MaintenanceReport
from core.settings import Settings
from tasks.maintenance import (
    archive_versions,
    prune_bundles,
    prune_log,
    prune_snapshots,
    publish_maintenance,
    save_yesterday,
)
from tasks.store_block import resolve_settings


@flow(name="maintenance", log_prints=True)
def maintenance(settings: Settings | None = None) -> dict[str, Any]:
    settings = resolve_settings(settings)
    day = save_yesterday(settings)
    counts = prune_log(settings)
    deleted, kept = prune_bundles(settings)
    snapshots_deleted = prune_snapshots(settings)
    archived = archive_versions(settings)
    report = MaintenanceReport(
        day_saved=day,
        bundles_deleted=deleted,
        bundles_kept=kept,
        snapshots_deleted=snapshots_deleted,
        mlflow_versions_archived=archived,
        **counts,
    )
    publish_maintenance(report)
    return report.as_dict()
