"""The prediction service, built by ``create_app(settings)``. Never imports Prefect."""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio
import numpy as np
import pandas as pd
from litestar import Litestar, Request, Response, get, post
from litestar.datastructures import State
from litestar.exceptions import HTTPException
from litestar.status_codes import HTTP_400_BAD_REQUEST, HTTP_503_SERVICE_UNAVAILABLE

from core.data import NOTES, SHORT
from core.predictions import PredictionLog, PredictionRecord
from core.settings import Settings, get_settings
from core.store import open_store
from serving.model_holder import ModelHolder, ServedModel
from serving.schemas import (
    BatchPrediction,
    Feedback,
    FeedbackResult,
    LabelScore,
    Prediction,
    Ticket,
    TicketBatch,
)

_INVISIBLE = re.compile(r"[\s\u200b-\u200f\u2060\ufeff\u00ad]+")


def _bad_request(message: str) -> HTTPException:
    return HTTPException(status_code=HTTP_400_BAD_REQUEST, detail=message)


def _check_text(value: str | None, field: str, limit: int) -> str:
    if value is None:
        return ""
    if len(value) > limit:
        raise _bad_request(f"{field} is longer than {limit} characters")
    return value


def validate_tickets(tickets: list[Ticket], limit: int, prefix: str = "") -> pd.DataFrame:
    """A DataFrame of the tickets' texts, or a 400 naming the first bad field."""
    rows = []
    for index, ticket in enumerate(tickets):
        where = f"{prefix}[{index}]." if prefix else ""
        short = _check_text(ticket.short_description, f"{where}short_description", limit)
        if not _INVISIBLE.sub("", short):
            raise _bad_request(f"{where}short_description is empty")
        notes = _check_text(ticket.close_notes, f"{where}close_notes", limit)
        _check_text(ticket.true_label, f"{where}true_label", limit)
        rows.append((short, notes))
    return pd.DataFrame(rows, columns=[SHORT, NOTES])


def _served(state: State) -> ServedModel:
    served: ServedModel | None = state.holder.current
    if served is None:
        raise HTTPException(status_code=HTTP_503_SERVICE_UNAVAILABLE, detail="no model loaded yet")
    return served


async def _predict(state: State, tickets: list[Ticket], frame: pd.DataFrame) -> list[Prediction]:
    served = _served(state)
    probabilities = await anyio.to_thread.run_sync(served.predict_proba, frame)
    settings: Settings = state.settings
    predictions, records = [], []
    for ticket, row in zip(tickets, probabilities, strict=True):
        order = np.argsort(row)[::-1][: settings.top_k]
        top = [LabelScore(str(served.classes[i]), round(float(row[i]), 6)) for i in order]
        request_id = str(uuid.uuid4())
        predictions.append(Prediction(top[0].label, top[0].score, top, served.version, request_id))
        records.append(
            PredictionRecord(
                request_id=request_id,
                model_version=served.version,
                short_description=ticket.short_description,
                close_notes=ticket.close_notes or "",
                prediction=top[0].label,
                confidence=top[0].score,
                top_probabilities={s.label: s.score for s in top},
                true_label=ticket.true_label,
            )
        )
    await anyio.to_thread.run_sync(state.log.record, records)
    return predictions


@post("/predict", status_code=200, summary="Classify one ticket")
async def predict(data: Ticket, state: State) -> Prediction:
    frame = validate_tickets([data], state.settings.max_text_chars)
    return (await _predict(state, [data], frame))[0]


@post("/predict/batch", status_code=200, summary="Classify up to max_batch tickets, in order")
async def predict_batch(data: TicketBatch, state: State) -> BatchPrediction:
    settings: Settings = state.settings
    if not data.tickets:
        raise _bad_request("tickets is empty")
    if len(data.tickets) > settings.max_batch:
        raise _bad_request(
            f"tickets has {len(data.tickets)} items; the maximum is {settings.max_batch}"
        )
    frame = validate_tickets(data.tickets, settings.max_text_chars, "tickets")
    predictions = await _predict(state, data.tickets, frame)
    return BatchPrediction(predictions, predictions[0].model_version)


@post("/feedback", status_code=200, summary="Record true labels by request id")
async def feedback(data: Feedback | list[Feedback], state: State) -> FeedbackResult:
    items = data if isinstance(data, list) else [data]
    if not items:
        raise _bad_request("feedback list is empty")
    for index, item in enumerate(items):
        if not _INVISIBLE.sub("", item.true_label):
            raise _bad_request(f"[{index}].true_label is empty")
    pairs = [(item.request_id, item.true_label) for item in items]
    unknown = await anyio.to_thread.run_sync(state.log.add_feedback, pairs)
    if len(unknown) == len(items):
        raise HTTPException(status_code=404, detail=f"unknown request_id(s): {unknown[:10]}")
    return FeedbackResult(len(items) - len(unknown), unknown)


def _health(state: State) -> dict[str, Any]:
    served: ServedModel | None = state.holder.current
    return {
        "status": "ok",
        "model": served.describe() if served else None,
        "last_failed_load": state.holder.last_failure,
    }


@get(["/", "/health"], summary="Liveness and the served model")
async def health(state: State) -> dict[str, Any]:
    return _health(state)


@get("/ready", summary="503 until a verified model is loaded")
async def ready(state: State) -> Response[dict[str, Any]]:
    body = _health(state)
    status = 200 if body["model"] else HTTP_503_SERVICE_UNAVAILABLE
    return Response(body, status_code=status)


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
    log = PredictionLog(settings.predictions_path())

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await anyio.to_thread.run_sync(model_holder.refresh)
        watcher = asyncio.create_task(_watch(model_holder, settings.model_poll_s))
        try:
            yield
        finally:
            watcher.cancel()
            log.close()

    return Litestar(
        route_handlers=[health, ready, predict, predict_batch, feedback],
        state=State({"settings": settings, "holder": model_holder, "log": log}),
        lifespan=[lifespan],
        request_max_body_size=settings.max_body_bytes,
        exception_handlers={UnicodeDecodeError: _invalid_utf8},
    )


def app_from_environment() -> Litestar:
    """Factory for uvicorn (``--factory``): settings from TICKETS_* variables."""
    return create_app(get_settings())
