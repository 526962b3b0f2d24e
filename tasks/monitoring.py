"""Thin Prefect tasks for the monitor: read the window, report, publish, emit the event."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE
from prefect.events import emit_event

from core import events, registry
from core.bundle import read_champion, read_manifest
from core.drift import DriftReport, model_window, report_for_model
from core.manifest import Manifest
from core.predictions import open_prediction_log, window_start
from core.settings import Settings
from core.store import open_store


@task(cache_policy=NONE)
def check_drift(settings: Settings, window: str) -> tuple[DriftReport, Manifest] | None:
    """The champion's drift report over ``window`` and its manifest; None without a champion."""
    store = open_store(settings)
    pointer, _ = read_champion(store)
    if pointer is None:
        get_run_logger().warning("no champion model yet: run the train flow first")
        return None
    manifest = read_manifest(store, pointer.bundle_id)
    log = open_prediction_log(settings)
    try:
        since = window_start(window, longest=settings.monitoring_max_window)
        frame = model_window(log, since, manifest, settings)
    finally:
        log.close()
    report = report_for_model(frame, manifest, settings)
    get_run_logger().info(
        "model %s, %d predictions in %s: drift=%s score=%.2f %s",
        manifest.model_version,
        report.n_predictions,
        window,
        report.drift_detected,
        report.drift_score,
        report.reasons,
    )
    return report, manifest


@task(cache_policy=NONE)
def publish_report(settings: Settings, report: DriftReport, version: str) -> str:
    """Markdown artifact in Prefect and a run in MLflow; returns the MLflow run id."""
    create_markdown_artifact(report.markdown(), key="drift-report", description="Drift report")
    body = {**report.as_dict(), "model_version": version}
    return registry.log_drift_report(settings, body, report.markdown())


@task(cache_policy=NONE)
def emit_drift_event(
    report: DriftReport, version: str, window: str, retrain_in_flow: bool
) -> str | None:
    """The event the retrain deployment's trigger waits for; when this flow retrains itself the
    resource says so (``events.RETRAIN_IN_FLOW``) and the trigger does not match."""
    retrain = events.RETRAIN_IN_FLOW if retrain_in_flow else events.RETRAIN_PENDING
    event = emit_event(
        event=events.DRIFT_DETECTED,
        resource=events.model_resource(version, retrain),
        payload={
            "window": window,
            "drift_score": report.drift_score,
            "fired": [test.name for test in report.tests if test.fired],
            "reasons": report.reasons,
        },
    )
    get_run_logger().info(
        "emitted %s (%s)", events.DRIFT_DETECTED, event.id if event else "not sent"
    )
    return str(event.id) if event else None
