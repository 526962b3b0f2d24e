"""Signed webhooks: a retrain request becomes the Prefect event ``tickets.retrain.requested``;
closed tickets with their true category become feedback.

Each webhook id is worked on once, across workers: it is claimed in the shared log before the
work, marked done with it (in the same transaction, for feedback), and released if the work fails
in any way, so the sender's retry is accepted. A delivery of an id already done answers 200 with
``duplicate: true`` (senders retry non-2xx answers); one whose claim is still being worked on
answers 409 with Retry-After, and a claim left unfinished (a crash) can be taken over once its
lease (``webhook_lease_s``) runs out. The Prefect event's id is derived from the webhook id, so
a retry after a post that Prefect took but whose answer was lost is the same event to Prefect.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import anyio
import msgspec
from litestar import Request, Response, post
from litestar.exceptions import HTTPException

from core import events
from core.auth.signing import verify
from core.data.validation import require_label, require_text
from core.monitoring.retraining import decide_request
from core.predlog import Claim, PredictionLog
from core.records import RetrainDecision
from core.settings import Settings
from serving.errors import RETRY_AFTER_S, bad_request, unavailable
from serving.schemas import Feedback
from serving.state import ServiceState

HEADERS_DOC = "Standard Webhooks headers webhook-id, webhook-timestamp, webhook-signature."
T = TypeVar("T")


class RetrainRequest(msgspec.Struct, forbid_unknown_fields=True):
    reason: str
    requested_by: str | None = None


class ClosedTickets(msgspec.Struct, forbid_unknown_fields=True):
    tickets: list[Feedback]


class EventUnavailable(RuntimeError):
    """The Prefect API could not take the event."""


def prefect_headers(settings: Settings) -> dict[str, str]:
    """Credentials for the Prefect API: a bearer key, or basic auth for a secured server."""
    headers = {"content-type": "application/json"}
    if settings.prefect_api_key is not None:
        headers["authorization"] = f"Bearer {settings.prefect_api_key.get_secret_value()}"
    elif settings.prefect_api_auth_string is not None:
        token = base64.b64encode(settings.prefect_api_auth_string.get_secret_value().encode())
        headers["authorization"] = f"Basic {token.decode()}"
    return headers


def post_event(api_url: str, event: dict[str, Any], headers: dict[str, str]) -> None:
    """Send one event to the Prefect API's REST endpoint (no Prefect import in serving)."""
    request = urllib.request.Request(
        api_url.rstrip("/") + "/events",
        data=json.dumps([event]).encode(),
        headers=headers,
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
    webhook_id = verify(secrets, request.headers, body, settings.webhook_tolerance_s)
    return webhook_id, body


def _decode(body: bytes, kind: type[Any]) -> Any:
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        raise HTTPException(status_code=400, detail=f"invalid body: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise HTTPException(status_code=400, detail=f"body is not valid JSON: {exc}") from exc


async def _once(
    log: PredictionLog,
    webhook_id: str,
    lease_s: float,
    work: Callable[[], Awaitable[T]],
) -> T | Response[dict[str, Any]]:
    """Run ``work`` for a webhook id that no one has done or is doing; release the claim if the
    work fails in any way (cancellation included), so the sender's retry is accepted."""
    claim = await anyio.to_thread.run_sync(log.claim_webhook, webhook_id, lease_s)
    if claim is Claim.DUPLICATE:
        return Response({"webhook_id": webhook_id, "duplicate": True}, status_code=200)
    if claim is Claim.IN_PROGRESS:
        raise HTTPException(
            status_code=409,
            detail=f"webhook-id {webhook_id} is being processed; retry later",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
    try:
        return await work()
    except BaseException:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(log.release_webhook, webhook_id)
        raise


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
    reason = require_text(wanted.reason, "reason", 1000)
    requested_by = require_text(wanted.requested_by, "requested_by", 200, required=False)
    api_url = settings.prefect_api_url
    if not api_url:
        raise unavailable("no Prefect API configured for events")
    served = state.holder.current
    version = served.version if served is not None else ""

    async def send() -> Response[dict[str, Any]]:
        decision = await anyio.to_thread.run_sync(
            _record_request, state.log, settings, reason, version
        )
        if not decision.requested:
            await anyio.to_thread.run_sync(state.log.finish_webhook, webhook_id)
            body = {"webhook_id": webhook_id, "deduplicated": True, "reason": decision.reason}
            return Response(body, status_code=202)
        event = {
            "id": events.webhook_event_id(webhook_id),
            "occurred": datetime.now(UTC).isoformat(),
            "event": events.RETRAIN_REQUESTED,
            "resource": events.webhook_resource(webhook_id, events.RETRAIN_PENDING),
            "payload": {
                "reason": reason,
                "requested_by": requested_by or None,
                "webhook_id": webhook_id,
                "decision_id": decision.decision_id,
            },
        }
        try:
            await anyio.to_thread.run_sync(post_event, api_url, event, prefect_headers(settings))
        except EventUnavailable as exc:
            await anyio.to_thread.run_sync(state.log.forget_decision, decision.decision_id)
            raise unavailable(f"{exc}; retry later") from exc
        await anyio.to_thread.run_sync(state.log.finish_webhook, webhook_id)
        return Response({"event_id": event["id"], "webhook_id": webhook_id}, status_code=202)

    return await _once(state.log, webhook_id, settings.webhook_lease_s, send)


def _record_request(
    log: PredictionLog, settings: Settings, reason: str, version: str
) -> RetrainDecision:
    """A signed retrain request is honoured, but the same reason twice within
    ``retrain_request_window`` starts one run."""
    now = datetime.now(UTC)
    window = settings.retraining.request_window

    return log.record_decision(
        lambda history: decide_request(history, reason, version, now, window),
        since=(now - window).isoformat(),
    )


@post(
    "/webhooks/tickets",
    status_code=200,
    summary="Signed closed tickets, stored as feedback",
    description=HEADERS_DOC,
)
async def tickets_webhook(
    request: Request[Any, Any, Any], state: ServiceState
) -> Response[dict[str, Any]]:
    settings = state.settings
    webhook_id, body = await _verified(request, settings)
    closed: ClosedTickets = _decode(body, ClosedTickets)
    if len(closed.tickets) > settings.serving.max_batch:
        raise bad_request(
            f"tickets has {len(closed.tickets)} items; the maximum is "
            f"{settings.serving.max_batch} (TICKETS_MAX_BATCH): send them in several deliveries"
        )
    pairs = [
        (
            require_text(ticket.request_id, f"tickets[{index}].request_id", 200),
            require_label(ticket.true_label, f"tickets[{index}].true_label"),
        )
        for index, ticket in enumerate(closed.tickets)
    ]

    async def store() -> Response[dict[str, Any]]:
        unknown = await anyio.to_thread.run_sync(state.log.add_feedback, pairs, webhook_id)
        return Response(
            {
                "webhook_id": webhook_id,
                "updated": len(pairs) - len(unknown),
                "unknown_request_ids": unknown,
            },
            status_code=200,
        )

    return await _once(state.log, webhook_id, settings.webhook_lease_s, store)
