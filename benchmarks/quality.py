"""Quality and training time of the default profile on real ticket data.

Runs the real ``train`` flow (Prefect, MLflow on SQLite, local store) with default settings on:
- IT tickets: groups with >= 100 tickets plus ``other``, duplicate texts dropped, stratified 80/20
  split with seed 42 (target: test macro-F1 >= 0.68, all seven families within 15 minutes);
- Banking77: the official train/test split (target: test macro-F1 >= 0.92).
Also measures the documented baseline (word 1-2 + char 2-5 TF-IDF, LinearSVC) on the same split.
A dataset that is absent is skipped with the reason. Prints and saves JSON.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import f1_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import FeatureUnion, make_pipeline
from sklearn.svm import LinearSVC

from benchmarks.common import (
    BANKING_TEST,
    BANKING_TRAIN,
    IT_TICKETS,
    RESULTS,
    it_tickets_table,
    save,
)
from core.settings import FAMILIES, Settings

TARGETS = {"it_tickets": 0.68, "banking77": 0.92}
IT_TIME_LIMIT_S = 15 * 60


def baseline_macro_f1(train_text: Any, train_y: Any, test_text: Any, test_y: Any) -> float:
    features = FeatureUnion(
        [
            ("word", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)),
            (
                "char",
                TfidfVectorizer(
                    analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2
                ),
            ),
        ]
    )
    model = make_pipeline(features, LinearSVC(C=0.5, class_weight="balanced"))
    model.fit(train_text, train_y)
    return float(f1_score(test_y, model.predict(test_text), average="macro"))


def _joined(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    return frame[columns].agg(" ".join, axis=1).to_numpy(dtype=object)


def run_flow(
    name: str, train: pd.DataFrame, test: pd.DataFrame, settings: Settings, work: Path
) -> dict[str, Any]:
    from flows.train import train as train_flow

    train_path, test_path = work / f"{name}_train.csv", work / f"{name}_test.csv"
    train.to_csv(train_path, index=False)
    test.to_csv(test_path, index=False)
    started = time.perf_counter()
    summary = train_flow(
        settings=settings, data_path=str(train_path), test_data_path=str(test_path)
    )
    return {**summary.as_json(), "wall_seconds": time.perf_counter() - started}


def it_tickets(work: Path, families: tuple[str, ...]) -> dict[str, Any]:
    if not IT_TICKETS.exists():
        return {"skipped": f"{IT_TICKETS} is absent"}
    frame = it_tickets_table()
    train, test = train_test_split(
        frame, test_size=0.2, random_state=42, stratify=frame["Assignment group"]
    )
    columns = ["Short description", "Description"]
    baseline = baseline_macro_f1(
        _joined(train, columns),
        train["Assignment group"],
        _joined(test, columns),
        test["Assignment group"],
    )
    settings = Settings(
        home=work / "it_home",
        text_columns=tuple(columns),
        label_column="Assignment group",
        language="english",
        families=families,
    )
    summary = run_flow("it_tickets", train, test, settings, work)
    return _report("it_tickets", summary, baseline, len(frame), frame["Assignment group"].nunique())


def banking77(work: Path, families: tuple[str, ...]) -> dict[str, Any]:
    if not (BANKING_TRAIN.exists() and BANKING_TEST.exists()):
        return {"skipped": f"{BANKING_TRAIN} or {BANKING_TEST} is absent"}
    train = pd.read_csv(BANKING_TRAIN, dtype=str, keep_default_na=False)
    test = pd.read_csv(BANKING_TEST, dtype=str, keep_default_na=False)
    baseline = baseline_macro_f1(train["text"], train["category"], test["text"], test["category"])
    settings = Settings(
        home=work / "banking_home",
        text_columns=("text",),
        label_column="category",
        language="english",
        families=families,
    )
    summary = run_flow("banking77", train, test, settings, work)
    return _report(
        "banking77", summary, baseline, len(train) + len(test), train["category"].nunique()
    )


def _report(
    name: str, summary: dict[str, Any], baseline: float, rows: int, classes: int
) -> dict[str, Any]:
    result = {
        "rows": rows,
        "classes": classes,
        "champion_family": summary["champion_family"],
        "test_macro_f1": round(summary["test_macro_f1"], 4),
        "test_weighted_f1": round(summary["test_weighted_f1"], 4),
        "test_accuracy": round(summary["test_accuracy"], 4),
        "baseline_linear_svc_macro_f1": round(baseline, 4),
        "target_macro_f1": TARGETS[name],
        "meets_target": summary["test_macro_f1"] >= TARGETS[name],
        "wall_seconds": round(summary["wall_seconds"], 1),
        "leaderboard": summary["leaderboard"],
    }
    if name == "it_tickets":
        result["time_limit_seconds"] = IT_TIME_LIMIT_S
        result["within_time_limit"] = summary["wall_seconds"] <= IT_TIME_LIMIT_S
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", default="it_tickets,banking77")
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument(
        "--keep-others", action="store_true", help="keep saved results of datasets not run now"
    )
    args = parser.parse_args()
    families = tuple(args.families.split(","))
    runners = {"it_tickets": it_tickets, "banking77": banking77}
    results = previous_results() if args.keep_others else {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.datasets.split(","):
            started = datetime.now(UTC).isoformat()
            results[name] = {"when": started, **runners[name](Path(tmp), families)}
    defaults = Settings()
    profile = {"trials": defaults.trials, "timeout_s": defaults.timeout_s}
    save("quality", {"profile": profile, "results": results})


def previous_results() -> dict[str, Any]:
    """Results of datasets not re-run this time, from the last saved file."""
    path = RESULTS / "quality.json"
    if not path.exists():
        return {}
    return dict(json.loads(path.read_text()).get("results", {}))


if __name__ == "__main__":
    main()
