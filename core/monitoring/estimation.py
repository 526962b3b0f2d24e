"""Performance estimated before labels arrive, from the model's own confidence.

Two estimators, both fitted on the held-out test set at training time (``EstimationProfile``, in
the reference profile) and applied to a window of logged predictions:

- **CBPE** (confidence-based performance estimation, as NannyML does it): the top-label
  confidence is calibrated (isotonic regression of "was the answer right" on confidence, so every
  family's scores mean what they say), then each ticket counts as a fractional right answer for
  its predicted class and as fractional misses for the other classes by their probabilities. The
  expected confusion counts give expected accuracy and expected per-class and macro F1.
- **ATC** (average thresholded confidence, Garg et al. 2022): the confidence threshold above
  which the held-out set has as many tickets as it had right answers; the share of a window above
  it estimates accuracy. For macro-F1, tickets above it count as right and the others as belonging
  to their runner-up class.

The log keeps each ticket's top-k probabilities, not all of them: the rest of the mass is spread
evenly over the other classes. Intervals come from a Poisson bootstrap of the window's rows.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from core.release.manifest import EstimationProfile

#: Bootstrap replicates of an estimate's interval.
ROUNDS = 200
#: Predicted tickets a class needs for its own estimate.
MIN_CLASS_ROWS = 30


@dataclass(frozen=True)
class Estimate:
    """One estimator's figures for a window, with 95% bootstrap intervals."""

    accuracy: float
    accuracy_interval: tuple[float, float]
    macro_f1: float
    macro_f1_interval: tuple[float, float]
    #: Per predicted class with enough rows: estimated F1.
    per_class_f1: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class PerformanceEstimate:
    rows: int
    cbpe: Estimate
    atc: Estimate
    #: The default estimator's name and the macro-F1 an unchanged window should get.
    default: str
    expected_macro_f1: float
    #: The chance, by the bootstrap, that the default estimate's drop from the expected
    #: macro-F1 is within ``tolerated_drop`` (small: the drop is larger than tolerated).
    tolerated_drop: float = 0.05
    drop_p_value: float = 1.0

    @property
    def estimated_macro_f1(self) -> float:
        return self.cbpe.macro_f1 if self.default == "cbpe" else self.atc.macro_f1

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


DEFAULT_ESTIMATOR = "cbpe"


def _calibrate(confidence: np.ndarray, profile: EstimationProfile) -> np.ndarray:
    return np.interp(confidence, profile.calibration_x, profile.calibration_y)


def fit_estimation(
    probabilities: np.ndarray, classes: list[str], truth: list[str]
) -> EstimationProfile:
    """Fit both estimators on the held-out set's probabilities and true labels."""
    from sklearn.isotonic import IsotonicRegression

    predicted = probabilities.argmax(axis=1)
    index = {label: i for i, label in enumerate(classes)}
    right = np.array([index.get(label, -1) for label in truth]) == predicted
    confidence = probabilities.max(axis=1)
    isotonic = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
    isotonic.fit(confidence, right.astype(float))
    accuracy = float(right.mean())
    threshold = float(np.quantile(confidence, 1 - accuracy)) if len(confidence) else 0.5
    partial = EstimationProfile(
        labels=list(classes),
        calibration_x=[float(x) for x in isotonic.X_thresholds_],
        calibration_y=[float(y) for y in isotonic.y_thresholds_],
        atc_threshold=threshold,
        held_out_accuracy=accuracy,
        held_out_cbpe_macro_f1=0.0,
        held_out_atc_macro_f1=0.0,
    )
    cbpe, _ = _cbpe(probabilities, predicted, confidence, partial)
    atc, _ = _atc(probabilities, predicted, confidence, partial)
    return partial.model_copy(
        update={"held_out_cbpe_macro_f1": cbpe.macro_f1, "held_out_atc_macro_f1": atc.macro_f1}
    )


