"""Backtest of the label queue: learning curves (test macro-F1 against labels spent) when a help
desk labels the tickets the queue picks, against labelling tickets in random order.

For IT tickets and Banking77: the training split is the pool of "logged" tickets, a few labelled
per class to start; each round the model (the default linear SVM) scores the unlabelled pool, a
batch is labelled (by the queue of core/monitoring/labeling.py, or at random), the model is
retrained and scored on the test split. Both orders start from the same labelled tickets. The
labels saved: how many fewer the queue needed to reach the macro-F1 random order reached with
its whole budget.

    python -m benchmarks.active_learning
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score

from benchmarks.common import save
from benchmarks.quality import banking77_split, it_tickets_split
from core.data.tables import LABEL, TEXT
from core.monitoring.labeling import label_queue
from core.monitoring.reference import token_counts
from core.training.families import build_pipeline, default_params

FAMILY = "linear_svm"
START_PER_CLASS = 4
ROUNDS = 8


def _fit(rows: pd.DataFrame, language: str) -> Any:
    model = build_pipeline(FAMILY, default_params(FAMILY), language, seed=0)
    model.fit(rows[TEXT], rows[LABEL].to_numpy(dtype=object))
    return model


def _score(model: Any, test: pd.DataFrame) -> float:
    return float(f1_score(test[LABEL], model.predict(test[TEXT]), average="macro"))


def _logged(model: Any, pool: pd.DataFrame) -> pd.DataFrame:
    """The pool as the prediction log would hold it after the model scored it."""
    probabilities = np.asarray(model.predict_proba(pool[TEXT]))
    classes = np.asarray(model.classes_)
    top = np.argsort(-probabilities, axis=1)[:, :3]
    return pd.DataFrame(
        {
            "request_id": pool.index.astype(str),
            "created_at": "2026-12-01T00:00:00",
            "short_description": pool["short_description"].to_numpy(),
            "close_notes": pool["close_notes"].to_numpy(),
            "prediction": classes[top[:, 0]],
            "confidence": probabilities.max(axis=1),
            "top_probabilities": [
                json.dumps({str(classes[j]): float(p[j]) for j in row})
                for row, p in zip(top, probabilities, strict=True)
            ],
        }
    )


def curve(
    train: pd.DataFrame, test: pd.DataFrame, language: str, batch: int, order: str
) -> list[tuple[int, float]]:
    pool = train.reset_index(drop=True)
    start = pool.groupby(LABEL, group_keys=False).sample(START_PER_CLASS, random_state=0)
    labelled = set(start.index)
    rng = np.random.default_rng(1)
    points = []
    for _ in range(ROUNDS + 1):
        rows = pool.loc[sorted(labelled)]
        model = _fit(rows, language)
        points.append((len(labelled), _score(model, test)))
        unlabelled = pool.drop(index=list(labelled))
        if order == "queue":
            vocabulary = set(token_counts(rows[TEXT], language))
            chosen = label_queue(_logged(model, unlabelled), vocabulary, language, batch)
            labelled |= {int(entry.request_id) for entry in chosen}
        else:
            labelled |= set(rng.choice(unlabelled.index, size=batch, replace=False).tolist())
    return points


def labels_saved(queue: list[tuple[int, float]], random: list[tuple[int, float]]) -> dict:
    """Labels the queue needed to reach random order's final macro-F1 (interpolated)."""
    target_labels, target = random[-1]
    for (n0, f0), (n1, f1) in itertools.pairwise(queue):
        if f1 >= target:
            needed = n0 + (n1 - n0) * ((target - f0) / (f1 - f0) if f1 > f0 else 1.0)
            needed = max(needed, float(queue[0][0]))
            return {
                "random_final_labels": target_labels,
                "random_final_macro_f1": round(target, 4),
                "queue_labels_to_match": round(needed),
                "labels_saved": round(target_labels - needed),
                "share_saved": round(1 - needed / target_labels, 3),
            }
    return {"random_final_labels": target_labels, "labels_saved": 0, "note": "not reached"}


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__).parse_args(argv)
    results, skipped = [], {}
    for name, split, batch in (
        ("it_tickets", it_tickets_split, 150),
        ("banking77", banking77_split, 300),
    ):
        found = split()
        if isinstance(found, str):
            skipped[name] = found
            continue
        train, test, options = found
        started = time.perf_counter()
        queue = curve(train, test, options["language"], batch, "queue")
        random = curve(train, test, options["language"], batch, "random")
        row = {
            "dataset": name,
            "batch": batch,
            "queue": [(n, round(f, 4)) for n, f in queue],
            "random": [(n, round(f, 4)) for n, f in random],
            **labels_saved(queue, random),
            "seconds": round(time.perf_counter() - started, 1),
        }
        print(row)
        results.append(row)
    save("active_learning", {"family": FAMILY, "results": results, "skipped": skipped})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
