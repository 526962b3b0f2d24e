"""Flows that move a model on live traffic: ``rollback`` (the champion goes back to an earlier
one) and ``promote-shadow`` (the shadow challenger becomes the champion on live labelled
evidence). The monitor flow reviews the canary and, in the six-hourly pipeline, the shadow."""

from __future__ import annotations

from typing import Any

from prefect import flow

from core.settings import Settings
from tasks.rollout import apply_rollback, plan_rollback, promote_from_shadow
from tasks.store_block import resolve_settings


@flow(name="rollback", log_prints=True)
def rollback(
    to: str | None = None, reason: str = "operator", settings: Settings | None = None
) -> dict[str, Any]:
    """Roll the champion back to ``to`` (a bundle id or model version it had), else to the
    latest earlier champion that no rollback moved away from."""
    settings = resolve_settings(settings)
    plan = plan_rollback(settings, to)
    return apply_rollback(settings, plan, reason).as_dict()


@flow(name="promote-shadow", log_prints=True)
def promote_shadow(window: str = "7d", settings: Settings | None = None) -> dict[str, Any]:
    """Promote the shadow challenger if live labelled evidence shows the margin, with the
    interval of the gain above zero; the result says why not otherwise."""
    return promote_from_shadow(resolve_settings(settings), window)
