"""Monitoring benchmark: the monitoring endpoints on a prediction log of 1,000,000 predictions
spread over 30 days, and what they cost the predictions served at the same time.

It fills a SQLite log, publishes a model, starts the real ``tickets serve`` and measures:
``/predict`` at 16 clients alone, then the same while another client asks
``GET /monitoring/metrics?window=31d`` over and over (and once ``/monitoring/drift?window=31d``),
and ``GET /dashboard`` for each window (first, uncached call) and over and over under the same
load. Goals: the metrics answer
within 2 s; ``/predict`` p99 during them within 2x of p99 without; the dashboard (page and data,
rendered server-side in one response) within 1 s. The log is filled row by row without its hourly
rollup, as an older log would be, so opening it also times the one-off backfill.
Prints and saves benchmarks/results/monitoring.json. Run: ``.venv/bin/python -m
benchmarks.monitoring``."""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.common import save
from benchmarks.load import run_load
from benchmarks.serving import bodies_for, process, train_model
from core.data.simulate import generate_tickets
from core.io.store import open_store
from core.predlog import COLUMNS, PredictionLog, PredictionRecord
from core.release.bundle import read_champion, serialize_model, swap_champion, write_bundle
from core.release.manifest import Manifest, MlflowRef
from core.settings import Settings
from core.training.refit import reference_profile, score
from deployments.stack import free_port


def fill_log(path: Path, rows: int, days: int, labels: list[str], seed: int = 3) -> float:
    """``rows`` predictions over the last ``days`` days (a tenth with feedback); seconds taken."""
    PredictionLog(path).close()  # the schema and its indexes, as the service creates them
    rng = random.Random(seed)
    texts = generate_tickets(2000, "baseline", seed=seed)
    now = datetime.now(UTC)
    started = time.perf_counter()
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA synchronous=OFF")
    placeholders = ", ".join("?" * len(COLUMNS))
    sql = f"INSERT INTO predictions ({', '.join(COLUMNS)}) VALUES ({placeholders})"
    chunk = 50_000
    for start in range(0, rows, chunk):
        batch = []
        for i in range(start, min(rows, start + chunk)):
            ticket = texts.iloc[i % len(texts)]
            created = (now - timedelta(seconds=days * 86400 * (1 - i / rows))).isoformat(
                timespec="microseconds"
            )
            predicted = rng.choice(labels)
            truth = rng.choice(labels) if i % 10 == 0 else None
            batch.append(
                PredictionRecord(
                    request_id=f"bench-{i}",
                    model_version="1",
                    short_description=ticket.short_description,
                    close_notes=ticket.close_notes,
                    prediction=predicted,
                    confidence=rng.random(),
                    top_probabilities={predicted: 0.9},
                    true_label=truth,
                    created_at=created,
                ).row()
            )
        connection.executemany(sql, batch)
        connection.commit()
    connection.close()
    return time.perf_counter() - started


def publish_with_profile(settings: Settings, model: Any, data: pd.DataFrame) -> None:
    """The champion, with the reference profile a drift report compares against."""
    train, test = data.iloc[:2400], data.iloc[2400:]
    _, probabilities = score(model, test)
    manifest = Manifest(
        bundle_id="bench",
        family="logistic_regression",
        mlflow=MlflowRef(model_version="1"),
        reference_profile=reference_profile(model, train, test, probabilities, settings),
    )
    store = open_store(settings)
    stored = write_bundle(store, serialize_model(model), manifest)
    assert swap_champion(store, stored, read_champion(store)[1])


def timed_get(url: str) -> tuple[float, int]:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as response:  # loopback
        response.read()
        status = int(response.status)
    return time.perf_counter() - started, status


