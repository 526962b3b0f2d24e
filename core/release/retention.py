"""Bounded growth: what the daily maintenance keeps and what it lets go.

- Prediction rows older than ``log_retention_days`` are deleted; rows with a true label are the
  retraining set and stay for ``feedback_retention_days`` (the retrain reads no older ones).
  Drift reports go with the predictions they judged; promotion decisions, daily aggregates and
  retrain decisions stay as long as feedback; cached studies a week.
- Bundles other than the champion's are deleted once they are not among the ``keep_bundles``
  most recent: a model that was never promoted, or was replaced long ago, is not needed to
  serve or to roll back to a recent champion. The last ``rollout_rollback_depth`` champions of
  the champion history and the challenger are always kept.
- A training data snapshot (core/release/snapshots.py) stays while a kept bundle names it;
  once none does and it is older than the grace period, it goes with them.
- MLflow model versions that were never promoted are tagged ``tickets.archived``, so the
  registry view can hide them; their runs stay as the record of what was tried.
- Neither touches anything younger than ``retention_grace_hours`` (a training may be about to
  promote it), and both run under the promotion lock (tasks/maintenance.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from core.settings import Settings

ARCHIVED_TAG = "tickets.archived"


@dataclass(frozen=True)
class Cutoffs:
    """ISO times before which rows go: unlabelled predictions, labelled ones, decisions."""

    predictions: str
    feedback: str

    @classmethod
    def at(cls, now: datetime, settings: Settings) -> Cutoffs:
        return cls(
            predictions=(now - timedelta(days=settings.log_retention_days)).isoformat(),
            feedback=(now - timedelta(days=settings.feedback_retention_days)).isoformat(),
        )


def bundles_to_delete(
    bundles: Sequence[tuple[str, str]],
    champion: str | None,
    keep: int,
    younger_than: str | None = None,
    protected: frozenset[str] = frozenset(),
) -> list[str]:
    """Ids of the bundles to delete, from (bundle id, created at) pairs: all but the champion,
    the ``protected`` ones (earlier champions a rollback may go back to, the challenger), the
    ``keep`` most recent, and any created at or after ``younger_than`` (an ISO time) or of
    unknown age (created at ""): a bundle a training is still writing has no manifest yet, and
    deleting its model file made that training promote a bundle without one."""
    newest_first = sorted(bundles, key=lambda pair: (pair[1], pair[0]), reverse=True)
    kept = {bundle_id for bundle_id, _ in newest_first[:keep]} | protected
    if champion is not None:
        kept.add(champion)
    for bundle_id, created in bundles:
        if not created or (younger_than is not None and created >= younger_than):
            kept.add(bundle_id)
    return sorted(bundle_id for bundle_id, _ in bundles if bundle_id not in kept)


def snapshots_to_delete(
    snapshots: Sequence[tuple[str, str]], referenced: set[str], younger_than: str
) -> list[str]:
    """Digests of the snapshots to delete, from (sha256, created at) pairs: those no kept
    bundle references, created before ``younger_than`` (a training writes its snapshot before
    its bundle, so a young unreferenced snapshot may be about to be named)."""
    return sorted(
        digest
        for digest, created in snapshots
        if digest not in referenced and created and created < younger_than
    )


def grace_cutoff(now: datetime, settings: Settings) -> datetime:
    """Before this, a bundle or model version may go; from it on, a training may still need it."""
    return now - timedelta(hours=settings.retention_grace_hours)


@dataclass
class MaintenanceReport:
    """What one maintenance run did, action by action (the run's artifact shows it)."""

    day_saved: str | None = None
    predictions_deleted: int = 0
    feedback_rows_deleted: int = 0
    decisions_deleted: int = 0
    webhook_ids_deleted: int = 0
    drift_reports_deleted: int = 0
    promotion_decisions_deleted: int = 0
    daily_metrics_deleted: int = 0
    study_results_deleted: int = 0
    bundles_deleted: list[str] = field(default_factory=list)
    bundles_kept: int = 0
    snapshots_deleted: int = 0
    mlflow_versions_archived: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def markdown(self) -> str:
        rows = [
            ("daily metrics saved for", self.day_saved or "nothing (no champion)"),
            ("prediction rows deleted", self.predictions_deleted),
            ("of which feedback-labelled", self.feedback_rows_deleted),
            ("retrain decisions deleted", self.decisions_deleted),
            ("webhook ids forgotten", self.webhook_ids_deleted),
            ("drift reports deleted", self.drift_reports_deleted),
            ("promotion decisions deleted", self.promotion_decisions_deleted),
            ("daily aggregates deleted", self.daily_metrics_deleted),
            ("cached studies deleted", self.study_results_deleted),
            ("bundles deleted", len(self.bundles_deleted)),
            ("bundles kept", self.bundles_kept),
            ("training data snapshots deleted", self.snapshots_deleted),
            ("MLflow versions tagged archived", len(self.mlflow_versions_archived)),
        ]
        lines = ["# Maintenance", "", "| action | count |", "|---|---|"]
        lines += [f"| {name} | {value} |" for name, value in rows]
        return "\n".join(lines)
