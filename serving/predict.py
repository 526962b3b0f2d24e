"""Classifying tickets (one, or a batch in order) and recording their true labels: the request
path, micro-batched through the model and group-committed to the log before the answer leaves."""

from __future__ import annotations

import asyncio
import collections
import time
import uuid
from typing import Any

import anyio
import numpy as np
from litestar import Request, delete, post
from litestar.exceptions import ClientException, NotFoundException
from litestar.params import Parameter
from litestar.status_codes import HTTP_409_CONFLICT

from core.data.validation import require_label, require_text
from core.predlog import PredictionRecord
from serving import metrics
from serving.errors import bad_request
from serving.model_holder import ModelHolder, ServedModel
from serving.rollout import ShadowItem, canary_flags
from serving.schemas import (
    BatchPrediction,
    Feedback,
    FeedbackResult,
    LabelScore,
    Prediction,
    Ticket,
    TicketBatch,
)
from serving.security import label_guard, require_label_key
from serving.state import ServiceState, require_model


def validate_tickets(tickets: list[Ticket], limit: int, prefix: str = "") -> list[Ticket]:
    """The tickets as they will be classified and logged (labels normalised), or a 400 naming
    the first bad field."""
    valid = []
    for index, ticket in enumerate(tickets):
        where = f"{prefix}[{index}]." if prefix else ""
        short = require_text(ticket.short_description, f"{where}short_description", limit)
        notes = require_text(ticket.close_notes, f"{where}close_notes", limit, required=False)
        label = None
        if ticket.true_label is not None:
            label = require_label(ticket.true_label, f"{where}true_label")
        valid.append(Ticket(short, notes, label))
    return valid


Scored = tuple[str, list[LabelScore]]


def classify_rows(holder: ModelHolder, top_k: int, rows: list[tuple[str, str]]) -> list[Scored]:
    """One model call for many tickets: (model version, top labels) per row, in order."""
    return _classify(require_model(holder), top_k, rows)


def classify_canary_rows(
    holder: ModelHolder, top_k: int, rows: list[tuple[str, str]]
) -> list[Scored]:
    """The same with the challenger (raises when it went away: the champion answers then)."""
    served = holder.challenger
    if served is None:
        raise RuntimeError("the canary is no longer loaded")
    return _classify(served, top_k, rows)


def _classify(served: ServedModel, top_k: int, rows: list[tuple[str, str]]) -> list[Scored]:
    probabilities = served.predict_proba(rows)
    best = np.argsort(-probabilities, axis=1)[:, :top_k]
    labels = served.classes
    return [
        (served.version, [LabelScore(str(labels[j]), round(float(row[j]), 6)) for j in order])
        for row, order in zip(probabilities, best, strict=True)
    ]


def _record(
    ticket: Ticket, prediction: Prediction, latency_ms: float, keyed: bool
) -> PredictionRecord:
    return PredictionRecord(
        request_id=prediction.request_id,
        model_version=prediction.model_version,
        short_description=ticket.short_description,
        close_notes=ticket.close_notes or "",
        prediction=prediction.prediction,
        confidence=prediction.probability,
        top_probabilities={score.label: score.score for score in prediction.probabilities},
        true_label=ticket.true_label,
        route=prediction.route,
        latency_ms=round(latency_ms, 3),
        keyed=keyed,
    )


async def _score(
    state: ServiceState, rows: list[tuple[str, str]], keys: list[str]
) -> tuple[list[Scored], list[str]]:
    """Scores and routes: the champion's micro-batcher, and the canary's for the tickets whose
    key falls in its share. A canary that fails leaves its tickets to the champion."""
    flags = canary_flags(state.holder, keys, state.routing_secret)
    if not any(flags):
        return await state.model_batcher.submit(rows), ["champion"] * len(rows)
    mine = [i for i, flag in enumerate(flags) if not flag]
    theirs = [i for i, flag in enumerate(flags) if flag]
    routes = ["champion"] * len(rows)
    champion_part, canary_part = await asyncio.gather(
        state.model_batcher.submit([rows[i] for i in mine]) if mine else _nothing(),
        state.canary_batcher.submit([rows[i] for i in theirs]),
        return_exceptions=True,
    )
    if isinstance(champion_part, BaseException):
        raise champion_part
    if isinstance(canary_part, BaseException):
        canary_part = await state.model_batcher.submit([rows[i] for i in theirs])
        side = "canary-fallback"
    else:
        side = "canary"
    scored: list[Scored | None] = [None] * len(rows)
    for index, result in zip(mine, champion_part, strict=True):
        scored[index] = result
    for index, result in zip(theirs, canary_part, strict=True):
        scored[index], routes[index] = result, side
    return [s for s in scored if s is not None], routes


async def _nothing() -> list[Scored]:
    return []


