"""The ``monitor`` flow (drift report, retrain decision, artifact, event, optional retrain branch)
and the ``retrain`` flow that the event triggers and webhooks request."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prefect import flow, get_run_logger

from core.records import RetrainDecision, RetrainOutcome
from core.settings import Settings
from core.training.refit import TrainingSummary
from flows.train import train
from tasks.monitoring import (
    check_drift,
    decide_retraining,
    emit_drift_event,
    forget_retrain_decision,
    publish_report,
    record_report,
    record_retrain_outcome,
)
from tasks.rollout import announce_canary, promote_from_shadow, review_canary
from tasks.store_block import resolve_settings


def train_and_record(
    settings: Settings, decision_id: str | None, reason: str | None = None
) -> TrainingSummary:
    """Retrain on the base data plus feedback and record how it ended against the decision that
    asked for it, so the next decision knows whether this drift was fixed."""
    if reason:
        get_run_logger().info("retraining: %s", reason)
    try:
        summary = train(settings=settings, include_feedback=True)
    except BaseException:
        if decision_id:
            record_retrain_outcome(settings, decision_id, RetrainOutcome.FAILED)
        raise
    if decision_id:
        outcome = RetrainOutcome.PROMOTED if summary.promoted else RetrainOutcome.NOT_PROMOTED
        record_retrain_outcome(settings, decision_id, outcome)
    return summary


@contextmanager
def undone_if_failed(settings: Settings, decision: RetrainDecision | None) -> Iterator[None]:
    """Forget a "requested" decision when the block fails: no retrain will follow it, and the
    next monitor run must be free to request one."""
    try:
        yield
    except BaseException:
        if decision is not None and decision.requested:
            get_run_logger().warning(
                "retrain decision %s undone: the run failed before the retrain was requested",
                decision.decision_id,
            )
            forget_retrain_decision(settings, decision.decision_id)
        raise


@flow(name="monitor", log_prints=True)
def monitor(
    window: str | None = None, retrain: bool = False, settings: Settings | None = None
) -> dict[str, Any]:
    """Check the champion's recent predictions for drift. When drift fired, decide whether it
    calls for a retrain (one retrain per problem: cooldown and back-off); with ``retrain`` true
    the retrain runs in this flow, else the event asks the retrain deployment for it."""
    settings = resolve_settings(settings)
    chosen = window or settings.monitor_window
    checked = check_drift(settings, chosen)
    if checked is None:
        return {"model_version": None, "drift_detected": False, "no_champion": True}
    report, manifest = checked
    version = manifest.model_version
    decision: RetrainDecision | None = None
    event_id = None
    if report.drift_detected:
        decision = decide_retraining(settings, report, version)
        # The event goes out right after the decision: the retrain it asks for must not hang on
        # the MLflow report or the history row, which follow.
        with undone_if_failed(settings, decision):
            event_id = emit_drift_event(report, version, chosen, decision, retrain)
    # With the retrain in this flow, a failure before it starts would leave a "requested"
    # decision that no retrain follows (and 24 h of "suppressed: cooldown"): it is undone.
    with undone_if_failed(settings, decision if retrain else None):
        mlflow_run_id = publish_report(settings, report, version, decision)
        record_report(settings, report, version, chosen, decision)
    result: dict[str, Any] = {
        "model_version": version,
        "drift_detected": report.drift_detected,
        "insufficient_data": report.insufficient_data,
        "drift_score": report.drift_score,
        "fired": [test.name for test in report.tests if test.fired],
        "event_id": event_id,
        "mlflow_run_id": mlflow_run_id,
        "retrain_decision": decision.action if decision else None,
        "retrain_reason": decision.reason if decision else None,
        "retrained": False,
    }
    if retrain and decision is not None and decision.requested:
        summary = train_and_record(settings, decision.decision_id)
        result.update(retrained=True, promoted=summary.promoted, training=summary)
    canary = review_canary(settings)
    if canary is not None and canary["rolled_back"]:
        announce_canary(settings, canary)
    result["canary"] = canary
    if retrain and not result.get("promoted"):
        # The six-hourly pipeline: a shadow that live labels show better is promoted.
        result["shadow"] = promote_from_shadow(settings, settings.rollout.evidence_window)
    return result


@flow(name="retrain", log_prints=True)
def retrain(
    reason: str = "requested", decision_id: str = "", settings: Settings | None = None
) -> dict[str, Any]:
    """Train on the base data plus feedback-labelled production tickets; promote if better.
    ``decision_id`` (from the triggering event) is the decision whose outcome this records."""
    summary = train_and_record(resolve_settings(settings), decision_id or None, reason)
    return {"reason": reason, **summary.as_json()}
