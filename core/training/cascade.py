"""Serving the encoder only where it matters: a TF-IDF gate answers the tickets it is sure of.

The sentence encoder costs tens of milliseconds a ticket, TF-IDF about one, and most tickets are
easy: the TF-IDF model already puts most of its probability on the right class. So a model that
uses the encoder is served behind a gate (``core.models.Cascade``): the best configuration of
the search without the encoder answers a ticket when its top probability reaches a threshold,
and only the other tickets are embedded. The threshold is chosen on out-of-fold probabilities
(the gate's and the model's, on the same rows): the lowest of ``THRESHOLDS`` from which the
cascade's out-of-fold macro-F1 is, at it and every higher threshold, within ``TOLERANCE`` of the
model's alone, so a threshold that wins by a lucky dip is not taken. Measured on 5-fold
out-of-fold predictions (linear SVM, TF-IDF gate against TF-IDF plus encoder): on the Spanish
help desk the cascade matched the model from 0.8 up (0.7844) embedding 33% of the tickets; on
IT tickets it matched or beat it from 0.5 up (0.6441-0.6464 against 0.6445), embedding 26-49%.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.training.selection import macro_f1_by_candidate

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
#: How much out-of-fold macro-F1 the cascade may give up against the model alone.
TOLERANCE = 0.002


@dataclass(frozen=True)
class GateChoice:
    """The chosen threshold, the share of tickets the model still answers (out of fold) and
    the out-of-fold macro-F1 of the model alone and of the cascade."""

    threshold: float
    model_share: float
    model_macro_f1: float
    cascade_macro_f1: float


def _macro_f1(truth: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean over repeats of the folds of macro-F1 (probabilities: repeats, rows, classes)."""
    classes = probabilities.shape[2]
    predictions = probabilities.argmax(axis=2)
    return float(np.mean(macro_f1_by_candidate(truth, predictions, np.ones(len(truth)), classes)))


def choose_gate(
    truth: np.ndarray,
    model: np.ndarray,
    gate: np.ndarray,
    thresholds: tuple[float, ...] = THRESHOLDS,
    tolerance: float = TOLERANCE,
) -> GateChoice | None:
    """The lowest threshold from which the cascade keeps the model's out-of-fold macro-F1
    (within ``tolerance``), or None when none does below the point where the gate stops
    answering any ticket (the model is then served alone)."""
    alone = _macro_f1(truth, model)
    rows: list[GateChoice] = []
    for threshold in sorted(thresholds):
        unsure = gate.max(axis=2) < threshold
        mixed = np.where(unsure[..., None], model, gate)
        rows.append(GateChoice(threshold, float(unsure.mean()), alone, _macro_f1(truth, mixed)))
    for index, row in enumerate(rows):
        if row.model_share >= 1.0:
            return None  # the gate answers nothing from here on: no gate
        if all(r.cascade_macro_f1 >= alone - tolerance for r in rows[index:]):
            return row
    return None
