"""When drift asks for a retrain: one retrain per problem.

A drift that retraining cannot fix (contradictory labels, a change no model can learn) fires again
on every check; without memory the loop would retrain every hour, forever. So every decision is
recorded in the log's database, and a drift-triggered retrain for a champion happens at most once
per cooldown for the same set of fired tests. When retrains for that same drift keep failing or
not promoting, the wait doubles (up to a cap). A different set of fired tests is a different
problem and may retrain at once; a new champion starts with a clean slate.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from core.records import RetrainAction, RetrainDecision, RetrainOutcome, new_decision_id


def decide_retrain(
    history: Sequence[RetrainDecision],
    model_version: str,
    fired: Sequence[str],
    now: datetime,
    cooldown: timedelta,
    max_backoff: timedelta,
    source: str = "monitor",
) -> RetrainDecision:
    """Whether drift of ``model_version`` (the tests in ``fired``) should start a retrain now,
    given earlier decisions (any order)."""
    fired_set = tuple(sorted(set(fired)))

    def decision(action: str, reason: str, next_at: datetime | None = None) -> RetrainDecision:
        return RetrainDecision(
            new_decision_id(),
            now.isoformat(),
            model_version,
            fired_set,
            action,
            reason,
            source,
            next_at.isoformat() if next_at else None,
        )

    if not fired_set:
        return decision(RetrainAction.NOT_NEEDED, "no drift test fired")
    earlier = sorted(
        (h for h in history if h.model_version == model_version and h.requested),
        key=lambda h: h.decided_at,
    )
    if not earlier:
        return decision(RetrainAction.REQUESTED, f"first retrain for model {model_version}'s drift")
    last = earlier[-1]
    if set(last.fired) != set(fired_set):
        return decision(
            RetrainAction.REQUESTED,
            f"the fired tests changed ({', '.join(last.fired)} -> {', '.join(fired_set)})",
        )
    failures = 0
    for record in reversed(earlier):
        if set(record.fired) != set(fired_set) or record.outcome not in (
            RetrainOutcome.NOT_PROMOTED,
            RetrainOutcome.FAILED,
        ):
            break
        failures += 1
    wait = min(cooldown * 2 ** max(failures - 1, 0), max(cooldown, max_backoff))
    since = now - datetime.fromisoformat(last.decided_at)
    cooled = datetime.fromisoformat(last.decided_at) + cooldown
    allowed = datetime.fromisoformat(last.decided_at) + wait
    if since < cooldown:
        return decision(
            RetrainAction.SUPPRESSED_COOLDOWN,
            f"a retrain for the same drift was requested at {last.decided_at}; the cooldown "
            f"({cooldown}) lasts until {cooled.isoformat()}",
            cooled,
        )
    if since < wait:
        return decision(
            RetrainAction.SUPPRESSED_SAME_DRIFT,
            f"the last {failures} retrain(s) for the same drift did not promote; backing off "
            f"({wait}) until {allowed.isoformat()}",
            allowed,
        )
    return decision(
        RetrainAction.REQUESTED, f"the same drift persists after {since} (wait was {wait})"
    )


def duplicate_request(
    history: Sequence[RetrainDecision], reason: str, now: datetime, window: timedelta
) -> RetrainDecision | None:
    """An earlier requested retrain with the same reason within ``window``, if any: a sender
    that asks twice in a few minutes for the same thing gets one run."""
    wanted = " ".join(reason.casefold().split())
    for record in history:
        if (
            record.requested
            and record.source == "webhook"
            and " ".join(record.reason.casefold().split()) == wanted
            and now - datetime.fromisoformat(record.decided_at) < window
        ):
            return record
    return None


def decide_request(
    history: Sequence[RetrainDecision], reason: str, version: str, now: datetime, window: timedelta
) -> RetrainDecision:
    """A signed retrain request is honoured, but the same reason twice within ``window`` starts
    one run: the second is recorded as a suppressed duplicate."""
    earlier = duplicate_request(history, reason, now, window)
    action = RetrainAction.SUPPRESSED_DUPLICATE if earlier else RetrainAction.REQUESTED
    why = f"same as request {earlier.decision_id} at {earlier.decided_at}" if earlier else reason
    return RetrainDecision(new_decision_id(), now.isoformat(), version, (), action, why, "webhook")
