"""Drift benchmark: how long one drift report takes for 10k, 100k and 1M predictions, in memory and
read from the SQLite prediction log (as the monitor flow and the service read it); Evidently's
data-drift preset on the same rows, in its own environment, in the same run, and the ratio; whether
each simulated scenario is detected; and the family-wise false-alarm rate (the share of
same-distribution windows in which any test fires, which is what asks for a retrain) at 500, 5,000
and 50,000 predictions. Prints and saves benchmarks/results/drift.json.

Run: ``make benchmark-drift`` (or ``.venv/bin/python -m benchmarks.drift``). The first run builds
Evidently's environment under .tickets/benchmarks/evidently from benchmarks/evidently/
requirements.lock (from the package index); ``--no-evidently`` skips it.

The windows are ``--distinct`` simulated tickets scored by the model (scoring a million tickets
would take most of ten minutes and measures the model, not the report), repeated and shuffled up
to the largest size; a fifth of them carry feedback."""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from benchmarks.common import ROOT, save
from core.data.simulate import SCENARIOS, generate_tickets
from core.monitoring.check import family_wise_false_alarms
from core.monitoring.drift import DriftReport, drift_report
from core.monitoring.reference import STATISTIC_ROWS
from core.predlog import PredictionLog, PredictionRecord
from core.release.manifest import ReferenceProfile
from core.settings import Settings
from core.training.families import build_pipeline, default_params
from core.training.refit import reference_profile, score

TEXT = ["short_description", "close_notes"]
EVIDENTLY = Path(__file__).resolve().parent / "evidently"
EVIDENTLY_ENV = ROOT / ".tickets" / "benchmarks" / "evidently"
REPEATS = 3
START = pd.Timestamp("2026-01-01", tz="UTC")


def window(model: Any, tickets: pd.DataFrame, labelled_share: float = 0.0) -> pd.DataFrame:
    """Scored tickets as the prediction log keeps them (top three probabilities as JSON)."""
    probabilities = np.asarray(model.predict_proba(tickets[TEXT]))
    classes = np.asarray(model.classes_)
    frame = tickets[TEXT].copy()
    frame.insert(0, "request_id", [f"req-{i}" for i in range(len(frame))])
    frame["prediction"] = classes[probabilities.argmax(axis=1)]
    frame["confidence"] = probabilities.max(axis=1)
    top = np.argsort(-probabilities, axis=1)[:, :3]
    frame["top_probabilities"] = [
        json.dumps({str(classes[j]): round(float(row[j]), 4) for j in picks})
        for row, picks in zip(probabilities, top, strict=True)
    ]
    labelled = np.arange(len(frame)) % 5 < labelled_share * 5
    frame["true_label"] = pd.Series(tickets["label"].where(labelled, None), dtype=object).values
    frame["model_version"] = "1"
    return frame


def _pool(scored: pd.DataFrame, size: int) -> pd.DataFrame:
    """``scored`` repeated and shuffled up to ``size`` rows, each with its own request id and a
    creation time one second apart (the newest rows last)."""
    repeats = -(-size // len(scored))
    pool = pd.concat([scored] * repeats, ignore_index=True).sample(frac=1.0, random_state=3)
    pool = pool.head(size).reset_index(drop=True)
    pool["request_id"] = [f"req-{i}" for i in range(len(pool))]
    pool["created_at"] = (START + pd.to_timedelta(np.arange(len(pool)), unit="s")).map(
        lambda t: t.isoformat(timespec="microseconds")
    )
    return pool


def _timed(run: Any) -> tuple[float, Any]:
    """The median seconds of ``REPEATS`` runs and the last run's result."""
    seconds, result = [], None
    for _ in range(REPEATS):
        started = time.perf_counter()
        result = run()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), result


def _summary(report: DriftReport, seconds: float) -> dict[str, Any]:
    return {
        "seconds": round(seconds, 3),
        "drift_detected": report.drift_detected,
        "fired": [test.name for test in report.tests if test.fired],
    }


def _write_log(path: Path, pool: pd.DataFrame) -> PredictionLog:
    log = PredictionLog(path)
    for start in range(0, len(pool), 20_000):
        chunk = pool.iloc[start : start + 20_000]
        log.record(
            [
                PredictionRecord(
                    request_id=str(row["request_id"]),
                    model_version="1",
                    short_description=str(row["short_description"]),
                    close_notes=str(row["close_notes"]),
                    prediction=str(row["prediction"]),
                    confidence=float(row["confidence"]),
                    top_probabilities=json.loads(str(row["top_probabilities"])),
                    true_label=row["true_label"] if isinstance(row["true_label"], str) else None,
                    created_at=str(row["created_at"]),
                )
                for row in chunk.to_dict("records")
            ]
        )
    return log


def evidently_environment() -> Path:
    """Evidently's own interpreter, built once from its lock (pandas 2: it does not import with
    the project's pandas 3)."""
    python = EVIDENTLY_ENV / "bin" / "python"
    stamp = EVIDENTLY_ENV / ".installed"
    lock = EVIDENTLY / "requirements.lock"
    if not stamp.exists() or stamp.read_text() != lock.read_text():
        uv = Path(sys.executable).parent / "uv"
        venv = [str(uv), "venv", "-q", "-p", sys.executable, str(EVIDENTLY_ENV)]
        subprocess.run(venv, check=True)
        subprocess.run(
            [str(uv), "pip", "sync", "-q", "--python", str(python), "--require-hashes", str(lock)],
            check=True,
        )
        stamp.write_text(lock.read_text())
    return python


