"""The prediction service, built by ``create_app(settings)``. Never imports Prefect."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import numpy as np
from litestar import Litestar, Request, Response, get, post
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from litestar.status_codes import HTTP_503_SERVICE_UNAVAILABLE

from core.predictions import PredictionLog, PredictionRecord, open_prediction_log
from core.settings import Settings, get_settings
from core.store import open_store
from serving import monitoring, webhooks
from serving.batcher import MicroBatcher
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
from serving.state import RETRY_AFTER_S, ServiceState, require_model
from serving.validation import require_text


def validate_tickets(tickets: list[Ticket], limit: int, prefix: str = "") -> list[tuple[str, str]]:
    """The tickets' (short description, close notes), or a 400 naming the first bad field."""
    rows = []
    for index, ticket in enumerate(tickets):
        where = f"{prefix}[{index}]." if prefix else ""
        short = require_text(ticket.short_description, f"{where}short_description", limit)
        notes = require_text(ticket.close_notes, f"{where}close_notes", limit, required=False)
        require_text(ticket.true_label, f"{where}true_label", limit, required=False)
        rows.append((short, notes))
    return rows


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


async def _predict(
    state: ServiceState, tickets: list[Ticket], rows: list[tuple[str, str]]
) -> list[Prediction]:
    """Classify through the model's micro-batcher, then log through the log's group commit;
    the answer leaves only after its log row is durable."""
    state.served_model()
    scored = await state.model_batcher.submit(rows)
    predictions = [
        Prediction(top[0].label, top[0].score, top, version, str(uuid.uuid4()))
        for version, top in scored
    ]
    await state.log_batcher.submit(
        [
            _record(ticket, prediction)
            for ticket, prediction in zip(tickets, predictions, strict=True)
        ]
    )
    return predictions


@post("/predict", status_code=200, summary="Classify one ticket")
async def predict(data: Ticket, state: ServiceState) -> Prediction:
    rows = validate_tickets([data], state.settings.max_text_chars)
    return (await _predict(state, [data], rows))[0]


@post("/predict/batch", status_code=200, summary="Classify up to max_batch tickets, in order")
async def predict_batch(data: TicketBatch, state: ServiceState) -> BatchPrediction:
    settings = state.settings
    if not data.tickets:
        raise bad_request("tickets is empty")
    if len(data.tickets) > settings.max_batch:
        raise bad_request(
            f"tickets has {len(data.tickets)} items; the maximum is {settings.max_batch}"
        )
    rows = validate_tickets(data.tickets, settings.max_text_chars, "tickets")
    predictions = await _predict(state, data.tickets, rows)
    return BatchPrediction(predictions, predictions[0].model_version)


@post("/feedback", status_code=200, summary="Record true labels by request id")
async def feedback(data: Feedback | list[Feedback], state: ServiceState) -> FeedbackResult:
    items = data if isinstance(data, list) else [data]
    if not items:
        raise bad_request("feedback list is empty")
    for index, item in enumerate(items):
        require_text(item.true_label, f"[{index}].true_label", state.settings.max_text_chars)
    pairs = [(item.request_id, item.true_label) for item in items]
    unknown = await anyio.to_thread.run_sync(state.log.add_feedback, pairs)
    if len(unknown) == len(items):
        raise HTTPException(status_code=404, detail=f"unknown request_id(s): {unknown[:10]}")
    return FeedbackResult(len(items) - len(unknown), unknown)


def _health(state: ServiceState) -> dict[str, Any]:
    served = state.holder.current
    return {
        "status": "ok",
        "worker_pid": os.getpid(),
        "model": served.describe() if served else None,
        "last_failed_load": state.holder.last_failure,
    }


@get(["/", "/health"], summary="Liveness and the served model")
async def health(state: ServiceState) -> dict[str, Any]:
    return _health(state)


@get("/ready", summary="503 until a verified model is loaded")
async def ready(state: ServiceState) -> Response[dict[str, Any]]:
    body = _health(state)
    if body["model"]:
        return Response(body, status_code=200)
    return Response(
        body, status_code=HTTP_503_SERVICE_UNAVAILABLE, headers={"Retry-After": str(RETRY_AFTER_S)}
    )


def _invalid_utf8(request: Request, exc: UnicodeDecodeError) -> Response[dict[str, Any]]:
    return Response(
        {"status_code": 400, "detail": "request body is not valid UTF-8"}, status_code=400
    )


async def _watch(holder: ModelHolder, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        await anyio.to_thread.run_sync(holder.refresh)


def create_app(settings: Settings, holder: ModelHolder | None = None) -> Litestar:
    """The service for ``settings``; the champion is loaded at start-up and watched after."""
    model_holder = holder or ModelHolder(open_store(settings))
    log = open_prediction_log(settings)
    model_batcher = MicroBatcher(
        functools.partial(classify_rows, model_holder, settings.top_k),
        settings.micro_batch_max,
        settings.micro_batch_wait_ms / 1000,
    )
    log_batcher = MicroBatcher(_writer(log), max_items=10 * settings.max_batch, max_wait_s=0.0)

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await anyio.to_thread.run_sync(model_holder.refresh)
        watcher = asyncio.create_task(_watch(model_holder, settings.model_poll_s))
        try:
            yield
        finally:
            watcher.cancel()
            await model_batcher.stop()
            await log_batcher.stop()
            log.close()

    state = {
        "settings": settings,
        "holder": model_holder,
        "log": log,
        "model_batcher": model_batcher,
        "log_batcher": log_batcher,
    }
    return Litestar(
        route_handlers=[
            health,
            ready,
            predict,
            predict_batch,
            feedback,
            monitoring.metrics,
            monitoring.save_metrics,
            monitoring.saved_metrics,
            monitoring.drift,
            webhooks.retrain_webhook,
            webhooks.tickets_webhook,
        ],
        state=ServiceState(state),
        lifespan=[lifespan],
        request_max_body_size=settings.max_body_bytes,
        exception_handlers={UnicodeDecodeError: _invalid_utf8},
        openapi_config=OpenAPIConfig(
            title="Ticket classifier",
            version="1",
            description="Classifies Spanish help-desk tickets; logs every prediction.",
        ),
    )


def _writer(log: PredictionLog) -> Callable[[list[PredictionRecord]], list[None]]:
    def write(records: list[PredictionRecord]) -> list[None]:
        log.record(records)
        return [None] * len(records)

    return write


def app_from_environment() -> Litestar:
    """Factory for uvicorn (``--factory``): settings from TICKETS_* variables."""
    return create_app(get_settings())
