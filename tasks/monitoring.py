"""Thin Prefect tasks for the monitor: read the window, report, decide whether to retrain,
publish, emit the event, record how a retrain ended."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE
from prefect.events import emit_event
from prefect.runtime import flow_run

from core import events
from core.io.store import open_store
from core.monitoring.check import model_window, report_for_model
from core.monitoring.drift import DriftReport
from core.monitoring.retraining import decide_retrain
from core.monitoring.tracking import log_drift_report
from core.predlog import open_prediction_log, window_start
from core.records import RetrainDecision
from core.release.bundle import read_champion, read_manifest
from core.release.manifest import Manifest
from core.settings import Settings
from tasks.retries import RETRY_TRANSIENT

#: Namespace of event ids derived from a flow run, so a retried emit is the same event.


def _run_key() -> str:
    return str(flow_run.id or uuid.uuid4())


@task(cache_policy=NONE, timeout_seconds=900, **RETRY_TRANSIENT)
def check_drift(settings: Settings, window: str) -> tuple[DriftReport, Manifest] | None:
    """The champion's drift report over ``window`` and its manifest; None without a champion."""
    store = open_store(settings)
    pointer, _ = read_champion(store)
    if pointer is None:
        get_run_logger().warning("no champion model yet: run the train flow first")
        return None
    manifest = read_manifest(store, pointer.bundle_id, pointer.manifest_file_sha256)
    with open_prediction_log(settings) as log:
        since = window_start(window, longest=settings.monitoring_max_window)
        frame = model_window(log, since, manifest, settings)
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


@task(cache_policy=NONE, timeout_seconds=300, **RETRY_TRANSIENT)
def decide_retraining(settings: Settings, report: DriftReport, version: str) -> RetrainDecision:
    """One retrain per problem: decide from the earlier decisions about this champion and
    record the decision durably (in the log's database)."""
    fired = [test.name for test in report.tests if test.fired]
    now = datetime.now(UTC)
    cooldown = settings.retraining.cooldown
    backoff = settings.retraining.max_backoff
    with open_prediction_log(settings) as log:
        decision = log.record_decision(
            lambda history: decide_retrain(history, version, fired, now, cooldown, backoff),
            model_version=version,
        )
    get_run_logger().info("retrain %s: %s", decision.action, decision.reason)
    return decision


@task(cache_policy=NONE, timeout_seconds=300, **RETRY_TRANSIENT)
def forget_retrain_decision(settings: Settings, decision_id: str) -> None:
    with open_prediction_log(settings) as log:
        log.forget_decision(decision_id)


@task(cache_policy=NONE, timeout_seconds=300, **RETRY_TRANSIENT)
def record_retrain_outcome(settings: Settings, decision_id: str, outcome: str) -> None:
    with open_prediction_log(settings) as log:
        log.record_outcome(decision_id, outcome)


def report_markdown(report: DriftReport, decision: RetrainDecision | None) -> str:
    text = report.markdown()
    if decision is not None:
        text += f"\n\n**Retrain: {decision.action}.** {decision.reason}\n"
    return text


@task(cache_policy=NONE, timeout_seconds=300, **RETRY_TRANSIENT)
def publish_report(
    settings: Settings, report: DriftReport, version: str, decision: RetrainDecision | None
) -> str:
    """Markdown artifact in Prefect and a run in MLflow (one per flow run, also on a retry);
    returns the MLflow run id."""
    markdown = report_markdown(report, decision)
    create_markdown_artifact(markdown, key="drift-report", description="Drift report")
    body = {
        **report.as_dict(),
        "model_version": version,
        "retrain": decision.as_dict() if decision else None,
    }
    tags = {"retrain_action": decision.action} if decision else {}
    return log_drift_report(settings, body, markdown, _run_key(), tags)


@task(cache_policy=NONE, timeout_seconds=300, **RETRY_TRANSIENT)
def record_report(
    settings: Settings,
    report: DriftReport,
    version: str,
    window: str,
    decision: RetrainDecision | None,
) -> str:
    """The report in the log's database, for the dashboard and Grafana to show over time."""
    with open_prediction_log(settings) as log:
        return log.record_drift_report(
            datetime.now(UTC).isoformat(),
            version,
            window_start(window, longest=settings.monitoring_max_window),
            {**report.as_dict(), "window": window},
            decision.action if decision else None,
        )


@task(cache_policy=NONE, timeout_seconds=120, **RETRY_TRANSIENT)
def emit_drift_event(
    report: DriftReport,
    version: str,
    window: str,
    decision: RetrainDecision,
    retrain_in_flow: bool,
) -> str | None:
    """The event the retrain deployment's trigger waits for, when the decision is to retrain
    and this run does not retrain itself (``tickets.retrain: pending``); otherwise the event
    still tells operators about the drift, with a label the trigger does not match. Its id comes
    from the flow run, so a retried emit is the same event."""
    if not decision.requested:
        label = events.RETRAIN_SUPPRESSED
    else:
        label = events.RETRAIN_IN_FLOW if retrain_in_flow else events.RETRAIN_PENDING
    event = emit_event(
        event=events.DRIFT_DETECTED,
        resource=events.model_resource(version, label),
        payload={
            "window": window,
            "drift_score": report.drift_score,
            "fired": [test.name for test in report.tests if test.fired],
            "reasons": report.reasons,
            "decision_id": decision.decision_id,
            "retrain": decision.action,
        },
        id=events.flow_event_id(f"{_run_key()}/drift"),
    )
    get_run_logger().info(
        "emitted %s (%s, %s)",
        events.DRIFT_DETECTED,
        label,
        event.id if event else "not sent",
    )
    return str(event.id) if event else None
