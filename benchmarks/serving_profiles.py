"""What each feature profile costs the service, side by side in one run on the same tickets.

Three logistic-regression pipelines are trained on the same 5,000 demo tickets: TF-IDF alone,
the standard profile's richest configuration (+ the static token table) and the accurate
profile's (+ the sentence encoder, weight 2). Each is published in turn and served by
``tickets serve`` (1 worker); /predict is driven at 16 concurrent keep-alive clients and
/predict/batch (100 tickets a request) at 4, by benchmarks/load.py on the same two cores. Every
connection walks its own stretch of distinct tickets, so the encoder's cache of repeated texts
does not flatter it. Also: in-process milliseconds a ticket, alone and in batches of 64.
Prints and saves benchmarks/results/serving_profiles.json.
Run: ``.venv/bin/python -m benchmarks.serving_profiles``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import save
from benchmarks.load import run_load
from benchmarks.quality import serving_cost
from benchmarks.serving import BIN, TEXT, process, publish
from core.data.simulate import generate_tickets
from core.settings import Settings
from core.training.families import build_pipeline, default_params
from tests.integration.conftest import free_port

PROFILES = {
    "tfidf": {"embedding_weight": 0.0, "encoder_weight": 0.0},
    "standard (+ token table)": {"embedding_weight": 1.0, "encoder_weight": 0.0},
    "accurate (+ encoder)": {"embedding_weight": 0.0, "encoder_weight": 2.0},
}
TARGET_P99_MS = 50.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.serving_profiles", description=__doc__)
    parser.add_argument("--rows", type=int, default=5000, help="training tickets")
    parser.add_argument("--seconds", type=float, default=15, help="per load phase")
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args(argv)
    data = generate_tickets(args.rows, "baseline", seed=1)
    tickets = generate_tickets(12_000, "baseline", seed=2).drop_duplicates(TEXT)
    records = tickets[TEXT].to_dict("records")
    single = [json.dumps(r).encode() for r in records]
    batches = [
        json.dumps({"tickets": records[i : i + 100]}).encode()
        for i in range(0, len(records) - 99, 100)
    ]
    results: dict[str, Any] = {}
    for name, blocks in PROFILES.items():
        home = Path(tempfile.mkdtemp(prefix="tickets-profiles-"))
        params = {**default_params("logistic_regression"), **blocks}
        model = build_pipeline("logistic_regression", params, "spanish", seed=0)
        started = time.perf_counter()
        model.fit(data[TEXT], data["label"].to_numpy(dtype=object))
        row: dict[str, Any] = {"fit_seconds": round(time.perf_counter() - started, 1)}
        row.update(serving_cost(model, tickets.tail(400), tickets=64))
        publish(Settings(home=home), model)
        env = {
            **os.environ,
            "TICKETS_HOME": str(home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        serve = [str(BIN / "tickets"), "serve", "--host", "127.0.0.1", "--port", str(port)]
        with process([*serve, "--workers", "1"], env, f"{url}/ready", home / "serve.log"):
            run_load(url, "/predict", single[-200:], args.clients, 2)
            stride = (len(single) - 200) // args.clients
            row["predict"] = run_load(
                url, "/predict", single[:-200], args.clients, args.seconds, stride
            ).summary()
            row["predict_batch_100"] = run_load(
                url, "/predict/batch", batches, 4, args.seconds, len(batches) // 4
            ).summary(items_per_request=100)
        row["predict_p99_within_50ms"] = row["predict"]["p99_ms"] <= TARGET_P99_MS
        results[name] = row
        print(f"{name}: {row}", flush=True)
    save(
        "serving_profiles",
        {
            "profiles": results,
            "setup": {
                "family": "logistic_regression",
                "training_rows": args.rows,
                "clients": args.clients,
                "seconds_per_phase": args.seconds,
                "workers": 1,
                "load_generator": "benchmarks/load.py (asyncio keep-alive, same machine)",
            },
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