async def _predict(
    state: ServiceState, tickets: list[Ticket], client_key: str | None = None
) -> list[Prediction]:
    """Classify through the model's micro-batcher (or the canary's), then log through the
    log's group commit; the answer leaves only after its log row is durable. The shadow scores
    afterwards, off the answer's path."""
    started = time.perf_counter()
    state.served_model()
    rows = [(ticket.short_description, ticket.close_notes or "") for ticket in tickets]
    ids = [str(uuid.uuid4()) for _ in tickets]
    scored, routes = await _score(state, rows, [client_key or rid for rid in ids])
    latency_ms = (time.perf_counter() - started) * 1000
    predictions = [
        Prediction(top[0].label, top[0].score, top, version, rid, route)
        for (version, top), rid, route in zip(scored, ids, routes, strict=True)
    ]
    keyed = client_key is not None
    records = [_record(t, p, latency_ms, keyed) for t, p in zip(tickets, predictions, strict=True)]
    await state.log_batcher.submit(records)
    metrics.observe_predictions(
        [p.prediction for p in predictions], [p.probability for p in predictions]
    )
    for route, count in collections.Counter(routes).items():
        metrics.ROUTED.labels(route).inc(count)
    if state.shadow.wanted() > 0:
        state.shadow.offer(
            [ShadowItem(rid, short, notes) for rid, (short, notes) in zip(ids, rows, strict=True)]
        )
    return predictions


def client_key(request: Request[Any, Any, Any]) -> str | None:
    """``X-Client-Key``: keeps a client on one side of a canary split (else each ticket's
    request id decides)."""
    key = request.headers.get("x-client-key")
    return key[:200] if key else None


def _check_labels(
    request: Request[Any, Any, Any], state: ServiceState, tickets: list[Ticket]
) -> None:
    if any(ticket.true_label is not None for ticket in tickets):
        require_label_key(request.headers, state.settings)


@post("/predict", status_code=200, summary="Classify one ticket")
async def predict(data: Ticket, state: ServiceState, request: Request[Any, Any, Any]) -> Prediction:
    """``true_label`` needs a label key in ``X-API-Key`` (TICKETS_LABEL_API_KEYS)."""
    tickets = validate_tickets([data], state.settings.serving.max_text_chars)
    _check_labels(request, state, tickets)
    return (await _predict(state, tickets, client_key(request)))[0]


@post("/predict/batch", status_code=200, summary="Classify up to max_batch tickets, in order")
async def predict_batch(
    data: TicketBatch, state: ServiceState, request: Request[Any, Any, Any]
) -> BatchPrediction:
    settings = state.settings
    if not data.tickets:
        raise bad_request("tickets is empty")
    if len(data.tickets) > settings.serving.max_batch:
        raise bad_request(
            f"tickets has {len(data.tickets)} items; the maximum is {settings.serving.max_batch}"
        )
    tickets = validate_tickets(data.tickets, settings.serving.max_text_chars, "tickets")
    _check_labels(request, state, tickets)
    predictions = await _predict(state, tickets, client_key(request))
    return BatchPrediction(predictions, predictions[0].model_version)


@post(
    "/feedback",
    status_code=200,
    guards=[label_guard],
    summary="Record true labels by request id (needs a label key in X-API-Key)",
)
async def feedback(data: Feedback | list[Feedback], state: ServiceState) -> FeedbackResult:
    items = data if isinstance(data, list) else [data]
    if not items:
        raise bad_request("feedback list is empty")
    if len(items) > state.settings.serving.max_batch:
        raise bad_request(
            f"feedback list has {len(items)} items; the maximum is "
            f"{state.settings.serving.max_batch} (TICKETS_MAX_BATCH): send it in parts"
        )
    limit = state.settings.serving.max_text_chars
    pairs = [
        (
            require_text(item.request_id, f"[{index}].request_id", limit),
            require_label(item.true_label, f"[{index}].true_label"),
        )
        for index, item in enumerate(items)
    ]
    unknown = await anyio.to_thread.run_sync(state.log.add_feedback, pairs)
    if len(unknown) == len(items):
        raise NotFoundException(detail=f"unknown request_id(s): {unknown[:10]}")
    return FeedbackResult(len(items) - len(unknown), unknown)


@delete(
    "/feedback/{request_id:str}",
    status_code=200,
    guards=[label_guard],
    summary="Take back one true label (a labeller's undo; needs a label key in X-API-Key)",
)
async def take_back_feedback(
    request_id: str,
    state: ServiceState,
    true_label: str | None = Parameter(
        default=None,
        description="Take it back only if the ticket's label is still this one (409 if not).",
    ),
) -> dict[str, Any]:
    """The ticket goes back to the label queue. With ``true_label`` a label set since by
    someone else is never undone by mistake."""
    limit = state.settings.serving.max_text_chars
    request_id = require_text(request_id, "request_id", limit)
    expected = None if true_label is None else require_label(true_label, "true_label")
    outcome = await anyio.to_thread.run_sync(state.log.clear_feedback, request_id, expected)
    if outcome == "unknown":
        raise NotFoundException(detail=f"request_id {request_id!r} has no label to take back")
    if outcome == "changed":
        raise ClientException(
            status_code=HTTP_409_CONFLICT,
            detail=f"request_id {request_id!r}: its label is no longer {expected!r} (it was "
            "relabelled since); it stays",
        )
    return {"request_id": request_id, "cleared": True}
