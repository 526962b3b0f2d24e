"""Monitoring endpoints over the prediction log: live aggregates and saved daily aggregates."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import anyio
from litestar import get, post
from litestar.exceptions import HTTPException
from litestar.params import Parameter

from core.drift import NoReferenceProfile, report_for_model
from core.errors import InputError
from core.evaluation import production_metrics
from core.predictions import window_start
from serving.errors import bad_request
from serving.security import admin_guard
from serving.state import ServiceState


@get("/monitoring/metrics", summary="Aggregates of the prediction log over a window")
async def metrics(
    state: ServiceState,
    window: str = Parameter(
        default="24h", description="Duration back from now: 30m, 24h, 7d (at most 366d)."
    ),
) -> dict[str, Any]:
    try:
        since = window_start(window)
    except InputError as exc:
        raise bad_request(f"window: {exc}") from exc
    log = state.log
    frame = await anyio.to_thread.run_sync(lambda: log.window(since=since))
    return {"window": window, "since": since, **production_metrics(frame)}


def _parse_day(day: str | None) -> date:
    if day is None:
        return datetime.now(UTC).date()
    try:
        return date.fromisoformat(day)
    except ValueError as exc:
        raise bad_request(f"day: {day!r} is not a date like 2026-11-26") from exc


@post(
    "/monitoring/save-metrics",
    status_code=200,
    guards=[admin_guard],
    summary="Persist one UTC day's aggregate (today by default); admin",
)
async def save_metrics(
    state: ServiceState,
    day: str | None = Parameter(default=None, description="UTC day, YYYY-MM-DD; default today."),
) -> dict[str, Any]:
    chosen = _parse_day(day)
    start = datetime(chosen.year, chosen.month, chosen.day, tzinfo=UTC)
    since, until = start.isoformat(), (start + timedelta(days=1)).isoformat()
    log = state.log
    frame = await anyio.to_thread.run_sync(lambda: log.window(since=since, until=until))
    aggregate = production_metrics(frame)
    saved_at = await anyio.to_thread.run_sync(log.save_daily, chosen.isoformat(), aggregate)
    return {"day": chosen.isoformat(), "saved_at": saved_at, "metrics": aggregate}


@get("/monitoring/saved-metrics", summary="Daily aggregates saved so far, by day")
async def saved_metrics(state: ServiceState) -> dict[str, Any]:
    log = state.log
    return await anyio.to_thread.run_sync(log.daily)


@get("/monitoring/drift", summary="Drift report of the served model over a window")
async def drift(
    state: ServiceState,
    window: str | None = Parameter(
        default=None, description="Duration back from now (default: the monitor's window)."
    ),
) -> dict[str, Any]:
    settings = state.settings
    chosen = window or settings.monitor_window
    try:
        since = window_start(chosen)
    except InputError as exc:
        raise bad_request(f"window: {exc}") from exc
    served = state.served_model()
    log = state.log
    frame = await anyio.to_thread.run_sync(lambda: log.window(since=since))
    try:
        report = await anyio.to_thread.run_sync(report_for_model, frame, served.manifest, settings)
    except NoReferenceProfile as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from exc
    return {"window": chosen, "since": since, "model_version": served.version, **report.as_dict()}
