"""The prediction service, built by ``create_app(settings)``: state, lifespan, the handlers of
each concern (serving/predict.py, health.py, monitoring.py, webhooks.py, dashboard.py) and the
error mapping (serving/errors.py), registered once here. Never imports Prefect."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
from litestar import Litestar
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig

from core.auth.local_secrets import local_secret
from core.io.store import open_store
from core.predlog import PredictionLog, PredictionRecord, open_prediction_log
from core.settings import Settings, get_settings
from serving import label_page, labeling, metrics, monitoring, webhooks
from serving.batcher import MicroBatcher
from serving.dashboard import dashboard
from serving.docs import docs_assets, offline_swagger_ui
from serving.errors import EXCEPTION_HANDLERS
from serving.explain import explain_ticket
from serving.fast_path import fast_predict, wants_fast_path
from serving.health import health, livez, prometheus_metrics, ready
from serving.lane import ExplainProcess, MonitoringLane
from serving.model_holder import ModelHolder, ServedModel
from serving.predict import (
    classify_canary_rows,
    classify_rows,
    feedback,
    predict,
    predict_batch,
    take_back_feedback,
)
from serving.rollout import ShadowScorer
from serving.state import LogProbe, ServiceState

logger = logging.getLogger("tickets.serving")


async def watch_champion(
    holder: ModelHolder, on_new: Callable[[ServedModel], None] | None = None
) -> None:
    """Check the champion pointer forever; ``on_new`` hears of each champion it loads.
    ``refresh`` counts its own failures and never raises; the guard below is for anything
    else, so that this loop cannot end while the service runs."""
    while True:
        await asyncio.sleep(holder.next_delay())
        try:
            before = holder.current
            await anyio.to_thread.run_sync(holder.refresh)
            if on_new is not None and holder.current is not None and holder.current is not before:
                on_new(holder.current)
        except Exception:
            logger.exception("the champion watch failed; it goes on")


def routing_secret(settings: Settings) -> bytes:
    """The canary split's HMAC key: ``TICKETS_CANARY_KEY`` (every worker of every machine
    must share it, or a client's side depends on the worker), else one kept under ``home``."""
    configured = settings.canary_key.get_secret_value() if settings.canary_key else None
    return local_secret(settings.home, "canary.key", "TICKETS_CANARY_KEY", configured).encode()


def model_batchers(settings: Settings, holder: ModelHolder) -> tuple[MicroBatcher, MicroBatcher]:
    """The champion's and the canary's micro-batchers: a model that runs the sentence encoder
    scores its batches off the event loop, a TF-IDF model inline."""
    model_batcher = MicroBatcher(
        functools.partial(classify_rows, holder, settings.serving.top_k),
        settings.serving.micro_batch_max,
        settings.serving.micro_batch_wait_ms / 1000,
        on_depth=metrics.QUEUE_DEPTH.labels("model").set,
        name="model",
        inline=lambda: not (holder.current is not None and holder.current.embeds),
    )
    canary_batcher = MicroBatcher(
        functools.partial(classify_canary_rows, holder, settings.serving.top_k),
        settings.serving.micro_batch_max,
        settings.serving.micro_batch_wait_ms / 1000,
        on_depth=metrics.QUEUE_DEPTH.labels("canary").set,
        name="canary",
        inline=lambda: not (holder.challenger is not None and holder.challenger.embeds),
    )
    return model_batcher, canary_batcher


def route_handlers(settings: Settings) -> list[Any]:
    """The probes, plus the API, the webhooks or both (``serve_routes``)."""
    probes = [health, livez, ready, prometheus_metrics]
    hooks = [webhooks.retrain_webhook, webhooks.tickets_webhook]
    handlers = [
        predict,
        predict_batch,
        explain_ticket,
        feedback,
        take_back_feedback,
        dashboard,
        *label_page.HANDLERS,
        monitoring.metrics,
        monitoring.save_metrics,
        monitoring.saved_metrics,
        monitoring.drift,
        monitoring.shadow,
        labeling.labeling_queue,
    ]
    chosen = {"all": handlers + hooks, "api": handlers, "webhooks": hooks}
    return probes + chosen[settings.serving.serve_routes]


