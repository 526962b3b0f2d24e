"""How well training flags label errors: on a copy of a real set with known injected noise.

For IT tickets and Banking77 (train split) a share of rows gets a wrong label (uniformly another
class, seeded); the audit (core/training/label_audit.py: out-of-fold probabilities of the
default linear SVM, then confident learning) flags rows, and the flags are scored against the
rows really changed: precision (flags that are real errors) and recall (errors flagged). Rows
whose label was wrong before the injection count as false flags here, so precision is a floor.

    python -m benchmarks.label_noise [--noise 0.1]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.common import save
from benchmarks.quality import banking77_split, it_tickets_split
from core.data.tables import LABEL
from core.training.families import default_params
from core.training.label_audit import (
    audit_labels,
    out_of_fold_probabilities,
    precision_recall,
)

FAMILY = "linear_svm"


def noisy_copy(frame: pd.DataFrame, share: float, seed: int) -> tuple[pd.DataFrame, set[int]]:
    """``frame`` with ``share`` of its rows relabelled to another class, and those rows."""
    rng = np.random.default_rng(seed)
    copy = frame.reset_index(drop=True).copy()
    classes = sorted(copy[LABEL].unique())
    rows = rng.choice(len(copy), size=round(share * len(copy)), replace=False)
    for row in rows:
        others = [label for label in classes if label != copy.at[row, LABEL]]
        copy.at[row, LABEL] = others[int(rng.integers(len(others)))]
    return copy, {int(row) for row in rows}


def measure(name: str, frame: pd.DataFrame, language: str, share: float) -> dict[str, Any]:
    noisy, changed = noisy_copy(frame, share, seed=7)
    started = time.perf_counter()
    probabilities, classes = out_of_fold_probabilities(
        FAMILY, default_params(FAMILY), noisy, language, seed=42, folds=3
    )
    suspects = audit_labels(noisy, probabilities, classes)
    seconds = time.perf_counter() - started
    flagged = {s.row for s in suspects}
    precision, recall = precision_recall(flagged, changed)
    # The unmodified table's own flags (its real label errors and ambiguous rows): of the flags
    # the injection added, how many are injected errors.
    clean, _ = out_of_fold_probabilities(
        FAMILY, default_params(FAMILY), frame.reset_index(drop=True), language, seed=42, folds=3
    )
    before = {s.row for s in audit_labels(frame.reset_index(drop=True), clean, classes)}
    added_precision, _ = precision_recall(flagged - before, changed)
    right = sum(1 for s in suspects if s.row in changed and s.suggested == frame[LABEL].iat[s.row])
    row = {
        "dataset": name,
        "rows": len(noisy),
        "classes": len(classes),
        "noise": share,
        "mislabelled": len(changed),
        "flagged": len(flagged),
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "suggested_label_right": round(right / max(len(flagged & changed), 1), 4),
        "flagged_on_unmodified": len(before),
        "precision_of_added_flags": round(added_precision, 4),
        "seconds": round(seconds, 1),
    }
    print(row)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--noise", type=float, default=0.1)
    args = parser.parse_args(argv)
    rows, skipped = [], {}
    for name, split in (("it_tickets", it_tickets_split), ("banking77", banking77_split)):
        found = split()
        if isinstance(found, str):
            skipped[name] = found
            continue
        train, _, options = found
        rows.append(measure(name, train, options["language"], args.noise))
    save("label_noise", {"family": FAMILY, "rows": rows, "skipped": skipped})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
