"""Prometheus metrics of the service (``GET /metrics``), correct with several workers.

With several workers ``tickets serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` before they start: each
worker then writes its samples to files there (prometheus-client's multiprocess mode) and
whichever worker answers ``/metrics`` sums them. With one worker (and in tests) the default
registry is used: the files cost a lock and a write per sample.
Label values are bounded: endpoints are the service's own routes ("other" for anything else),
labels are the served model's classes.
"""

from __future__ import annotations

import collections
import os
import re
import time
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path

from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric

from core.records import StoredDriftReport

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)

REQUESTS = Counter(
    "tickets_requests_total",
    "HTTP requests answered, by endpoint and status.",
    ["endpoint", "status"],
)
REQUEST_SECONDS = Histogram(
    "tickets_request_seconds",
    "Time to answer an HTTP request, by endpoint.",
    ["endpoint"],
    buckets=LATENCY_BUCKETS,
)
PREDICTIONS = Counter("tickets_predictions_total", "Predictions answered, by label.", ["label"])
CONFIDENCE = Histogram(
    "tickets_prediction_confidence",
    "Probability of the predicted label.",
    buckets=CONFIDENCE_BUCKETS,
)
MODEL_INFO = Gauge(
    "tickets_model_info",
    "1 for the model a worker serves.",
    ["version", "family"],
    multiprocess_mode="livemax",
)
LOG_COMMIT_SECONDS = Histogram(
    "tickets_log_commit_seconds",
    "Time to commit a group of prediction-log rows (durable on return).",
    buckets=LATENCY_BUCKETS,
)
QUEUE_DEPTH = Gauge(
    "tickets_batch_queue_depth",
    "Requests waiting in a micro-batcher (model or log).",
    ["batcher"],
    multiprocess_mode="livesum",
)
SHADOW = Counter(
    "tickets_shadow_tickets_total",
    "Tickets offered to the shadow challenger, by outcome (scored, dropped: queue full, "
    "skipped: the shadow went away, failed).",
    ["outcome"],
)
ROUTED = Counter(
    "tickets_routed_predictions_total",
    "Predictions by the side that answered (champion, canary, canary-fallback: the canary "
    "failed and the champion answered).",
    ["route"],
)
WATCH_FAILURES = Counter(
    "tickets_model_watch_failures_total", "Failed checks of the champion pointer or bundle."
)
EXPLAIN_REFUSED = Counter(
    "tickets_explain_refused_total",
    "Explanations refused with 503 because too many were already waiting.",
)
_LIVE_FILE = re.compile(r"^gauge_live\w+_(\d+)\.db$")


def observe_predictions(labels: Iterable[str], confidences: Iterable[float]) -> None:
    """One increment per label seen (not per prediction): a batch of 100 costs a few."""
    for label, count in collections.Counter(labels).items():
        PREDICTIONS.labels(label).inc(count)
    for confidence in confidences:
        CONFIDENCE.observe(confidence)


def set_served_model(old: tuple[str, str] | None, new: tuple[str, str]) -> None:
    """Move the info gauge from the model a worker served to the one it serves now."""
    if old is not None and old != new:
        MODEL_INFO.labels(*old).set(0)
    MODEL_INFO.labels(*new).set(1)


class MetricsMiddleware:
    """Counts and times every request by route and status (an ASGI middleware)."""

    def __init__(self, app: ASGIApp, endpoints: Iterable[str]) -> None:
        self.app = app
        self.endpoints = frozenset(endpoints)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        endpoint = path if path in self.endpoints else "other"
        status = 500
        started = time.perf_counter()

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            REQUEST_SECONDS.labels(endpoint).observe(time.perf_counter() - started)
            REQUESTS.labels(endpoint, str(status)).inc()


def exposition(latest_report: StoredDriftReport | None = None) -> tuple[bytes, str]:
    """The Prometheus text of every worker's samples (or this process's), then the latest
    monitor run's drift tests as the log's database holds them."""
    directory = os.environ.get(MULTIPROC_DIR)
    drift = generate_latest(_DriftCollector(latest_report))
    if not directory:
        return generate_latest(REGISTRY) + drift, CONTENT_TYPE_LATEST
    from prometheus_client import multiprocess

    _forget_dead_workers(Path(directory))
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)
    return generate_latest(registry) + drift, CONTENT_TYPE_LATEST


class _DriftCollector:
    """Gauges of one stored drift report: per test its statistic, threshold and whether it
    fired; the overall verdict, score and when it was checked. A registry of its own (it is read
    from the database, not from any worker's samples)."""

    def __init__(self, report: StoredDriftReport | None) -> None:
        self.report = report

    def collect(self) -> Iterator[Metric]:
        report = self.report
        if report is None:
            return
        statistic = GaugeMetricFamily(
            "tickets_drift_test_statistic",
            "Latest drift report: each test's statistic.",
            labels=["test"],
        )
        threshold = GaugeMetricFamily(
            "tickets_drift_test_threshold",
            "Latest drift report: each test's threshold.",
            labels=["test"],
        )
        fired = GaugeMetricFamily(
            "tickets_drift_test_fired",
            "Latest drift report: 1 where the test fired.",
            labels=["test"],
        )
        for test in report.report.tests:
            if test.statistic is not None:
                statistic.add_metric([test.name], test.statistic)
            threshold.add_metric([test.name], test.threshold)
            fired.add_metric([test.name], 1.0 if test.fired else 0.0)
        yield statistic
        yield threshold
        yield fired
        yield GaugeMetricFamily(
            "tickets_drift_detected",
            "Latest drift report: 1 if drift was detected.",
            value=1.0 if report.drift_detected else 0.0,
        )
        yield GaugeMetricFamily(
            "tickets_drift_score",
            "Latest drift report: share of tests that fired.",
            value=report.drift_score,
        )
        estimate = report.report.estimated
        if estimate:
            estimated = GaugeMetricFamily(
                "tickets_estimated_performance",
                "Latest drift report: accuracy and macro-F1 estimated without labels.",
                labels=["estimator", "metric", "bound"],
            )
            for name in ("cbpe", "atc"):
                for metric in ("accuracy", "macro_f1"):
                    low, high = estimate[name][f"{metric}_interval"]
                    estimated.add_metric([name, metric, "estimate"], estimate[name][metric])
                    estimated.add_metric([name, metric, "low"], low)
                    estimated.add_metric([name, metric, "high"], high)
            yield estimated
            yield GaugeMetricFamily(
                "tickets_estimated_macro_f1",
                "Latest drift report: macro-F1 estimated without labels (default estimator).",
                value=estimate[estimate["default"]]["macro_f1"],
            )
        checked = datetime.fromisoformat(report.checked_at)
        yield GaugeMetricFamily(
            "tickets_drift_checked_timestamp_seconds",
            "When the latest drift report was made (Unix time).",
            value=checked.timestamp(),
        )


def _forget_dead_workers(directory: Path) -> None:
    """A worker killed without notice leaves its live gauges behind (uvicorn restarts it under a
    new pid); drop the files of processes that no longer exist."""
    from prometheus_client import multiprocess

    for path in directory.glob("gauge_live*_*.db"):
        found = _LIVE_FILE.match(path.name)
        if found and not _alive(int(found.group(1))):
            multiprocess.mark_process_dead(int(found.group(1)), str(directory))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
