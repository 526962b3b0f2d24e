"""One retrain per problem: cooldown, a changed problem, back-off after retrains that did not
help, a new champion, duplicate requests; decisions survive in the log's database."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from core.monitoring.retraining import decide_request, decide_retrain, duplicate_request
from core.predlog import PredictionLog
from core.records import RetrainAction, RetrainDecision, RetrainOutcome

T0 = datetime(2026, 11, 30, tzinfo=UTC)
DAY = timedelta(days=1)
FIRED = ["concept_macro_f1_drop", "low_confidence_share"]


def decide(history: list[RetrainDecision], hours: float, fired: list[str] = FIRED, version="3"):
    return decide_retrain(history, version, fired, T0 + timedelta(hours=hours), DAY, 7 * DAY)


def test_persistent_drift_retrains_once_per_cooldown() -> None:
    first = decide([], 0)
    assert first.action == RetrainAction.REQUESTED
    assert decide([first], 1).action == RetrainAction.SUPPRESSED_COOLDOWN
    assert decide([first], 23).action == RetrainAction.SUPPRESSED_COOLDOWN
    assert decide([first], 25).action == RetrainAction.REQUESTED, "pending outcome: one cooldown"


def test_a_different_set_of_fired_tests_is_a_new_problem() -> None:
    first = decide([], 0)
    other = decide([first], 1, fired=["text_length_ks"])
    assert other.action == RetrainAction.REQUESTED and "fired tests changed" in other.reason
    same_but_shuffled = decide([first], 2, fired=list(reversed(FIRED)))
    assert same_but_shuffled.action == RetrainAction.SUPPRESSED_COOLDOWN


def test_retrains_that_do_not_help_back_off_doubling_up_to_the_cap() -> None:
    history = [replace(decide([], 0), outcome=RetrainOutcome.NOT_PROMOTED)]
    assert decide(history, 25).action == RetrainAction.REQUESTED, "after one miss: one cooldown"
    history.append(replace(decide(history, 25), outcome=RetrainOutcome.FAILED))
    held = decide(history, 25 + 30)
    assert held.action == RetrainAction.SUPPRESSED_SAME_DRIFT and "backing off" in held.reason
    assert decide(history, 25 + 49).action == RetrainAction.REQUESTED, "two misses: two days"
    for k in range(8):
        history.append(replace(decide(history, 100 + 200 * k), outcome=RetrainOutcome.NOT_PROMOTED))
    last = max(h.decided_at for h in history)
    hours_after_last = (datetime.fromisoformat(last) - T0).total_seconds() / 3600
    assert decide(history, hours_after_last + 6 * 24).action == RetrainAction.SUPPRESSED_SAME_DRIFT
    assert decide(history, hours_after_last + 7 * 24 + 1).action == RetrainAction.REQUESTED, (
        "capped at 7d"
    )


def test_a_new_champion_starts_with_a_clean_slate_and_quiet_traffic_needs_nothing() -> None:
    first = decide([], 0)
    assert decide([first], 1, version="4").action == RetrainAction.REQUESTED
    assert decide([first], 1, fired=[]).action == RetrainAction.NOT_NEEDED


def test_the_same_request_twice_within_the_window_is_one() -> None:
    asked = RetrainDecision(
        "w1", T0.isoformat(), "3", (), RetrainAction.REQUESTED, "New product", "webhook"
    )
    assert duplicate_request([asked], "  new   PRODUCT ", T0 + timedelta(minutes=5), DAY)
    assert not duplicate_request([asked], "other reason", T0, DAY)
    assert not duplicate_request([asked], "New product", T0 + 2 * DAY, DAY)


def test_decisions_and_outcomes_are_stored_and_read_back(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path / "log.db")
    first = log.record_decision(lambda history: decide(history, 0), model_version="3")
    second = log.record_decision(lambda history: decide(history, 2), model_version="3")
    assert (first.action, second.action) == (
        RetrainAction.REQUESTED,
        RetrainAction.SUPPRESSED_COOLDOWN,
    )
    log.record_outcome(first.decision_id, RetrainOutcome.NOT_PROMOTED)
    stored = log.decisions()
    assert [d.action for d in stored] == [
        RetrainAction.REQUESTED,
        RetrainAction.SUPPRESSED_COOLDOWN,
    ]
    assert stored[0].outcome == RetrainOutcome.NOT_PROMOTED and stored[0].fired == tuple(
        sorted(FIRED)
    )
    log.forget_decision(second.decision_id)
    assert len(log.decisions()) == 1


def test_a_repeated_request_within_the_window_is_recorded_as_a_duplicate() -> None:
    first = decide_request([], "New product", "3", T0, DAY)
    assert first.action == RetrainAction.REQUESTED and first.source == "webhook"
    again = decide_request([first], " new  product", "3", T0 + timedelta(minutes=5), DAY)
    assert again.action == RetrainAction.SUPPRESSED_DUPLICATE
    assert first.decision_id in again.reason
    later = decide_request([first], "New product", "3", T0 + DAY + timedelta(seconds=1), DAY)
    assert later.action == RetrainAction.REQUESTED
