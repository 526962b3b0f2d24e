"""Monitoring endpoints over the prediction log: live aggregates, saved daily aggregates and
the served model's drift report. Bounded whatever the log holds: windows are capped
(``monitoring_max_window``), aggregates are computed by the database, a drift report reads a
seeded sample of at most ``monitoring_max_rows`` rows (the same sample the monitor flow reads),
and all of it runs off the event loop on the log's read connection, never holding its write lock.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import anyio
from litestar import get, post
from litestar.params import Parameter

from core.metrics import window_metrics
from core.monitoring.check import model_window, report_for_model
from core.monitoring.daily import save_day
from core.monitoring.rollout import shadow_summary
from core.predlog import PredictionLog, window_seconds, window_start
from core.release.manifest import Manifest
from core.settings import Settings
from serving.errors import bad_request
from serving.lane import lane_log
from serving.security import admin_guard
from serving.state import ServiceState


def since_of(window: str, settings: Settings) -> str:
    return window_start(window, longest=settings.monitoring_max_window)


def window_seconds_of(window: str, settings: Settings) -> int:
    """The window as seconds (the lane's key); a bad window is refused here, as a 400."""
    since_of(window, settings)
    return window_seconds(window)


def _served_labels(state: ServiceState) -> list[str] | None:
    served = state.holder.current
    return [str(label) for label in served.classes] if served is not None else None


@get("/monitoring/metrics", summary="Aggregates of the prediction log over a window")
async def metrics(
    state: ServiceState,
    window: str = Parameter(
        default="24h",
        description="Duration back from now: 30m, 24h, 7d (at most monitoring_max_window, 31d).",
    ),
) -> dict[str, Any]:
    seconds = window_seconds_of(window, state.settings)
    labels = _served_labels(state)

    def compute() -> dict[str, Any]:
        since = since_of(window, state.settings)
        aggregates = state.log.aggregates(since)
        return {"window": window, "since": since, **window_metrics(aggregates, labels)}

    # Fresh on every call (a client that just sent feedback sees it); concurrent identical calls
    # still share one query.
    key = ("metrics", seconds, tuple(labels) if labels is not None else None)
    return await state.monitoring_lane.run(key, compute, reuse=False)


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
    saved_at, aggregate = await anyio.to_thread.run_sync(
        save_day, state.log, chosen, _served_labels(state), limiter=state.monitoring_lane.limiter
    )
    return {"day": chosen.isoformat(), "saved_at": saved_at, "metrics": aggregate}


@get("/monitoring/saved-metrics", summary="Daily aggregates saved so far, by day")
async def saved_metrics(state: ServiceState) -> dict[str, Any]:
    return await state.monitoring_lane.run(("saved-metrics",), state.log.daily, reuse=False)


@get("/monitoring/drift", summary="Drift report of the served model over a window")
async def drift(
    state: ServiceState,
    window: str | None = Parameter(
        default=None, description="Duration back from now (default: the monitor's window)."
    ),
) -> dict[str, Any]:
    settings = state.settings
    chosen = window or settings.monitor_window
    seconds = window_seconds_of(chosen, settings)
    served = state.served_model()
    lane = state.monitoring_lane
    # Reports of one window and model are shared: "24h" and "1d" are the same report.
    key = ("drift", seconds, served.manifest.bundle_id)
    log = None if lane.processes else state.log
    return await lane.run(key, drift_report, log, settings, served.manifest, chosen, isolate=True)


def drift_report(
    log: PredictionLog | None, settings: Settings, manifest: Manifest, window: str
) -> dict[str, Any]:
    """The served model's drift report over ``window``: in the monitoring lane's process (which
    opens the log once, ``log`` None) or on one of its threads (the service's log)."""
    since = since_of(window, settings)
    frame = model_window(log or lane_log(settings), since, manifest, settings)
    report = report_for_model(frame, manifest, settings)
    return {"window": window, "since": since, "model_version": manifest.model_version} | (
        report.as_dict()
    )


@get("/monitoring/shadow", summary="The shadow challenger against the champion over a window")
async def shadow(
    state: ServiceState,
    window: str = Parameter(default="24h", description="Duration back from now: 30m, 24h, 7d."),
) -> dict[str, Any]:
    """On the tickets both models scored (at most ``monitoring_max_rows``, the newest):
    agreement, the label pairs they disagree on most with example request ids, and on
    feedback-labelled ones both macro-F1 and the paired-bootstrap interval of the gain, by the
    rule promotion uses."""
    settings = state.settings
    seconds = window_seconds_of(window, settings)
    rollout = state.holder.rollout

    def compute() -> dict[str, Any]:
        since = since_of(window, settings)
        rows = state.log.shadow_rows(since, None, settings.monitoring_max_rows)
        summary = shadow_summary(
            rows, settings.promotion_margin, settings.rollout.min_feedback, settings.seed
        )
        challenger = rollout.model_dump(mode="json") if rollout is not None else None
        return {"window": window, "since": since, "challenger": challenger} | summary.as_dict()

    return await state.monitoring_lane.run(("shadow", seconds), compute, reuse=False)
