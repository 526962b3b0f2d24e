"""The prediction service, built by ``create_app(settings)``. Never imports Prefect."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import numpy as np
from litestar import Litestar, Request, Response, get, post
from litestar.exceptions import HTTPException
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.router import Router
from litestar.static_files import create_static_files_router
from litestar.status_codes import HTTP_503_SERVICE_UNAVAILABLE

from core.errors import LogUnavailableError
from core.io.store import open_store
from core.predlog import PredictionLog, PredictionRecord, open_prediction_log
from core.settings import Settings, get_settings
from serving import metrics, monitoring, webhooks
from serving.batcher import MicroBatcher
from serving.dashboard import PageCache, dashboard
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
from serving.security import is_admin, label_guard, require_label_key
from serving.state import RETRY_AFTER_S, LogProbe, ServiceState, require_model
from serving.validation import require_label, require_text

logger = logging.getLogger("tickets.serving")


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
    tickets = validate_tickets([data], state.settings.max_text_chars)
    _check_labels(request, state, tickets)
    return (await _predict(state, tickets))[0]


@post("/predict/batch", status_code=200, summary="Classify up to max_batch tickets, in order")
async def predict_batch(
    data: TicketBatch, state: ServiceState, request: Request[Any, Any, Any]
) -> BatchPrediction:
    settings = state.settings
    if not data.tickets:
        raise bad_request("tickets is empty")
    if len(data.tickets) > settings.max_batch:
        raise bad_request(
            f"tickets has {len(data.tickets)} items; the maximum is {settings.max_batch}"
        )
    tickets = validate_tickets(data.tickets, settings.max_text_chars, "tickets")
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
    limit = state.settings.max_text_chars
    pairs = [
        (
            require_text(item.request_id, f"[{index}].request_id", limit),
            require_label(item.true_label, f"[{index}].true_label"),
        )
        for index, item in enumerate(items)
    ]
    unknown = await anyio.to_thread.run_sync(state.log.add_feedback, pairs)
    if len(unknown) == len(items):
        raise HTTPException(status_code=404, detail=f"unknown request_id(s): {unknown[:10]}")
    return FeedbackResult(len(items) - len(unknown), unknown)


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
        "prediction_log": {"writable": log_error is None, "error_kind": log_error},
    }
    if admin:
        body["model_watch"] |= {
            "last_error": watch.last_error,
            "failed_bundle_id": watch.failed_bundle_id,
            "store": state.settings.artifact_store_url(),
        }
    return body


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


def _invalid_utf8(request: Request[Any, Any, Any], exc: UnicodeDecodeError) -> Response[Any]:
    return Response(
        {"status_code": 400, "detail": "request body is not valid UTF-8"}, status_code=400
    )


def _log_unavailable(request: Request[Any, Any, Any], exc: LogUnavailableError) -> Response[Any]:
    logger.warning("prediction log unavailable: %s", exc)
    return Response(
        {"status_code": 503, "detail": "the prediction log is unavailable; retry later"},
        status_code=HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


async def watch_champion(holder: ModelHolder) -> None:
    """Check the champion pointer forever. ``refresh`` counts its own failures and never raises;
    the guard below is for anything else, so that this loop cannot end while the service runs."""
    while True:
        await asyncio.sleep(holder.next_delay())
        try:
            await anyio.to_thread.run_sync(holder.refresh)
        except Exception:
            logger.exception("the champion watch failed; it goes on")


#: Where the service serves Swagger UI's files (from the swagger-ui-py package): the API
#: docs work on networks that block public CDNs, and no request leaves the origin.
DOCS_ASSETS = "/schema/assets"


def offline_swagger_ui() -> SwaggerRenderPlugin:
    return SwaggerRenderPlugin(
        js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
        css_url=f"{DOCS_ASSETS}/swagger-ui.css",
        standalone_preset_js_url=f"{DOCS_ASSETS}/swagger-ui-standalone-preset.js",
        favicon=f"<link rel='icon' type='image/png' href='{DOCS_ASSETS}/favicon-32x32.png'>",
        path="/",
    )


def docs_assets() -> Router:
    """Swagger UI 5 (OpenAPI 3.1, which Litestar writes) as the swagger-ui-py wheel ships it,
    with its Apache-2.0 licence at ``/schema/assets/LICENSE``."""
    from importlib import resources

    static = Path(str(resources.files("swagger_ui") / "static"))
    return create_static_files_router(
        path=DOCS_ASSETS, directories=[static], include_in_schema=False
    )


def create_app(settings: Settings, holder: ModelHolder | None = None) -> Litestar:
    """The service for ``settings``; the champion is loaded at start-up and watched after. An
    unreachable store or a bad pointer at start-up leaves the service up but not ready."""
    model_holder = holder or ModelHolder(
        open_store(settings), settings.model_poll_s, settings.model_watch_max_backoff_s
    )
    log = open_prediction_log(settings)
    model_batcher = MicroBatcher(
        functools.partial(classify_rows, model_holder, settings.top_k),
        settings.micro_batch_max,
        settings.micro_batch_wait_ms / 1000,
        on_depth=metrics.QUEUE_DEPTH.labels("model").set,
    )
    log_batcher = MicroBatcher(
        _writer(log),
        max_items=10 * settings.max_batch,
        max_wait_s=0.0,
        on_depth=metrics.QUEUE_DEPTH.labels("log").set,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await anyio.to_thread.run_sync(model_holder.refresh)
        watcher = asyncio.create_task(watch_champion(model_holder))
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
        "log_probe": LogProbe(log, settings.ready_cache_s),
        "model_batcher": model_batcher,
        "log_batcher": log_batcher,
        "dashboard_pages": PageCache(),
    }
    handlers = [
        health,
        ready,
        predict,
        predict_batch,
        feedback,
        prometheus_metrics,
        dashboard,
        monitoring.metrics,
        monitoring.save_metrics,
        monitoring.saved_metrics,
        monitoring.drift,
        webhooks.retrain_webhook,
        webhooks.tickets_webhook,
    ]
    endpoints = {path for handler in handlers for path in handler.paths}
    return Litestar(
        route_handlers=[*handlers, docs_assets()],
        state=ServiceState(state),
        lifespan=[lifespan],
        middleware=[DefineMiddleware(metrics.MetricsMiddleware, endpoints=sorted(endpoints))],
        request_max_body_size=settings.max_body_bytes,
        exception_handlers={
            UnicodeDecodeError: _invalid_utf8,
            LogUnavailableError: _log_unavailable,
        },
        openapi_config=OpenAPIConfig(
            title="Ticket classifier",
            version="1",
            description="Classifies Spanish help-desk tickets; logs every prediction.",
            path="/schema",
            render_plugins=[offline_swagger_ui()],
        ),
    )


def _writer(log: PredictionLog) -> Callable[[list[PredictionRecord]], list[Exception | None]]:
    """The log's group commit: one transaction for the batch; a row the database refuses fails
    only its own request."""

    def write(records: list[PredictionRecord]) -> list[Exception | None]:
        started = time.perf_counter()
        try:
            return log.record_each(records)
        finally:
            metrics.LOG_COMMIT_SECONDS.observe(time.perf_counter() - started)

    return write


def app_from_environment() -> Litestar:
    """Factory for uvicorn (``--factory``): settings from TICKETS_* variables."""
    return create_app(get_settings())
