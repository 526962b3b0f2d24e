"""Prefect tasks that read and write the rows a training uses: the table, the feedback
rows, the snapshot of both splits, a reproduced model's snapshot and the comparison with it.
Safe to repeat, so they retry transient faults (tasks/retries.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NONE

from core.data.tables import LABEL, TEXT, DataReport, add_production_rows, load_training_data
from core.errors import TrainingError
from core.io.store import open_store
from core.predlog import open_prediction_log
from core.release import bundle, registry, snapshots
from core.release.manifest import Manifest, SnapshotRef
from core.release.promotion import (
    PromotionOutcome,
)
from core.settings import Settings
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
