"""Signed webhooks: a retrain request becomes the Prefect event ``tickets.retrain.requested``;
closed tickets with their true category become feedback. Each webhook id is accepted once, across
workers (the id is claimed in the shared log before the work and released if the work fails)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime
from typing import Any

import anyio
import msgspec
from litestar import Request, Response, post
from litestar.exceptions import HTTPException

from core import events
from core.predictions import PredictionLog
from core.settings import Settings
from core.webhooks import WebhookError, verify
from serving.schemas import Feedback
from serving.state import ServiceState, unavailable
from serving.validation import require_text

HEADERS_DOC = "Standard Webhooks headers webhook-id, webhook-timestamp, webhook-signature."


class RetrainRequest(msgspec.Struct, forbid_unknown_fields=True):
    reason: str
    requested_by: str | None = None


class ClosedTickets(msgspec.Struct, forbid_unknown_fields=True):
    tickets: list[Feedback]


class EventUnavailable(RuntimeError):
    """The Prefect API could not take the event."""


def post_event(api_url: str, event: dict[str, Any]) -> None:
    """Send one event to the Prefect API's REST endpoint (no Prefect import in serving)."""
    request = urllib.request.Request(
        api_url.rstrip("/") + "/events",
        data=json.dumps([event]).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            if response.status >= 300:
                raise EventUnavailable(f"Prefect API answered {response.status}")
    except (urllib.error.URLError, OSError) as exc:
        raise EventUnavailable(f"Prefect API unreachable: {exc}") from exc


async def _verified(request: Request[Any, Any, Any], settings: Settings) -> tuple[str, bytes]:
    if not settings.webhook_secrets:
        raise unavailable("webhooks are not configured (no secret)")
    body = await request.body()
    secrets = [secret.get_secret_value() for secret in settings.webhook_secrets]
    try:
        webhook_id = verify(secrets, request.headers, body, settings.webhook_tolerance_s)
    except WebhookError as exc:
        raise HTTPException(status_code=401, detail=str(exc)) from exc
    return webhook_id, body


def _decode(body: bytes, kind: type[Any]) -> Any:
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        raise HTTPException(status_code=400, detail=f"invalid body: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise HTTPException(status_code=400, detail=f"body is not valid JSON: {exc}") from exc


async def _claim(log: PredictionLog, webhook_id: str) -> None:
    if not await anyio.to_thread.run_sync(log.claim_webhook, webhook_id):
        raise HTTPException(status_code=409, detail=f"webhook-id {webhook_id} was already received")


@post(
    "/webhooks/retrain",
    status_code=202,
    summary="Signed request to retrain",
    description=HEADERS_DOC,
)
async def retrain_webhook(
    request: Request[Any, Any, Any], state: ServiceState
) -> Response[dict[str, Any]]:
    settings = state.settings
    webhook_id, body = await _verified(request, settings)
    wanted: RetrainRequest = _decode(body, RetrainRequest)
    require_text(wanted.reason, "reason", settings.max_text_chars)
    if not settings.prefect_api_url:
        raise unavailable("no Prefect API configured for events")
    log = state.log
    await _claim(log, webhook_id)
    event_id = str(uuid.uuid4())
    event = {
        "id": event_id,
        "occurred": datetime.now(UTC).isoformat(),
        "event": events.RETRAIN_REQUESTED,
        "resource": events.webhook_resource(webhook_id, events.RETRAIN_PENDING),
        "payload": {
            "reason": wanted.reason,
            "requested_by": wanted.requested_by,
            "webhook_id": webhook_id,
        },
    }
    try:
        await anyio.to_thread.run_sync(post_event, settings.prefect_api_url, event)
    except EventUnavailable as exc:
        await anyio.to_thread.run_sync(log.release_webhook, webhook_id)
        raise unavailable(f"{exc}; retry later") from exc
    return Response({"event_id": event_id, "webhook_id": webhook_id}, status_code=202)


@post(
    "/webhooks/tickets",
    status_code=200,
    summary="Signed closed tickets, stored as feedback",
    description=HEADERS_DOC,
)
async def tickets_webhook(request: Request[Any, Any, Any], state: ServiceState) -> dict[str, Any]:
    settings = state.settings
    webhook_id, body = await _verified(request, settings)
    closed: ClosedTickets = _decode(body, ClosedTickets)
    for index, ticket in enumerate(closed.tickets):
        require_text(ticket.true_label, f"tickets[{index}].true_label", settings.max_text_chars)
    log = state.log
    await _claim(log, webhook_id)
    pairs = [(ticket.request_id, ticket.true_label) for ticket in closed.tickets]
    try:
        unknown = await anyio.to_thread.run_sync(log.add_feedback, pairs)
    except Exception:
        await anyio.to_thread.run_sync(log.release_webhook, webhook_id)
        raise
    return {
        "webhook_id": webhook_id,
        "updated": len(pairs) - len(unknown),
        "unknown_request_ids": unknown,
    }
