"""Serving benchmark on one trained model: in-process throughput (batches of 100), the service's
/predict latency and throughput at 16 concurrent clients (1 worker), the same with a shadow
challenger scoring every ticket, /explain at 16 clients, its /predict/batch throughput with 2
workers, and ``mlflow models serve`` on the same model as the peer. Prints and saves
benchmarks/results/serving.json. Run: ``.venv/bin/python -m benchmarks.serving``."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.common import save
from benchmarks.load import run_load
from core.data.simulate import generate_tickets
from core.io.store import open_store
from core.release.bundle import read_champion, serialize_model, swap_champion, write_bundle
from core.release.manifest import Manifest
from core.release.rollout import start_challenger, stop_challenger
from core.settings import Settings
from core.training.families import build_pipeline, default_params
from deployments.stack import wait_until
from tests.integration.conftest import free_port

TEXT = ["short_description", "close_notes"]
BIN = Path(sys.executable).parent
TARGET_P99_MS = 20.0
TARGET_BATCH_SHARE = 0.5
TARGET_PEER_RATIO = 3.0
TARGET_SHADOW_P99_RATIO = 1.3
TARGET_EXPLAIN_P99_MS = 50.0


def train_model(
    family: str, rows: int, embedding_weight: float = 0.0, seed: int = 1
) -> tuple[Any, pd.DataFrame]:
    data = generate_tickets(rows, "baseline", seed=seed)
    params = {**default_params(family), "embedding_weight": embedding_weight}
    model = build_pipeline(family, params, "spanish", seed=0)
    model.fit(data[TEXT], data["label"].to_numpy(dtype=object))
    return model, data


def publish(
    settings: Settings, model: Any, bundle_id: str = "bench", champion: bool = True
) -> None:
    store = open_store(settings)
    manifest = write_bundle(
        store, serialize_model(model), Manifest(bundle_id=bundle_id, family="bench")
    )
    if champion:
        _, token = read_champion(store)
        swap_champion(store, manifest, token)


def shadow_loaded(url: str) -> bool:
    import urllib.request

    with urllib.request.urlopen(f"{url}/health", timeout=5) as response:  # loopback
        challenger = json.loads(response.read())["challenger"]
    return bool(challenger and challenger["model"] and challenger.get("mode") == "shadow")


def in_process(model: Any, tickets: pd.DataFrame) -> dict[str, float]:
    """Tickets per second through predict_proba in batches of 100, and one ticket's latency."""
    model.predict_proba(tickets[TEXT].head(100))
    started = time.perf_counter()
    for start in range(0, len(tickets), 100):
        model.predict_proba(tickets[TEXT].iloc[start : start + 100])
    batch_rate = len(tickets) / (time.perf_counter() - started)
    singles = []
    for i in range(200):
        one = time.perf_counter()
        model.predict_proba(tickets[TEXT].iloc[i : i + 1])
        singles.append((time.perf_counter() - one) * 1000)
    return {
        "batch100_tickets_per_s": round(batch_rate, 1),
        "single_p50_ms": round(float(np.median(singles)), 3),
    }


@contextlib.contextmanager
def process(command: list[str], env: dict[str, str], ready_url: str, log: Path) -> Iterator[None]:
    with log.open("wb") as output:
        child = subprocess.Popen(
            command, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            wait_until(f"{command[0]} at {ready_url}", lambda: _up(ready_url, child, log), 180)
            yield
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGTERM)
            child.wait(timeout=30)


def _up(url: str, child: subprocess.Popen[bytes], log: Path) -> bool:
    if child.poll() is not None:
        raise RuntimeError(f"exited with {child.returncode}: {log.read_text()[-2000:]}")
    import urllib.request

    with urllib.request.urlopen(url, timeout=2) as response:  # loopback
        return int(response.status) == 200


def log_mlflow_model(model: Any, home: Path, example: pd.DataFrame) -> tuple[str, str]:
    import mlflow
    import mlflow.sklearn

    from core.release.bundle import ALLOWED_TYPES

    tracking = f"sqlite:///{home / 'mlflow.db'}"
    mlflow.set_tracking_uri(tracking)
    experiment = mlflow.create_experiment("bench", artifact_location=(home / "mlruns").as_uri())
    with mlflow.start_run(experiment_id=experiment):
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            serialization_format="skops",
            skops_trusted_types=sorted(ALLOWED_TYPES),
            input_example=example,
        )
    return tracking, str(info.model_uri)


def shadow_counts(url: str) -> dict[str, float]:
    """The shadow's outcomes from the service's own counters (scored, dropped, failed)."""
    import urllib.request

    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:  # loopback
        text = response.read().decode()
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("tickets_shadow_tickets_total{"):
            outcome = line.split('outcome="')[1].split('"')[0]
            counts[outcome] = float(line.rsplit(" ", 1)[1])
    return counts