def poll(url: str, stop: threading.Event, timings: list[float], interval: float = 0.0) -> None:
    """GET `url` until stopped, `interval` seconds apart (0: back to back)."""
    while not stop.is_set():
        seconds, status = timed_get(url)
        if status != 200:
            raise RuntimeError(f"{url} answered {status}")
        timings.append(seconds)
        stop.wait(interval)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.monitoring", description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=15, help="per load phase")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument(
        "--dashboard-every",
        type=float,
        default=1.0,
        help="seconds between dashboard loads during the load phase (a wall screen refreshing "
        "every 10 s, ten of them); 0 polls back to back",
    )
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="tickets-monitoring-bench-"))
    settings = Settings(home=work / "home")
    model, data = train_model("logistic_regression", 3000)
    publish_with_profile(settings, model, data)
    labels = [str(label) for label in model.classes_]
    fill_seconds = fill_log(settings.predictions_path(), args.rows, args.days, labels)
    print(f"filled the log with {args.rows} predictions in {fill_seconds:.1f} s", flush=True)
    started = time.perf_counter()
    PredictionLog(settings.predictions_path()).close()  # the one-off hourly rollup backfill
    backfill_seconds = time.perf_counter() - started
    print(f"hourly rollup backfilled in {backfill_seconds:.1f} s", flush=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "TICKETS_HOME": str(settings.home)}
    command = [str(Path(sys.executable).parent / "tickets"), "serve", "--port", str(port)]
    bodies = bodies_for(generate_tickets(2000, "baseline", seed=8))["predict"]
    with process(command, env, f"{url}/ready", work / "serve.log"):
        first_metrics, _ = timed_get(f"{url}/monitoring/metrics?window=31d")
        # Each window's first call draws the page (queries included); later ones within
        # the monitoring lane's 10 s (serving/lane.py) reuse it, as the poller below mostly does.
        dashboard_idle = {
            window: round(timed_get(f"{url}/dashboard?window={window}")[0], 3)
            for window in ("24h", "7d", "31d")
        }
        print(f"/dashboard first call per window: {dashboard_idle}", flush=True)
        dashboard_timings: list[float] = []
        stop = threading.Event()
        poller = threading.Thread(
            target=poll,
            args=(f"{url}/dashboard?window=31d", stop, dashboard_timings, args.dashboard_every),
        )
        poller.start()
        try:
            during_dashboard = run_load(url, "/predict", bodies, args.clients, args.seconds)
        finally:
            stop.set()
            poller.join()
        print(f"/predict during dashboard: {during_dashboard.summary()}", flush=True)
        alone = run_load(url, "/predict", bodies, args.clients, args.seconds).summary()
        print(f"/predict alone: {alone}", flush=True)
        timings: list[float] = []
        stop = threading.Event()
        poller = threading.Thread(
            target=poll, args=(f"{url}/monitoring/metrics?window=31d", stop, timings)
        )
        poller.start()
        try:
            during = run_load(url, "/predict", bodies, args.clients, args.seconds).summary()
        finally:
            stop.set()
            poller.join()
        print(f"/predict during metrics: {during}", flush=True)
        drift_seconds, drift_status = timed_get(f"{url}/monitoring/drift?window=31d")
    metrics_ms = np.asarray(timings) * 1000
    result: dict[str, Any] = {
        "log_rows": args.rows,
        "window_days": args.days,
        "fill_seconds": round(fill_seconds, 1),
        "hour_rollup_backfill_s": round(backfill_seconds, 1),
        "dashboard_first_call_s": dashboard_idle,
        "dashboard_31d_during_load": {
            "every_s": args.dashboard_every,
            "calls": len(dashboard_timings),
            "p50_s": round(float(np.percentile(dashboard_timings, 50)), 3),
            "max_s": round(max(dashboard_timings), 3),
        },
        "predict_during_dashboard": during_dashboard.summary(),
        "metrics_first_call_s": round(first_metrics, 3),
        "metrics_during_load": {
            "calls": len(timings),
            "p50_s": round(float(np.percentile(metrics_ms, 50)) / 1000, 3),
            "max_s": round(float(metrics_ms.max()) / 1000, 3),
        },
        "drift_31d_s": round(drift_seconds, 3),
        "drift_status": drift_status,
        "predict_alone": alone,
        "predict_during_metrics": during,
    }
    result["targets"] = {
        "metrics_within_2s": result["metrics_during_load"]["max_s"] <= 2.0 and first_metrics <= 2.0,
        "predict_p99_ratio": round(during["p99_ms"] / alone["p99_ms"], 2),
        "predict_p99_within_2x": during["p99_ms"] <= 2 * alone["p99_ms"],
        "predict_p99_ratio_during_dashboard": round(
            during_dashboard.summary()["p99_ms"] / alone["p99_ms"], 2
        ),
        "dashboard_within_1s": max(dashboard_idle.values()) <= 1.0,
    }
    save("monitoring", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
