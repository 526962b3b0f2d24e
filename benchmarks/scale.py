"""How cost grows: the train flow's wall time at 5,000, 20,000 and 80,000 demo tickets on the thread
runner and on the Dask runner with a local cluster of one and of two worker processes, and the
drift report's time at 10k, 100k and 1M predictions. Prints and saves
benchmarks/results/scale.json. Run: ``make benchmark-scale`` (or
``.venv/bin/python -m benchmarks.scale``).

Every training is the real flow (inside Prefect's test harness: a local server) with the same
budget: one study of the linear SVM, ``--trials`` trials, three folds, no label audit; only where
it runs changes. On two Dask workers the study runs as two trial loops against a shared journal
storage (TICKETS_WORKERS_PER_STUDY=2). A Dask run includes starting its cluster."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from benchmarks.common import RESULTS, save
from core.data.simulate import generate_tickets
from core.setting_groups import ScaleSettings
from core.settings import Settings

RUNNERS: dict[str, dict[str, Any]] = {
    "threads": {"task_runner": "threads"},
    "dask, 1 worker": {"task_runner": "dask", "dask_workers": 1},
    "dask, 2 workers, 2 loops per study": {
        "task_runner": "dask",
        "dask_workers": 2,
        "workers_per_study": 2,
    },
}


def train_seconds(rows: int, runner: dict[str, Any], trials: int, folder: Path) -> dict:
    from flows.train import train

    data = folder / f"tickets-{rows}.csv"
    if not data.exists():
        generate_tickets(rows, "baseline", seed=3).to_csv(data, index=False)
    home = folder / f"home-{rows}-{runner['task_runner']}-{runner.get('dask_workers', 0)}"
    if runner.get("workers_per_study", 1) > 1:
        runner = {**runner, "optuna_storage": f"journal:{home / 'optuna.log'}"}
    settings = Settings(
        home=home,
        families=("linear_svm",),
        trials=trials,
        timeout_s=3600,
        cv_folds=3,
        label_audit=False,
        scale=ScaleSettings(**runner),
    )
    started = time.perf_counter()
    summary = train(settings=settings, data_path=str(data))
    return {
        "seconds": round(time.perf_counter() - started, 1),
        "test_macro_f1": round(summary.test_macro_f1, 4),
        "winner": summary.champion_family,
    }


def drift_seconds(sizes: list[int]) -> dict[str, float]:
    """The drift report over windows of ``sizes`` predictions in memory (benchmarks/drift.py
    has the full comparison, from the log and against Evidently)."""
    from benchmarks.drift import _pool, _timed, reference_model, window
    from core.monitoring.drift import drift_report

    settings = Settings(monitoring_max_rows=max(sizes))
    model, profile, f1, _ = reference_model(settings)
    pool = _pool(window(model, generate_tickets(20_000, "baseline", seed=9), 0.2), max(sizes))
    timings = {}
    for size in sizes:
        rows = pool.tail(size).reset_index(drop=True)
        seconds, _ = _timed(lambda r=rows: drift_report(r, profile, f1, settings))
        timings[str(size)] = round(seconds, 3)
        print(f"drift, {size} predictions: {seconds:.2f} s", flush=True)
    return timings


def _merged(path: Path, update: dict[str, Any]) -> dict[str, Any]:
    """Earlier results (other table sizes, measured in another run) with ``update`` on top."""
    if not path.exists():
        return update
    earlier = json.loads(path.read_text())
    training = {**earlier.get("training_seconds", {}), **update.get("training_seconds", {})}
    when = {**earlier.get("measured_when", {}), **update.get("measured_when", {})}
    kept = {k: v for k, v in earlier.items() if k not in ("benchmark", "when", "machine")}
    return {**kept, **update, "training_seconds": training, "measured_when": when}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.scale", description=__doc__)
    parser.add_argument("--rows", default="5000,20000,80000")
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument(
        "--merge", action="store_true", help="keep the other sizes of the saved results"
    )
    args = parser.parse_args(argv)
    from prefect.testing.utilities import prefect_test_harness

    training: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as folder, prefect_test_harness(server_startup_timeout=90):
        for rows in (int(r) for r in args.rows.split(",")):
            training[str(rows)] = {}
            for name, runner in RUNNERS.items():
                result = train_seconds(rows, runner, args.trials, Path(folder))
                training[str(rows)][name] = result
                print(f"{rows} tickets, {name}: {result}", flush=True)
    drift = drift_seconds([10_000, 100_000, 1_000_000])
    now = datetime.now(UTC).isoformat(timespec="minutes")
    payload: dict[str, Any] = {
        "families": ["linear_svm"],
        "trials_per_family": args.trials,
        "training_seconds": training,
        "measured_when": {rows: now for rows in training},
        "drift_report_seconds_in_memory": drift,
    }
    if args.merge:
        payload = _merged(RESULTS / "scale.json", payload)
    save("scale", payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
