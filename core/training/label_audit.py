"""Suspected label errors: training rows whose given label the model, judging them out of fold,
confidently disagrees with (confident learning, Northcutt et al. 2021).

Out-of-fold probabilities come from the winning configuration refitted on each fold's other
rows, so no row is judged by a model that saw it. Per class j the threshold t_j is the mean
probability of j over the rows labelled j (the model's own "self-confidence" for that class, so a
class it is always unsure about is not flagged wholesale). A row is suspected when the classes it
reaches the threshold of exclude its given label and the likeliest of them is another class: that
class is the suggested label. Suspects are ranked by how much likelier the suggestion is than the
given label.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from core.data.tables import LABEL, NOTES, SHORT, TEXT
from core.errors import BundleError
from core.io.store import ArtifactStore
from core.release.bundle import label_audit_key
from core.training.families import build_model
from core.training.tuning import decode_probabilities


@dataclass(frozen=True)
class Suspect:
    """One row whose label looks wrong."""

    row: int
    source: str
    short_description: str
    close_notes: str
    given: str
    suggested: str
    given_probability: float
    suggested_probability: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def out_of_fold_probabilities(
    family: str,
    params: dict[str, Any],
    frame: pd.DataFrame,
    language: str,
    seed: int,
    folds: int,
    n_jobs: int = 1,
) -> tuple[np.ndarray, list[str]]:
    """(rows x classes) probabilities, each row's from a model fitted without it, and the
    classes in column order."""
    from sklearn.model_selection import StratifiedKFold

    labels = frame[LABEL].to_numpy(dtype=object)
    classes = sorted({str(label) for label in labels})
    smallest = int(pd.Series(labels).value_counts().min())
    splitter = StratifiedKFold(
        n_splits=max(2, min(folds, smallest)), shuffle=True, random_state=seed
    )
    probabilities = np.zeros((len(frame), len(classes)))
    texts = frame[TEXT].reset_index(drop=True)
    for train_rows, held_out in splitter.split(texts, labels):
        model = build_model(family, params, language, seed, n_jobs)
        model.fit(texts.iloc[train_rows], labels[train_rows])
        columns = [classes.index(str(label)) for label in model.classes_]
        probabilities[np.ix_(held_out, columns)] = model.predict_proba(texts.iloc[held_out])
    return probabilities, classes


def kept_out_of_fold(encoded: str, frame: pd.DataFrame) -> tuple[np.ndarray, list[str]] | None:
    """The chosen configuration's out-of-fold probabilities as its study kept them (averaged
    over repeats of the folds), in ``out_of_fold_probabilities``' form, so the audit needs no
    fit of its own; None when none were kept or they are not for these rows."""
    if not encoded:
        return None
    probabilities = decode_probabilities(encoded).astype(np.float64).mean(axis=0)
    classes = sorted({str(label) for label in frame[LABEL].to_numpy(dtype=object)})
    if probabilities.shape != (len(frame), len(classes)):
        return None
    return probabilities, classes


def suspected_label_errors(
    given: np.ndarray, probabilities: np.ndarray, classes: list[str]
) -> list[tuple[int, int]]:
    """(row, suggested class's column) of the rows confident learning flags, most suspicious
    first."""
    index = {label: i for i, label in enumerate(classes)}
    given_codes = np.array([index[str(label)] for label in given])
    thresholds = np.array(
        [
            probabilities[given_codes == j, j].mean() if (given_codes == j).any() else 1.0
            for j in range(len(classes))
        ]
    )
    reached = probabilities >= thresholds
    confident = np.where(reached, probabilities, -1.0)
    suggested = confident.argmax(axis=1)
    rows = np.arange(len(given_codes))
    flagged = reached.any(axis=1) & ~reached[rows, given_codes] & (suggested != given_codes)
    gap = probabilities[rows, suggested] - probabilities[rows, given_codes]
    order = np.argsort(-gap[flagged], kind="stable")
    return [(int(i), int(suggested[i])) for i in rows[flagged][order]]


def audit_labels(
    frame: pd.DataFrame,
    probabilities: np.ndarray,
    classes: list[str],
    feedback_rows: int = 0,
) -> list[Suspect]:
    """The suspects among ``frame``'s rows (the last ``feedback_rows`` of which came from
    feedback), with their suggested labels."""
    given = frame[LABEL].astype(str).to_numpy()
    first_feedback = len(frame) - feedback_rows
    suspects = []
    for row, suggested in suspected_label_errors(given, probabilities, classes):
        record = frame.iloc[row]
        suspects.append(
            Suspect(
                row=row,
                source="feedback" if row >= first_feedback else "base",
                short_description=str(record[SHORT]),
                close_notes=str(record[NOTES] or ""),
                given=str(given[row]),
                suggested=classes[suggested],
                given_probability=round(float(probabilities[row, classes.index(given[row])]), 4),
                suggested_probability=round(float(probabilities[row, suggested]), 4),
            )
        )
    return suspects


def without_suspects(frame: pd.DataFrame, suspects: list[Suspect]) -> pd.DataFrame:
    """``frame`` without the suspects' rows (positions), renumbered."""
    keep = np.ones(len(frame), dtype=bool)
    keep[[suspect.row for suspect in suspects]] = False
    return frame.iloc[keep].reset_index(drop=True)


def precision_recall(flagged: set[int], noisy: set[int]) -> tuple[float, float]:
    """Of the flagged rows, the share really mislabelled; of the mislabelled, the share flagged."""
    hits = len(flagged & noisy)
    precision = hits / len(flagged) if flagged else 0.0
    recall = hits / len(noisy) if noisy else 0.0
    return precision, recall


def store_audit(store: ArtifactStore, bundle_id: str, suspects: list[Suspect]) -> str:
    """Keep the list beside the bundle; returns its URI."""
    key = label_audit_key(bundle_id)
    body = {"bundle_id": bundle_id, "suspects": [suspect.as_dict() for suspect in suspects]}
    store.put(key, json.dumps(body, ensure_ascii=False, indent=1).encode())
    return store.uri(key)


def read_audit(store: ArtifactStore, bundle_id: str) -> list[Suspect]:
    """The suspects a bundle's training flagged; BundleError when it kept none."""
    key = label_audit_key(bundle_id)
    if not store.exists(key):
        raise BundleError(f"bundle {bundle_id} has no label audit (trained with label_audit off?)")
    body = json.loads(store.get(key))
    return [Suspect(**row) for row in body["suspects"]]
