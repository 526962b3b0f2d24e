"""``GET /labeling/queue``: the logged, unlabelled tickets whose labels would teach the model
most (core/monitoring/labeling.py), for whoever sends labels. Computed in the monitoring lane's
process, like the drift report, so the request path never waits for it."""

from __future__ import annotations

from typing import Any

from litestar import get
from litestar.params import Parameter

from core.monitoring.labeling import queue_from_log
from core.predlog import PredictionLog
from core.release.manifest import Manifest
from core.settings import Settings
from serving.lane import lane_log
from serving.monitoring import since_of, window_seconds_of
from serving.security import label_guard
from serving.state import ServiceState

MAX_QUEUE = 1000


@get(
    "/labeling/queue",
    guards=[label_guard],
    summary="Which tickets to label next (label key); send labels back to /feedback",
)
async def labeling_queue(
    state: ServiceState,
    n: int = Parameter(default=50, ge=1, le=MAX_QUEUE, description="How many tickets."),
    window: str = Parameter(default="7d", description="How far back to look: 24h, 7d, 30d."),
) -> dict[str, Any]:
    """Uncertain and novel tickets first, per-class quotas, no near-duplicates; each entry
    says why it was chosen and carries the request id ``POST /feedback`` takes."""
    settings = state.settings
    seconds = window_seconds_of(window, settings)
    served = state.served_model()
    lane = state.monitoring_lane
    key = ("labeling", seconds, n, served.manifest.bundle_id)
    log = None if lane.processes else state.log
    return await lane.run(
        key, queue_report, log, settings, served.manifest, window, n, isolate=True, reuse=False
    )


def queue_report(
    log: PredictionLog | None, settings: Settings, manifest: Manifest, window: str, n: int
) -> dict[str, Any]:
    since = since_of(window, settings)
    entries, pool = queue_from_log(log or lane_log(settings), manifest, since, n)
    return {
        "window": window,
        "since": since,
        "model_version": manifest.model_version,
        "labels": list(manifest.labels),
        "unlabelled_considered": pool,
        "tickets": [entry.as_dict() for entry in entries],
    }
