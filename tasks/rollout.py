"""Thin Prefect tasks over core/release/rollout.py and core/monitoring/rollout.py: rolling the
champion back, promoting a shadow on live evidence, and reviewing a canary. Every pointer move
happens under the promotion lock, by compare-and-set; every decision is kept in the log's
history and announced as an event (deployments/automations.yaml turns them into messages)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NONE

from core import events
from core.io.store import open_store
from core.monitoring.rollout import judge_canary, shadow_summary
from core.predlog import open_prediction_log, window_start
from core.records import PromotionRecord
from core.release import registry
from core.release.bundle import champion_history, read_champion, read_manifest
from core.release.manifest import ChallengerPointer, ChampionPointer, Manifest, PointerDecision
from core.release.rollout import (
    RollbackPlan,
    active_challenger,
    promote_shadow,
    roll_back,
    rollback_target,
    start_challenger,
    stop_challenger,
)
from core.settings import Settings
from tasks.locks import promotion_lock
from tasks.publishing import announce_decision
from tasks.retries import RETRY_TRANSIENT


def _now() -> str:
    return datetime.now(UTC).isoformat()


@task(cache_policy=NONE, timeout_seconds=120, **RETRY_TRANSIENT)
def shadow_rejected_challenger(settings: Settings, manifest: Manifest) -> str:
    """A retrained challenger that was not promoted goes into shadow, replacing any earlier
    shadow (a canary in progress is left alone), so live labels can still promote it."""
    store = open_store(settings)
    current = active_challenger(store)
    if current is not None and current.mode == "canary":
        return f"not shadowed: canary {current.version} is in progress"
    pointer = start_challenger(
        store,
        manifest.bundle_id,
        "shadow",
        shadow_share=settings.rollout.shadow_share,
        source="retrain",
    )
    get_run_logger().info("challenger %s scores live tickets in shadow", pointer.version)
    return f"in shadow: {pointer.version}"


@task(cache_policy=NONE, timeout_seconds=120, **RETRY_TRANSIENT)
def plan_rollback(settings: Settings, to: str | None) -> RollbackPlan:
    return rollback_target(champion_history(open_store(settings)), to)


@task(cache_policy=NONE, timeout_seconds=300, **RETRY_TRANSIENT)
def apply_rollback(settings: Settings, plan: RollbackPlan, reason: str) -> PromotionRecord:
    """Move the pointer as planned (idempotent: a retry finds it done), bring the MLflow alias
    along, keep and announce the decision."""
    store = open_store(settings)
    with promotion_lock(settings, f"rollback to {plan.target.bundle_id}"):
        pointer = roll_back(store, plan.current.bundle_id, plan.target.bundle_id, reason)
        registry.align_champion_alias(settings, store)
    record = PromotionRecord(
        decided_at=_now(),
        challenger=pointer.bundle_id,
        challenger_version=pointer.model_version,
        champion=plan.current.bundle_id,
        champion_version=plan.current.model_version,
        challenger_macro_f1=pointer.test_macro_f1,
        champion_macro_f1=plan.current.test_macro_f1,
        gain=None,
        gain_ci=None,
        promoted=True,
        reason=f"rollback: {reason}",
        kind="rollback",
        occasion=pointer.promoted_at or "",
    )
    announce_decision(settings, record, events.MODEL_ROLLED_BACK, pointer.family)
    get_run_logger().info(
        "rolled back from %s to %s", plan.current.model_version, pointer.model_version
    )
    return record


@task(cache_policy=NONE, timeout_seconds=600, **RETRY_TRANSIENT)
def promote_from_shadow(settings: Settings, window: str) -> dict[str, Any]:
    """Promote the shadow challenger when the labelled tickets both models scored (since it
    started, within ``window``) show the margin with an interval above zero; else say why not."""
    logger = get_run_logger()
    store = open_store(settings)
    challenger = active_challenger(store)
    champion, _ = read_champion(store)
    if challenger is None or challenger.mode != "shadow" or champion is None:
        return {"promoted": False, "reason": "no shadow challenger"}
    since = max(window_start(window), challenger.started_at)
    with open_prediction_log(settings) as log:
        rows = log.shadow_rows(since, None, settings.monitoring_max_rows)
    champion_version = champion.model_version or champion.bundle_id
    rows = rows[
        (rows["shadow_version"] == challenger.version) & (rows["model_version"] == champion_version)
    ]
    summary = shadow_summary(
        rows, settings.promotion_margin, settings.rollout.min_feedback, settings.seed
    )
    result = {"challenger_version": challenger.version, **summary.as_dict()}
    if not summary.promote:
        logger.info("shadow %s not promoted: %s", challenger.version, summary.reason)
        return {**result, "promoted": False}
    reason = f"live evidence: {summary.reason}"
    decision = PointerDecision(
        reason=reason,
        previous_bundle_id=champion.bundle_id,
        previous_model_version=champion.model_version,
        challenger_macro_f1=float(summary.shadow_macro_f1 or 0.0),
        champion_macro_f1=summary.champion_macro_f1,
        gain=summary.gain,
        gain_ci=summary.gain_ci,
        evaluation_rows=summary.labelled,
        kind="shadow",
    )
    with promotion_lock(settings, f"promoting the shadow {challenger.bundle_id}"):
        pointer = promote_shadow(store, challenger, champion.bundle_id, decision)
        registry.align_champion_alias(settings, store)
    run_id = read_manifest(store, pointer.bundle_id).mlflow.run_id
    if run_id:
        registry.log_promotion(settings, run_id, {"promoted": True, **decision.model_dump()})
    announce_decision(
        settings, _shadow_record(pointer, champion, decision), events.MODEL_PROMOTED, pointer.family
    )
    logger.info("shadow %s promoted: %s", challenger.version, reason)
    return {**result, "promoted": True}


def _shadow_record(
    pointer: ChampionPointer, champion: ChampionPointer, decision: PointerDecision
) -> PromotionRecord:
    return PromotionRecord(
        decided_at=_now(),
        challenger=pointer.bundle_id,
        challenger_version=pointer.model_version,
        champion=champion.bundle_id,
        champion_version=champion.model_version,
        challenger_macro_f1=decision.challenger_macro_f1,
        champion_macro_f1=decision.champion_macro_f1,
        gain=decision.gain,
        gain_ci=decision.gain_ci,
        promoted=True,
        reason=decision.reason,
        kind="shadow",
    )


@task(cache_policy=NONE, timeout_seconds=600, **RETRY_TRANSIENT)
def review_canary(settings: Settings) -> dict[str, Any] | None:
    """Judge the canary on the log's rows since it started and stop it (compare-and-set, only
    that canary) when it does worse than the champion beyond a margin; ``announce_canary``
    keeps and announces the decision, as a task of its own, so a retry of the announcement
    never depends on the canary still being active. None without a canary."""
    store = open_store(settings)
    challenger = active_challenger(store)
    champion, _ = read_champion(store)
    if challenger is None or challenger.mode != "canary" or champion is None:
        return None
    with open_prediction_log(settings) as log:
        rows = log.sample(challenger.started_at, settings.monitoring_max_rows, settings.seed)
    verdict = judge_canary(rows, challenger.version, settings.rollout, settings.seed)
    result = {"canary_version": challenger.version, **verdict.as_dict(), "rolled_back": False}
    if not verdict.rollback:
        return result
    reason = "; ".join(verdict.reasons)
    stopped = stop_challenger(store, f"rolled back: {reason}", expected_bundle=challenger.bundle_id)
    if stopped is None:
        return result  # stopped or replaced meanwhile: that decision stands
    get_run_logger().warning("canary %s rolled back: %s", challenger.version, reason)
    return {
        **result,
        "rolled_back": True,
        "canary": stopped.model_dump(mode="json"),
        "champion": champion.model_dump(mode="json"),
    }


@task(cache_policy=NONE, timeout_seconds=300, **RETRY_TRANSIENT)
def announce_canary(settings: Settings, review: dict[str, Any]) -> None:
    """The rollback ``review_canary`` decided, in the log's history and as the event
    ``tickets.canary.rolled_back``, both keyed by the canary and when it started (a retry
    writes the same row and the same event)."""
    canary = ChallengerPointer.model_validate(review["canary"])
    champion = ChampionPointer.model_validate(review["champion"])
    record = PromotionRecord(
        decided_at=canary.stopped_at or _now(),
        challenger=canary.bundle_id,
        challenger_version=canary.model_version,
        champion=champion.bundle_id,
        champion_version=champion.model_version,
        challenger_macro_f1=None,
        champion_macro_f1=None,
        gain=None,
        gain_ci=None,
        promoted=False,
        reason=f"canary rolled back: {'; '.join(review['reasons'])}",
        kind="canary-rollback",
        occasion=canary.started_at,
    )
    extra = {k: review[k] for k in ("canary_rows", "reasons", "checks")}
    announce_decision(settings, record, events.CANARY_ROLLED_BACK, canary.family, extra)
