"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import os
from typing import Any

import anyio
from litestar import Request, Response, get
from litestar.status_codes import HTTP_503_SERVICE_UNAVAILABLE

from core.errors import LogUnavailableError
from serving import metrics
from serving.errors import RETRY_AFTER_S
from serving.security import is_admin
from serving.state import ServiceState


async def _health(state: ServiceState, admin: bool) -> dict[str, Any]:
    """What anyone may see: status, versions and kinds of errors; with the admin key also the
    error texts (they can hold store URIs and paths)."""
    served = state.holder.current
    watch = state.holder.status
    log_error = await anyio.to_thread.run_sync(state.log_probe.error_kind)
    body: dict[str, Any] = {
        "status": "ok",
        "worker_pid": os.getpid(),
        "model": served.describe() if served else None,
        "model_watch": watch.public(),
        "challenger": _challenger(state, admin),
        "prediction_log": {"writable": log_error is None, "error_kind": log_error},
    }
    if admin:
        body["model_watch"] |= {
            "last_error": watch.last_error,
            "failed_bundle_id": watch.failed_bundle_id,
            "store": state.settings.artifact_store_url(),
        }
    return body


def _challenger(state: ServiceState, admin: bool) -> dict[str, Any] | None:
    """The challenger the worker serves beside the champion, if any, and whether its last load
    failed; how it is rolled out (shadow or canary, and its share) only to admins: knowing that
    a canary takes some share of traffic is where steering it starts."""
    holder = state.holder
    served, rollout, status = holder.challenger, holder.rollout, holder.challenger_status
    if served is None and status.consecutive_failures == 0:
        return None
    body: dict[str, Any] = {
        "model": served.describe() if served else None,
        "watch": status.public(),
    }
    if rollout is not None and admin:
        body |= {
            "mode": rollout.mode,
            "percent": rollout.percent,
            "shadow_share": rollout.shadow_share,
        }
    return body


@get(
    "/livez",
    summary="Liveness only: answers while the worker's event loop runs",
    sync_to_thread=False,
)
def livez() -> dict[str, Any]:
    """What a liveness probe calls. It touches no dependency and no thread pool, so an outage of
    the prediction log or the store (which /health and /ready report, waiting up to the log's
    timeout) never makes a supervisor kill healthy workers."""
    return {"status": "ok", "worker_pid": os.getpid()}


@get(["/", "/health"], summary="Liveness, the served model and the health of its watch")
async def health(state: ServiceState, request: Request[Any, Any, Any]) -> dict[str, Any]:
    return await _health(state, is_admin(request.headers, state.settings))


@get("/ready", summary="200 when a verified model is loaded and the log takes writes, else 503")
async def ready(state: ServiceState, request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    body = await _health(state, is_admin(request.headers, state.settings))
    if body["model"] and body["prediction_log"]["writable"]:
        return Response(body, status_code=200)
    return Response(
        body, status_code=HTTP_503_SERVICE_UNAVAILABLE, headers={"Retry-After": str(RETRY_AFTER_S)}
    )


@get("/metrics", summary="Prometheus metrics of every worker", include_in_schema=True)
async def prometheus_metrics(state: ServiceState) -> Response[bytes]:
    def gather() -> tuple[bytes, str]:
        try:
            latest = state.log.latest_drift_report()
        except LogUnavailableError:  # the service's own samples still answer
            latest = None
        return metrics.exposition(latest)

    body, content_type = await anyio.to_thread.run_sync(gather)
    return Response(body, media_type=content_type)