def window_matrix(window: pd.DataFrame, labels: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(rows x classes) probabilities of logged tickets from their top-k, the rest of each
    row's mass spread evenly over the classes it does not name; and the predicted columns."""
    index = {label: i for i, label in enumerate(labels)}
    k = len(labels)
    dense = np.zeros((len(window), k))
    named = np.zeros((len(window), k), dtype=bool)
    for row, value in enumerate(window["top_probabilities"]):
        scores = json.loads(value) if isinstance(value, str) else dict(value or {})
        for label, score in scores.items():
            column = index.get(str(label))
            if column is not None:
                dense[row, column] = float(score)
                named[row, column] = True
    residual = np.clip(1.0 - dense.sum(axis=1), 0.0, None)
    unnamed = (~named).sum(axis=1)
    spread = np.divide(residual, unnamed, out=np.zeros_like(residual), where=unnamed > 0)
    dense = np.where(named, dense, spread[:, None])
    predicted = np.array([index.get(str(p), -1) for p in window["prediction"]])
    missing = predicted < 0
    predicted[missing] = dense[missing].argmax(axis=1)
    return dense, predicted


def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """Per class F1 from (possibly fractional, possibly replicated) confusion counts; NaN for a
    class less than one ticket is expected to involve (as a measured macro-F1 leaves out a class
    that is neither true nor predicted in the window)."""
    denominator = 2 * tp + fp + fn
    return np.divide(2 * tp, denominator, out=np.full(tp.shape, np.nan), where=denominator >= 1)


def _estimate(
    right: np.ndarray,
    truth_mass: np.ndarray,
    predicted: np.ndarray,
    labels: list[str],
    seed: int,
) -> tuple[Estimate, np.ndarray]:
    """Accuracy and F1 from each row's chance of being right (``right``) and its expected mass
    per true class (``truth_mass``, rows x classes), with bootstrap intervals."""
    n, k = truth_mass.shape
    onehot = np.zeros((n, k))
    onehot[np.arange(n), predicted] = 1.0
    weights = np.vstack([np.ones(n), np.random.default_rng(seed).poisson(1.0, size=(ROUNDS, n))])
    totals = weights.sum(axis=1)
    tp = weights @ (onehot * right[:, None])
    predicted_counts = weights @ onehot
    fp = predicted_counts - tp
    fn = weights @ truth_mass - tp
    f1 = _f1(tp, fp, fn)
    macro = np.nanmean(np.where(np.isnan(f1).all(axis=1, keepdims=True), 0.0, f1), axis=1)
    accuracy = (weights @ right) / np.maximum(totals, 1)
    estimate = Estimate(
        accuracy=float(accuracy[0]),
        accuracy_interval=_interval(accuracy[1:]),
        macro_f1=float(macro[0]),
        macro_f1_interval=_interval(macro[1:]),
        per_class_f1=_per_class(f1[0], predicted_counts[0], labels),
    )
    return estimate, macro[1:]


def _per_class(f1: np.ndarray, predicted_counts: np.ndarray, labels: list[str]) -> dict[str, float]:
    """Estimated F1 of the classes predicted at least MIN_CLASS_ROWS times."""
    return {
        labels[j]: round(float(f1[j]), 4)
        for j in range(len(labels))
        if predicted_counts[j] >= MIN_CLASS_ROWS and not np.isnan(f1[j])
    }


def _expected_per_class(
    right: np.ndarray, truth_mass: np.ndarray, predicted: np.ndarray, labels: list[str]
) -> dict[str, float]:
    """Per class F1 from the expected confusion counts of the window itself (no resampling)."""
    k = truth_mass.shape[1]
    tp = np.bincount(predicted, weights=right, minlength=k)
    predicted_counts = np.bincount(predicted, minlength=k).astype(float)
    f1 = _f1(tp, predicted_counts - tp, truth_mass.sum(axis=0) - tp)
    return _per_class(f1, predicted_counts, labels)


def _interval(replicates: np.ndarray) -> tuple[float, float]:
    low, high = np.percentile(replicates, [2.5, 97.5])
    return float(low), float(high)


def _simulated(
    truth_mass: np.ndarray, predicted: np.ndarray, rounds: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(macro-F1, accuracy) of ``rounds`` labellings of the window, each ticket's true class
    drawn from its calibrated probabilities: what the labels that come later may show."""
    n, k = truth_mass.shape
    cumulative = truth_mass.cumsum(axis=1)
    cumulative /= np.maximum(cumulative[:, -1:], 1e-12)
    rng = np.random.default_rng(seed)
    predicted_counts = np.bincount(predicted, minlength=k)
    macro, accuracy = np.empty(rounds), np.empty(rounds)
    for r in range(rounds):
        draws = np.asarray(rng.random(n))
        truth = np.minimum((cumulative < draws[:, None]).sum(axis=1), k - 1)
        hits = truth == predicted
        tp = np.bincount(truth[hits], minlength=k)
        involved = np.bincount(truth, minlength=k) + predicted_counts
        f1 = np.divide(2 * tp, involved, out=np.zeros(k), where=involved > 0)
        macro[r] = f1[involved > 0].mean()
        accuracy[r] = hits.mean()
    return macro, accuracy


def _cbpe(
    dense: np.ndarray,
    predicted: np.ndarray,
    confidence: np.ndarray,
    profile: EstimationProfile,
    seed: int = 0,
) -> tuple[Estimate, np.ndarray]:
    """Calibrated probabilities, then the macro-F1 the window's labels would give, by
    simulation: its mean is the estimate and its 2.5-97.5 percentiles the interval (the window's
    tickets are known; what is uncertain is their true labels)."""
    rows = np.arange(len(predicted))
    calibrated = _calibrate(confidence, profile)
    others = dense.copy()
    others[rows, predicted] = 0.0
    scale = np.divide(
        1.0 - calibrated,
        others.sum(axis=1),
        out=np.zeros_like(calibrated),
        where=others.sum(axis=1) > 0,
    )
    truth_mass = others * scale[:, None]
    truth_mass[rows, predicted] = calibrated
    macro, accuracy = _simulated(truth_mass, predicted, ROUNDS, seed)
    estimate = Estimate(
        accuracy=float(calibrated.mean()),
        accuracy_interval=_interval(accuracy),
        macro_f1=float(macro.mean()),
        macro_f1_interval=_interval(macro),
        per_class_f1=_expected_per_class(calibrated, truth_mass, predicted, profile.labels),
    )
    return estimate, macro


def _atc(
    dense: np.ndarray,
    predicted: np.ndarray,
    confidence: np.ndarray,
    profile: EstimationProfile,
    seed: int = 0,
) -> tuple[Estimate, np.ndarray]:
    rows = np.arange(len(predicted))
    right = (confidence > profile.atc_threshold).astype(float)
    others = dense.copy()
    others[rows, predicted] = -1.0
    runner_up = others.argmax(axis=1)
    truth_mass = np.zeros_like(dense)
    truth_mass[rows, np.where(right > 0, predicted, runner_up)] = 1.0
    return _estimate(right, truth_mass, predicted, profile.labels, seed)


def _estimates(
    dense: np.ndarray,
    predicted: np.ndarray,
    confidence: np.ndarray,
    profile: EstimationProfile,
    seed: int,
    tolerated_drop: float,
) -> PerformanceEstimate:
    cbpe, cbpe_replicates = _cbpe(dense, predicted, confidence, profile, seed)
    atc, atc_replicates = _atc(dense, predicted, confidence, profile, seed)
    replicates = cbpe_replicates if DEFAULT_ESTIMATOR == "cbpe" else atc_replicates
    expected = profile.held_out_cbpe_macro_f1
    within = np.sum(expected - replicates < tolerated_drop)
    return PerformanceEstimate(
        rows=len(predicted),
        cbpe=cbpe,
        atc=atc,
        default=DEFAULT_ESTIMATOR,
        expected_macro_f1=expected,
        tolerated_drop=tolerated_drop,
        drop_p_value=float((within + 1) / (len(replicates) + 1)),
    )


def estimate_performance(
    window: pd.DataFrame, profile: EstimationProfile, seed: int = 0, tolerated_drop: float = 0.05
) -> PerformanceEstimate | None:
    """Both estimates for a window of logged predictions (None for an empty window)."""
    if window.empty:
        return None
    dense, predicted = window_matrix(window, profile.labels)
    confidence = window["confidence"].astype(float).to_numpy()
    return _estimates(dense, predicted, confidence, profile, seed, tolerated_drop)


def estimate_from_probabilities(
    probabilities: np.ndarray, profile: EstimationProfile, seed: int = 0
) -> PerformanceEstimate:
    """Both estimates for tickets whose full probabilities are at hand (benchmarks, tests)."""
    predicted = probabilities.argmax(axis=1)
    confidence = probabilities.max(axis=1)
    return _estimates(probabilities, predicted, confidence, profile, seed, 0.05)


def estimate_markdown(estimate: PerformanceEstimate | None) -> list[str]:
    """The report's lines on the estimate (none without one)."""
    if estimate is None:
        return []
    lines = ["", "## Performance estimated without labels", ""]
    lines += ["| estimator | accuracy | 95% | macro-F1 | 95% |", "| --- | --- | --- | --- | --- |"]
    for name in ("cbpe", "atc"):
        e = getattr(estimate, name)
        default = " (default)" if name == estimate.default else ""
        lines.append(
            f"| {name}{default} | {e.accuracy:.3f} | {e.accuracy_interval[0]:.3f}-"
            f"{e.accuracy_interval[1]:.3f} | {e.macro_f1:.3f} | {e.macro_f1_interval[0]:.3f}-"
            f"{e.macro_f1_interval[1]:.3f} |"
        )
    lines.append(f"\nExpected with unchanged traffic: macro-F1 {estimate.expected_macro_f1:.3f}.")
    return lines
