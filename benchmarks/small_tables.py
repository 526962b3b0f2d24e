"""Model selection on small tables: is what training refits at least as good as the best linear
configuration?

On seeded subsamples of 150 and 300 training rows of the real Spanish help-desk requests
(``es_unlu_train.csv``, a stratified 80/20 split with seed 42 for the test rows), of 150, 300 and
600 rows of the IT tickets and of Banking77 (five seeds each), and of 150 rows of the Spanish demo
set (long free-text close notes), all seven studies run as the default training runs them
(``TuningData`` with the default ``small_table_rows``, so five folds, repeated below 500 rows, no
pruning: at 150 rows each model is fitted on 120; the standard profile: the linear families may
add the sentence encoder, every text embedded once first). The model is then chosen as training
chooses it (an ensemble of the trials, kept when bias-corrected CV says it beats the best linear
default: core/training/ensemble.py), and, for comparison, as the single pick of bias-corrected CV
(what training did before ensembles), by the one-standard-error rule and by the highest mean CV
macro-F1. Each is refitted on the subsample and scored on the untouched test split, beside the
linear defaults fitted on the same rows: ``linear_svm`` over TF-IDF plus the encoder at weight 2
(the default linear configuration, the strong prior) and over TF-IDF alone.

A subsample of n rows keeps n // 15 classes (seeded; all of them when there are fewer) so every
class has rows enough to split; the test split is restricted to the same classes. Goal: the
chosen model's test macro-F1 is never below the default linear configuration's by more than one
standard error (a bootstrap over the test rows) and higher on average. ``--profile fast`` runs
without the encoder (the default linear configuration then is TF-IDF alone). Prints and saves
benchmarks/results/small_tables.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score
from sklearn.model_selection import train_test_split

from benchmarks.common import (
    BANKING_TEST,
    BANKING_TRAIN,
    ES_UNLU,
    IT_TICKETS,
    RESULTS,
    ROOT,
    canonical,
    es_unlu_table,
    it_tickets_table,
    save,
)
from core.data.simulate import generate_tickets
from core.data.tables import LABEL, NOTES, SHORT
from core.encoder import attach_cache
from core.settings import FAMILIES, Settings
from core.training.families import build_model, searches_encoder, starting_points
from core.training.leaderboard import select_winner
from core.training.studies import run_study
from core.training.tuning import StudyResult, TuningData

SIZES = (150, 300, 600)
#: The demo set's texts are long and alike: its smallest size is the hard case.
DEMO_SIZES = (150,)
#: The Spanish help-desk file has 734 rows: 587 for training after its test split.
ES_SIZES = (150, 300)
SPANISH = ("spanish_demo", "es_unlu")
ROWS_PER_CLASS = 15
BOOTSTRAP_ROUNDS = 300
DEFAULT_FAMILY = "linear_svm"


def datasets() -> dict[str, tuple[pd.DataFrame, pd.DataFrame] | str]:
    found: dict[str, tuple[pd.DataFrame, pd.DataFrame] | str] = {}
    if ES_UNLU.exists():
        table = es_unlu_table()
        train, test = train_test_split(table, test_size=0.2, random_state=42, stratify=table[LABEL])
        found["es_unlu"] = (train.reset_index(drop=True), test.reset_index(drop=True))
    else:
        found["es_unlu"] = f"{ES_UNLU} is absent"
    if IT_TICKETS.exists():
        table = canonical(
            it_tickets_table(), "Short description", "Description", "Assignment group"
        )
        train, test = train_test_split(table, test_size=0.2, random_state=42, stratify=table[LABEL])
        found["it_tickets"] = (train.reset_index(drop=True), test.reset_index(drop=True))
    else:
        found["it_tickets"] = f"{IT_TICKETS} is absent"
    if BANKING_TRAIN.exists() and BANKING_TEST.exists():
        read = [
            pd.read_csv(path, dtype=str, keep_default_na=False)
            for path in (BANKING_TRAIN, BANKING_TEST)
        ]
        found["banking77"] = (
            canonical(read[0], "text", None, "category"),
            canonical(read[1], "text", None, "category"),
        )
    else:
        found["banking77"] = f"{BANKING_TRAIN} or {BANKING_TEST} is absent"
    demo = generate_tickets(3000, seed=11)
    train, test = train_test_split(demo, test_size=0.3, random_state=42, stratify=demo[LABEL])
    found["spanish_demo"] = (train.reset_index(drop=True), test.reset_index(drop=True))
    return found


def subsample(
    train: pd.DataFrame, test: pd.DataFrame, rows: int, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`rows` training rows of rows // 15 seeded classes (stratified), and their test rows."""
    rng = np.random.default_rng(seed)
    labels = sorted(train[LABEL].unique())
    keep = max(2, min(len(labels), rows // ROWS_PER_CLASS))
    chosen = set(rng.choice(labels, size=keep, replace=False))
    pool = train[train[LABEL].isin(chosen)]
    sample, _ = train_test_split(pool, train_size=rows, random_state=seed, stratify=pool[LABEL])
    counts = sample[LABEL].value_counts()
    sample = sample[sample[LABEL].isin(counts[counts >= 5].index)]  # what training would refuse
    kept = set(sample[LABEL])
    return sample.reset_index(drop=True), test[test[LABEL].isin(kept)].reset_index(drop=True)


def fit_predict(
    params: dict[str, Any], family: str, train: pd.DataFrame, test: pd.DataFrame, settings: Settings
) -> np.ndarray:
    """The refitted configuration's (or ensemble's) predictions on the test rows."""
    model = build_model(family, params, settings.language, settings.seed)
    model.fit(train[[SHORT, NOTES]], train[LABEL].to_numpy(dtype=object))
    return np.asarray(model.predict(test[[SHORT, NOTES]]), dtype=object)


def bootstrap_se(truth: np.ndarray, predicted: np.ndarray, seed: int) -> float:
    rng = np.random.default_rng(seed)
    scores = []
    for _ in range(BOOTSTRAP_ROUNDS):
        rows = rng.integers(0, len(truth), len(truth))
        scores.append(f1_score(truth[rows], predicted[rows], average="macro", zero_division=0))
    return float(np.std(scores, ddof=1))


def one_run(
    name: str,
    size: int,
    train: pd.DataFrame,
    test: pd.DataFrame,
    seed: int,
    args: argparse.Namespace,
) -> dict[str, Any]:
    language = "spanish" if name in SPANISH else "english"
    settings = Settings(
        language=language,
        seed=seed,
        trials=args.trials,
        timeout_s=args.timeout,
        profile=args.profile,
    )
    started = time.perf_counter()
    encoder = searches_encoder(tuple(args.families), settings.profile)
    data = TuningData(
        train,
        settings.language,
        settings.cv_folds,
        seed,
        small_table_rows=settings.small_table_rows,
        encoder=encoder,
    )
    data.warm_encoder()
    with ThreadPoolExecutor(settings.max_concurrent_studies) as pool:
        results: list[StudyResult] = list(
            pool.map(
                lambda f: run_study(f, data, settings.trials, settings.timeout_s), args.families
            )
        )
    truth = test[LABEL].to_numpy(dtype=object)
    scores: dict[tuple[str, str], tuple[float, np.ndarray]] = {}

    def scored(result: StudyResult) -> tuple[float, np.ndarray]:
        key = (result.family, repr(sorted(result.best_params.items())))
        if key not in scores:
            predicted = fit_predict(result.best_params, result.family, train, test, settings)
            f1 = float(f1_score(truth, predicted, average="macro", zero_division=0))
            scores[key] = (f1, predicted)
        return scores[key]

    small, codes = data.plan.small, data.codes
    chosen = select_winner(
        results, small, truth=codes, seed=seed, ensemble=settings.ensemble, encoder=encoder
    )
    single = select_winner(results, small, truth=codes, seed=seed, encoder=encoder)
    one_se = select_winner(results, one_standard_error=small)
    best_mean = select_winner(results, one_standard_error=False)
    assert chosen and single and one_se and best_mean
    chosen_f1, chosen_predicted = scored(chosen)
    default, without = starting_points(DEFAULT_FAMILY, encoder)[:2]
    default_f1 = scored(StudyResult(DEFAULT_FAMILY, default, 0.0, 1, 0, 0.0))[0]
    tfidf_f1 = (
        scored(StudyResult(DEFAULT_FAMILY, without, 0.0, 1, 0, 0.0))[0] if encoder else default_f1
    )
    se = bootstrap_se(truth, chosen_predicted, seed)
    row = {
        "dataset": name,
        "size": size,
        "rows": len(train),
        "classes": int(train[LABEL].nunique()),
        "test_rows": len(test),
        "seed": seed,
        "folds": f"{data.plan.folds}x{data.plan.repeats}",
        "chosen": chosen.family,
        "chosen_default_config": chosen.best_params == chosen.default_params,
        "chosen_cv": round(chosen.cv_macro_f1, 4),
        "chosen_test": round(chosen_f1, 4),
        "chosen_test_se": round(se, 4),
        "selection": chosen.selection,
        "single": single.family,
        "single_test": round(scored(single)[0], 4),
        "one_se": one_se.family,
        "one_se_test": round(scored(one_se)[0], 4),
        "best_mean": best_mean.family,
        "best_mean_test": round(scored(best_mean)[0], 4),
        "default_linear_test": round(default_f1, 4),
        "tfidf_linear_test": round(tfidf_f1, 4),
        "gain_over_default": round(chosen_f1 - default_f1, 4),
        "within_se": chosen_f1 >= default_f1 - se,
        "within_2se": chosen_f1 >= default_f1 - 2 * se,
        "studies": {
            r.family: [
                round(r.cv_macro_f1, 4),
                round(r.cv_std_error, 4),
                round(r.default_cv_macro_f1, 4),
                round(r.default_cv_std_error, 4),
                r.trials,
            ]
            for r in results
            if r.ok
        },
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(row, flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.small_tables", description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=12, help="per study (the default)")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds per study")
    parser.add_argument("--families", nargs="+", default=list(FAMILIES))
    parser.add_argument("--datasets", nargs="+", default=None, help="default: all")
    parser.add_argument("--profile", default="standard", choices=["standard", "fast"])
    parser.add_argument(
        "--merge", action="store_true", help="keep the saved runs of datasets not run now"
    )
    args = parser.parse_args(argv)
    attach_cache(ROOT / ".tickets" / "benchmark-embeddings.sqlite", 200_000)
    rows: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    for name, found in datasets().items():
        if args.datasets and name not in args.datasets:
            continue
        if isinstance(found, str):
            skipped[name] = found
            print(f"{name}: skipped, {found}", flush=True)
            continue
        train, test = found
        allowed = {"spanish_demo": DEMO_SIZES, "es_unlu": ES_SIZES}.get(name, SIZES)
        sizes = [size for size in args.sizes if size in allowed]
        for size in sizes:
            for seed in range(args.seeds):
                sample, sample_test = subsample(train, test, size, seed)
                rows.append(one_run(name, size, sample, sample_test, seed, args))
    if args.merge:
        rows = [r for r in saved_runs() if r["dataset"] not in {x["dataset"] for x in rows}] + rows
    table: list[dict[str, Any]] = []
    for name in sorted({row["dataset"] for row in rows}):
        for size in sorted({row["size"] for row in rows}):
            group = [r for r in rows if r["dataset"] == name and r["size"] == size]
            if not group:
                continue
            table.append(
                {
                    "dataset": name,
                    "rows": size,
                    "runs": len(group),
                    "chosen_test_mean": round(statistics.mean(r["chosen_test"] for r in group), 4),
                    "single_pick_test_mean": round(
                        statistics.mean(r.get("single_test", r["chosen_test"]) for r in group), 4
                    ),
                    "one_se_rule_test_mean": round(
                        statistics.mean(r["one_se_test"] for r in group), 4
                    ),
                    "best_mean_rule_test_mean": round(
                        statistics.mean(r["best_mean_test"] for r in group), 4
                    ),
                    "default_linear_test_mean": round(
                        statistics.mean(r["default_linear_test"] for r in group), 4
                    ),
                    "tfidf_linear_test_mean": round(
                        statistics.mean(r.get("tfidf_linear_test", 0.0) for r in group), 4
                    ),
                    "mean_gain_over_default": round(
                        statistics.mean(r["gain_over_default"] for r in group), 4
                    ),
                    "runs_within_se": sum(r["within_se"] for r in group),
                    "runs_within_2se": sum(r["within_2se"] for r in group),
                }
            )
    gains = [row["gain_over_default"] for row in rows]
    result = {
        "settings": {
            "trials": args.trials,
            "timeout_s": args.timeout,
            "families": args.families,
            "profile": args.profile,
        },
        "skipped": skipped,
        "table": table,
        "runs": rows,
        "targets": {
            "runs": len(rows),
            "runs_within_se": sum(row["within_se"] for row in rows),
            "runs_within_2se": sum(row["within_2se"] for row in rows),
            "better_than_default_on_average": bool(gains) and statistics.mean(gains) > 0,
            "mean_gain_over_default": round(statistics.mean(gains), 4) if gains else None,
        },
    }
    save("small_tables", result)
    return 0


def saved_runs() -> list[dict[str, Any]]:
    path = RESULTS / "small_tables.json"
    if not path.exists():
        return []
    return list(json.loads(path.read_text()).get("runs", []))


if __name__ == "__main__":
    sys.exit(main())