def service_parts(settings: Settings, holder: ModelHolder | None) -> dict[str, Any]:
    """What the handlers share (``ServiceState``): the model, the log, the batchers, the shadow,
    the monitoring lane and the explanations' process."""
    model_holder = holder or ModelHolder(
        open_store(settings),
        settings.serving.model_poll_s,
        settings.serving.model_watch_max_backoff_s,
    )
    log = open_prediction_log(settings)
    model_batcher, canary_batcher = model_batchers(settings, model_holder)
    return {
        "settings": settings,
        "holder": model_holder,
        "log": log,
        "log_probe": LogProbe(log, settings.serving.ready_cache_s),
        "model_batcher": model_batcher,
        "canary_batcher": canary_batcher,
        "shadow": ShadowScorer(
            model_holder,
            log,
            settings.rollout.shadow_queue,
            settings if settings.rollout.shadow_isolation == "process" else None,
        ),
        "log_batcher": MicroBatcher(
            _writer(log),
            max_items=10 * settings.serving.max_batch,
            max_wait_s=0.0,
            on_depth=metrics.QUEUE_DEPTH.labels("log").set,
            name="log",
        ),
        "monitoring_lane": MonitoringLane(
            settings.serving.monitoring_threads,
            settings.serving.monitoring_queue,
            settings.serving.monitoring_cache_s,
            processes=settings.serving.monitoring_isolation == "process",
        ),
        "explain_process": ExplainProcess(),
        "routing_secret": routing_secret(settings),
    }


def service_lifespan(
    parts: dict[str, Any], warm_monitoring: bool
) -> Callable[[Litestar], contextlib.AbstractAsyncContextManager[None]]:
    """Start-up (the helper processes warmed in a server, the champion loaded, then watched)
    and shut-down (everything stopped, the log closed last)."""
    settings: Settings = parts["settings"]
    holder: ModelHolder = parts["holder"]

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        preload = None
        if warm_monitoring:
            parts["monitoring_lane"].warm()
            if settings.serving.explain_isolation == "process":
                # The explanations' process loads each new champion as it is served, not
                # when the first agent asks why.
                preload = functools.partial(parts["explain_process"].preload, settings)
        await anyio.to_thread.run_sync(holder.refresh)
        if preload is not None and holder.current is not None:
            preload(holder.current)
        watcher = asyncio.create_task(watch_champion(holder, preload))
        try:
            yield
        finally:
            watcher.cancel()
            for name in ("monitoring_lane", "explain_process", "shadow"):
                parts[name].close()
            for name in ("model_batcher", "canary_batcher", "log_batcher"):
                await parts[name].stop()
            parts["log"].close()

    return lifespan


def create_app(
    settings: Settings, holder: ModelHolder | None = None, warm_monitoring: bool = False
) -> TicketsApp:
    """The service for ``settings``; the champion is loaded at start-up and watched after. An
    unreachable store or a bad pointer at start-up leaves the service up but not ready."""
    parts = service_parts(settings, holder)
    handlers = route_handlers(settings)
    endpoints = {path for handler in handlers for path in handler.paths}
    app = TicketsApp(
        route_handlers=[*handlers, docs_assets()],
        state=ServiceState(parts),
        lifespan=[service_lifespan(parts, warm_monitoring)],
        middleware=[DefineMiddleware(metrics.MetricsMiddleware, endpoints=sorted(endpoints))],
        request_max_body_size=settings.serving.max_body_bytes,
        exception_handlers=EXCEPTION_HANDLERS,
        openapi_config=OpenAPIConfig(
            title="Ticket classifier",
            version="1",
            description="Classifies Spanish help-desk tickets; logs every prediction.",
            path="/schema",
            render_plugins=[offline_swagger_ui()],
        ),
    )
    app.fast_path = "/predict" in endpoints  # a webhooks-only process answers no prediction
    return app


class TicketsApp(Litestar):
    """Litestar, with well-formed predictions answered on a fast path (serving/fast_path.py);
    everything else, and every refusal, takes Litestar's own way."""

    #: Off: every request takes Litestar's way (the tests compare the two).
    fast_path = True

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.fast_path and wants_fast_path(scope):
            await fast_predict(scope, receive, send, self.state, super().__call__)  # type: ignore[arg-type]
            return
        await super().__call__(scope, receive, send)


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
    """Factory for the HTTP server (serving/launch.py): settings from TICKETS_* variables; the
    monitoring lane's process starts with the worker, at its lower priority."""
    return create_app(get_settings(), warm_monitoring=True)
