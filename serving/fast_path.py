"""The hot path: a well-formed ``POST /predict`` or ``/predict/batch`` answered without Litestar's
per-request machinery (routing, kwargs and signature models, response objects, its middleware
stack), which on one core cost more than the model and the log together (the serving
benchmark's profile). Anything out of the ordinary goes to Litestar with the body replayed, so
every refusal is Litestar's own answer: a body that does not decode or validate, a label (it
needs a key), a body over the limit or of unknown length, an empty or oversized batch.

Behind it are the same functions as the Litestar handlers: ``validate_tickets`` normalises,
``_predict`` classifies, logs durably, and only then does the answer leave."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from litestar.exceptions import HTTPException
from litestar.types import Receive, ReceiveMessage, Scope, Send

from core.errors import InputError
from serving import metrics
from serving.errors import EXCEPTION_HANDLERS
from serving.predict import _predict, validate_tickets
from serving.schemas import BatchPrediction, Ticket, TicketBatch
from serving.state import ServiceState

logger = logging.getLogger("tickets.serving")

ASGI = Callable[[Scope, Receive, Send], Awaitable[None]]
PATHS = frozenset({"/predict", "/predict/batch"})
_SINGLE = msgspec.json.Decoder(Ticket)
_BATCH = msgspec.json.Decoder(TicketBatch)
_ENCODE = msgspec.json.Encoder().encode
_JSON = (b"content-type", b"application/json")


class Fallback(Exception):
    """Not for the fast path: Litestar answers."""


def wants_fast_path(scope: Scope) -> bool:
    return scope["type"] == "http" and scope.get("method") == "POST" and scope["path"] in PATHS


async def fast_predict(
    scope: Scope, receive: Receive, send: Send, state: ServiceState, full: ASGI
) -> None:
    """Answer one prediction request, or hand it to ``full`` (the Litestar app) untouched."""
    started = time.perf_counter()
    path = scope["path"]
    try:
        body = await _read_body(scope, receive, state.settings.serving.max_body_bytes)
    except Fallback:
        await full(scope, receive, send)
        return
    try:
        tickets, key = _parse(scope, path, body, state)
    except Fallback:
        await full(scope, _replay(body, receive), send)
        return
    status = 500
    try:
        predictions = await _predict(state, tickets, key)
        answer: Any = (
            predictions[0]
            if path == "/predict"
            else BatchPrediction(predictions, predictions[0].model_version)
        )
        status, payload, headers = 200, _ENCODE(answer), [_JSON]
    except Exception as exc:
        status, payload, headers = _error(exc)
    try:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*headers, (b"content-length", str(len(payload)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": payload, "more_body": False})
    finally:
        metrics.REQUEST_SECONDS.labels(path).observe(time.perf_counter() - started)
        metrics.REQUESTS.labels(path, str(status)).inc()


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    length = None
    for name, value in scope["headers"]:
        if name == b"content-length":
            length = int(value) if value.isdigit() else None
            break
    if length is None or length > limit:
        raise Fallback  # chunked, or over the limit: Litestar streams it and answers 413
    chunks = []
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            raise Fallback  # the client went away; Litestar sees the same disconnect
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


def _parse(
    scope: Scope, path: str, body: bytes, state: ServiceState
) -> tuple[list[Ticket], str | None]:
    serving = state.settings.serving
    key = None
    for name, value in scope["headers"]:
        if name == b"x-client-key":
            key = value.decode("latin-1")[:200] or None
    try:
        if path == "/predict":
            raw = [_SINGLE.decode(body)]
            prefix = ""
        else:
            raw = _BATCH.decode(body).tickets
            prefix = "tickets"
            if not raw or len(raw) > serving.max_batch:
                raise Fallback
        if any(ticket.true_label is not None for ticket in raw):
            raise Fallback  # labels need the label key: Litestar's handler checks it
        return validate_tickets(raw, serving.max_text_chars, prefix), key
    except (
        msgspec.DecodeError,
        msgspec.ValidationError,
        HTTPException,
        InputError,
        ValueError,
        RecursionError,
    ):
        raise Fallback from None


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` as if the body had not been read yet."""
    replayed = False

    async def again() -> ReceiveMessage:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again


def _error(exc: Exception) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """The answer Litestar gives for ``exc`` (serving/errors.py, else its own 500)."""
    handler = next((h for t, h in EXCEPTION_HANDLERS.items() if _is(exc, t)), None)
    if handler is not None:
        response = handler(None, exc)  # type: ignore[arg-type]
        status, content, extra = response.status_code or 500, response.content, response.headers
    elif isinstance(exc, HTTPException):
        status, extra = exc.status_code, exc.headers or {}
        content = {"status_code": status, "detail": exc.detail}
        if exc.extra:
            content["extra"] = exc.extra
    else:
        logger.exception("prediction failed")
        status, extra = 500, {}
        content = {"status_code": 500, "detail": "Internal Server Error"}
    headers = [_JSON, *((k.lower().encode(), str(v).encode()) for k, v in extra.items())]
    return status, _ENCODE(content), headers


def _is(exc: Exception, kind: int | type[Exception]) -> bool:
    return isinstance(kind, type) and isinstance(exc, kind)