def bodies_for(tickets: pd.DataFrame) -> dict[str, list[bytes]]:
    records = tickets[TEXT].to_dict("records")
    return {
        "predict": [json.dumps(r).encode() for r in records],
        "batch": [
            json.dumps({"tickets": records[i : i + 100]}).encode()
            for i in range(0, len(records) - 99, 100)
        ],
        "mlflow": [json.dumps({"dataframe_records": [r]}).encode() for r in records],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.serving", description=__doc__)
    parser.add_argument("--family", default="logistic_regression")
    parser.add_argument("--rows", type=int, default=5000, help="training tickets")
    parser.add_argument("--seconds", type=float, default=15, help="per load phase")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument(
        "--embedding-weight",
        type=float,
        default=0.0,
        help="add the static token-embedding block (linear families); saves serving_embedding.json",
    )
    args = parser.parse_args(argv)
    home = Path(tempfile.mkdtemp(prefix="tickets-bench-"))
    settings = Settings(home=home)
    model, data = train_model(args.family, args.rows, args.embedding_weight)
    publish(settings, model)
    challenger, _ = train_model(args.family, args.rows // 2, args.embedding_weight, seed=3)
    publish(settings, challenger, "bench-challenger", champion=False)
    tickets = generate_tickets(2000, "baseline", seed=2)
    local = in_process(model, tickets)
    print(f"in-process: {local}", flush=True)
    bodies = bodies_for(tickets)
    env = {
        **os.environ,
        "TICKETS_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    results: dict[str, Any] = {"in_process": local}

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    serve = [str(BIN / "tickets"), "serve", "--host", "127.0.0.1", "--port", str(port)]
    with process([*serve, "--workers", "1"], env, f"{url}/ready", home / "serve1.log"):
        run_load(url, "/predict", bodies["predict"], args.clients, 2)
        results["service_predict_1_worker"] = run_load(
            url, "/predict", bodies["predict"], args.clients, args.seconds
        ).summary()
        print(f"service /predict: {results['service_predict_1_worker']}", flush=True)
        run_load(url, "/explain", bodies["predict"], args.clients, 2)
        results["service_explain_1_worker"] = run_load(
            url, "/explain", bodies["predict"], args.clients, args.seconds
        ).summary()
        print(f"service /explain: {results['service_explain_1_worker']}", flush=True)
        start_challenger(open_store(settings), "bench-challenger", "shadow")
        wait_until("the shadow loaded", lambda: shadow_loaded(url), 60)
        run_load(url, "/predict", bodies["predict"], args.clients, 2)
        results["service_predict_1_worker_with_shadow"] = run_load(
            url, "/predict", bodies["predict"], args.clients, args.seconds
        ).summary()
        results["shadow_scored"] = shadow_counts(url)
        stop_challenger(open_store(settings), "benchmark done")
        print(f"service /predict with a shadow: {results['service_predict_1_worker_with_shadow']}")
    with process([*serve, "--workers", "2"], env, f"{url}/ready", home / "serve2.log"):
        time.sleep(3)
        run_load(url, "/predict", bodies["predict"], args.clients, 2)
        results["service_predict_2_workers"] = run_load(
            url, "/predict", bodies["predict"], args.clients, args.seconds
        ).summary()
        run_load(url, "/predict/batch", bodies["batch"], 4, 2)
        results["service_batch_2_workers"] = run_load(
            url, "/predict/batch", bodies["batch"], 4, args.seconds
        ).summary(items_per_request=100)
    print(f"service /predict/batch: {results['service_batch_2_workers']}", flush=True)

    tracking, model_uri = log_mlflow_model(model, home, data[TEXT].head(2))
    mlflow_port = free_port()
    mlflow_url = f"http://127.0.0.1:{mlflow_port}"
    peer = [str(BIN / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager", "local"]
    peer += ["--host", "127.0.0.1", "-p", str(mlflow_port)]
    with process(
        peer, {**env, "MLFLOW_TRACKING_URI": tracking}, f"{mlflow_url}/ping", home / "mlflow.log"
    ):
        run_load(mlflow_url, "/invocations", bodies["mlflow"], args.clients, 2)
        results["mlflow_serve_predict"] = run_load(
            mlflow_url, "/invocations", bodies["mlflow"], args.clients, args.seconds
        ).summary()
    print(f"mlflow models serve: {results['mlflow_serve_predict']}", flush=True)

    ours = results["service_predict_1_worker"]
    batch = results["service_batch_2_workers"]
    peer_rate = results["mlflow_serve_predict"]["requests_per_s"]
    shadowed = results["service_predict_1_worker_with_shadow"]
    explained = results["service_explain_1_worker"]
    results["targets"] = {
        "shadow_p99_ratio": {
            "value": round(shadowed["p99_ms"] / ours["p99_ms"], 2),
            "target": TARGET_SHADOW_P99_RATIO,
            "met": shadowed["p99_ms"] <= TARGET_SHADOW_P99_RATIO * ours["p99_ms"],
        },
        "explain_p99_ms": {
            "value": explained["p99_ms"],
            "target": TARGET_EXPLAIN_P99_MS,
            "met": explained["p99_ms"] < TARGET_EXPLAIN_P99_MS,
        },
        "predict_p99_ms": {
            "value": ours["p99_ms"],
            "target": TARGET_P99_MS,
            "met": ours["p99_ms"] <= TARGET_P99_MS,
        },
        "batch_share_of_in_process": {
            "value": round(batch["items_per_s"] / local["batch100_tickets_per_s"], 3),
            "target": TARGET_BATCH_SHARE,
            "met": batch["items_per_s"] >= TARGET_BATCH_SHARE * local["batch100_tickets_per_s"],
        },
        "single_vs_mlflow": {
            "value": round(ours["requests_per_s"] / peer_rate, 2) if peer_rate else None,
            "target": TARGET_PEER_RATIO,
            "met": bool(peer_rate) and ours["requests_per_s"] >= TARGET_PEER_RATIO * peer_rate,
        },
    }
    results["setup"] = {
        "family": args.family,
        "embedding_weight": args.embedding_weight,
        "training_rows": args.rows,
        "clients": args.clients,
        "seconds_per_phase": args.seconds,
        "load_generator": "benchmarks/load.py (asyncio keep-alive, same machine)",
    }
    save("serving_embedding" if args.embedding_weight else "serving", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
