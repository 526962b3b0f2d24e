"""The ``monitor`` flow (drift report, artifact, event, optional retrain branch) and the
``retrain`` flow that event triggers and webhooks request."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from core.settings import Settings, get_settings
from flows.train import train
from tasks.monitoring import check_drift, emit_drift_event, publish_report


@flow(name="monitor", log_prints=True)
def monitor(
    window: str | None = None, retrain: bool = False, settings: Settings | None = None
) -> dict[str, Any]:
    """Check the champion's recent predictions for drift; when ``retrain`` is true and drift
    fired, retrain on the base data plus feedback and promote only a better model."""
    settings = settings or get_settings()
    chosen = window or settings.monitor_window
    checked = check_drift(settings, chosen)
    if checked is None:
        return {"model_version": None, "drift_detected": False, "no_champion": True}
    report, manifest = checked
    version = manifest.model_version
    mlflow_run_id = publish_report(settings, report, version)
    event_id = emit_drift_event(report, version, chosen, retrain) if report.drift_detected else None
    result: dict[str, Any] = {
        "model_version": version,
        "drift_detected": report.drift_detected,
        "insufficient_data": report.insufficient_data,
        "drift_score": report.drift_score,
        "fired": [test.name for test in report.tests if test.fired],
        "event_id": event_id,
        "mlflow_run_id": mlflow_run_id,
        "retrained": False,
    }
    if retrain and report.drift_detected:
        summary = train(settings=settings, include_feedback=True)
        result.update(retrained=True, promoted=summary.promoted, training=summary)
    return result


@flow(name="retrain", log_prints=True)
def retrain(reason: str = "requested", settings: Settings | None = None) -> dict[str, Any]:
    """Train on the base data plus feedback-labelled production tickets; promote if better."""
    get_run_logger().info("retraining: %s", reason)
    summary = train(settings=settings or get_settings(), include_feedback=True)
    return {"reason": reason, **summary.as_json()}