def _evidently_frame(frame: pd.DataFrame) -> pd.DataFrame:
    lengths = frame["short_description"].str.len() + frame["close_notes"].str.len()
    return pd.DataFrame(
        {
            "short_description": frame["short_description"].to_numpy(dtype=object),
            "close_notes": frame["close_notes"].to_numpy(dtype=object),
            "prediction": frame["prediction"].astype(str).to_numpy(dtype=object),
            "true_label": frame["true_label"].to_numpy(dtype=object),
            "confidence": frame["confidence"].astype(float).to_numpy(),
            "text_length": lengths.astype(float).to_numpy(),
        }
    )


def run_evidently(
    python: Path, reference: pd.DataFrame, current: pd.DataFrame, folder: Path, text: bool
) -> dict[str, Any]:
    """Evidently's preset on ``current`` against ``reference``, in its environment."""
    reference_file, current_file = folder / "reference.parquet", folder / "current.parquet"
    _evidently_frame(reference).to_parquet(reference_file)
    _evidently_frame(current).to_parquet(current_file)
    command = [str(python), str(EVIDENTLY / "run_preset.py"), str(reference_file)]
    command += [str(current_file), *(["--text"] if text else [])]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _scenarios(model: Any, profile: ReferenceProfile, f1: float, settings: Settings) -> dict:
    scenarios = {}
    for scenario in SCENARIOS:
        tickets = generate_tickets(500, scenario, seed=5)
        report = drift_report(window(model, tickets), profile, f1, settings)
        scenarios[scenario] = {
            "drift_detected": report.drift_detected,
            "drift_score": round(report.drift_score, 3),
            "fired": [test.name for test in report.tests if test.fired],
        }
        print(f"{scenario}: {scenarios[scenario]}", flush=True)
    return scenarios


def reference_model(settings: Settings) -> tuple[Any, ReferenceProfile, float, pd.DataFrame]:
    """The linear SVM both drift benchmarks watch: fitted on 4,000 demo tickets, its reference
    profile, its held-out macro-F1 and the held-out rows."""
    data = generate_tickets(5000, "baseline", seed=1)
    train, test = train_test_split(data, test_size=0.2, random_state=0, stratify=data["label"])
    model = build_pipeline("linear_svm", default_params("linear_svm"), "spanish", 0)
    model.fit(train[TEXT], train["label"].to_numpy(dtype=object))
    evaluation, probabilities = score(model, test)
    profile = reference_profile(model, train, test, probabilities, settings)
    return model, profile, evaluation.macro_f1, test


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.drift", description=__doc__)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--distinct", type=int, default=100_000)
    parser.add_argument("--no-evidently", action="store_true")
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.sizes.split(",")]
    settings = Settings(monitoring_max_rows=max(sizes))
    started = time.perf_counter()
    model, profile, f1, test = reference_model(settings)
    profile_seconds = time.perf_counter() - started
    distinct = window(model, generate_tickets(args.distinct, "baseline", seed=9), 0.2)
    pool = _pool(distinct, max(sizes))
    python = None if args.no_evidently else evidently_environment()
    reference = window(model, test, 1.0)  # the held-out set the profile's classes come from
    timings: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder:
        log = _write_log(Path(folder) / "predictions.db", pool)
        for size in sizes:
            newest = pool.tail(size).reset_index(drop=True)
            seconds, report = _timed(lambda w=newest: drift_report(w, profile, f1, settings))
            entry: dict[str, Any] = {"in_memory": _summary(report, seconds)}

            def from_log(since: str = newest["created_at"].iloc[0]) -> DriftReport:
                read = log.drift_window(since, max(sizes), STATISTIC_ROWS, settings.seed)
                return drift_report(read.rows, profile, f1, settings, sample=read.sample)

            seconds, report = _timed(from_log)
            entry["from_sqlite_log"] = _summary(report, seconds)
            if python is not None:
                for text, key in ((True, "evidently"), (False, "evidently_without_text")):
                    entry[key] = run_evidently(python, reference, newest, Path(folder), text)
                entry["evidently_over_ours"] = round(
                    entry["evidently"]["seconds"] / entry["in_memory"]["seconds"], 1
                )
            timings[str(size)] = entry
            print(f"{size} predictions: {entry}", flush=True)
    scenarios = _scenarios(model, profile, f1, settings)
    labelled = pool.head(200_000).copy()
    false_alarms = {}
    for size, windows in ((500, 200), (5000, 100), (50_000, 40)):
        alarms, fired = family_wise_false_alarms(
            labelled, profile, f1, settings, size, windows, seed=size
        )
        false_alarms[str(size)] = {
            "windows": windows,
            "any_test_fired": alarms,
            "share": round(alarms / windows, 4),
            "by_test": dict(fired),
        }
        print(f"same distribution, {size} predictions: {false_alarms[str(size)]}", flush=True)
    save(
        "drift",
        {
            "distinct_tickets": args.distinct,
            "statistic_rows": STATISTIC_ROWS,
            "evidently": "0.7.23, DataDriftPreset; reference: the held-out set (its own env)",
            "model_and_profile_seconds": round(profile_seconds, 2),
            "report_seconds_by_window": timings,
            "scenarios_at_500": scenarios,
            "family_wise_false_alarms": false_alarms,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
