"""Classifying tickets (one, or a batch in order) and recording their true labels: the request
path, micro-batched through the model and group-committed to the log before the answer leaves."""

from __future__ import annotations

import uuid
from typing import Any

import anyio
import numpy as np
from litestar import Request, post
from litestar.exceptions import NotFoundException

from core.predlog import PredictionRecord
from serving import metrics
from serving.errors import bad_request
from serving.model_holder import ModelHolder
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
from serving.validation import require_label, require_text


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
    served = require_model(holder)
    probabilities = served.predict_proba(rows)
    best = np.argsort(-probabilities, axis=1)[:, :top_k]
    labels = served.classes
    return [
        (served.version, [LabelScore(str(labels[j]), round(float(row[j]), 6)) for j in order])
        for row, order in zip(probabilities, best, strict=True)
    ]


def _record(ticket: Ticket, prediction: Prediction) -> PredictionRecord:
    return PredictionRecord(
        request_id=prediction.request_id,
        model_version=prediction.model_version,
        short_description=ticket.short_description,
        close_notes=ticket.close_notes or "",
        prediction=prediction.prediction,
        confidence=prediction.probability,
        top_probabilities={score.label: score.score for score in prediction.probabilities},
        true_label=ticket.true_label,
    )


async def _predict(state: ServiceState, tickets: list[Ticket]) -> list[Prediction]:
    """Classify through the model's micro-batcher, then log through the log's group commit;
    the answer leaves only after its log row is durable."""
    state.served_model()
    rows = [(ticket.short_description, ticket.close_notes or "") for ticket in tickets]
    scored = await state.model_batcher.submit(rows)
    predictions = [
        Prediction(top[0].label, top[0].score, top, version, str(uuid.uuid4()))
        for version, top in scored
    ]
    records = [_record(t, p) for t, p in zip(tickets, predictions, strict=True)]
    await state.log_batcher.submit(records)
    metrics.observe_predictions(
        [p.prediction for p in predictions], [p.probability for p in predictions]
    )
    return predictions


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
    return (await _predict(state, tickets))[0]


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
    predictions = await _predict(state, tickets)
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
