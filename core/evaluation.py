"""Metrics, reports and the promotion rule."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score


@dataclass(frozen=True)
class Evaluation:
    """Scores of one model on one labelled set."""

    macro_f1: float
    weighted_f1: float
    accuracy: float
    n: int
    labels: list[str]
    report: dict[str, Any]
    confusion: list[list[int]]

    def metrics(self, prefix: str = "test_") -> dict[str, float]:
        return {
            f"{prefix}macro_f1": self.macro_f1,
            f"{prefix}weighted_f1": self.weighted_f1,
            f"{prefix}accuracy": self.accuracy,
        }


def evaluate(y_true: Any, y_pred: Any) -> Evaluation:
    """Macro/weighted F1, accuracy, per-class report and confusion matrix."""
    truth = np.asarray(y_true, dtype=object).astype(str)
    predicted = np.asarray(y_pred, dtype=object).astype(str)
    labels = sorted(set(truth) | set(predicted))
    return Evaluation(
        macro_f1=float(f1_score(truth, predicted, average="macro", labels=sorted(set(truth)))),
        weighted_f1=float(f1_score(truth, predicted, average="weighted")),
        accuracy=float(accuracy_score(truth, predicted)),
        n=len(truth),
        labels=labels,
        report=dict(classification_report(truth, predicted, output_dict=True, zero_division=0)),
        confusion=confusion_matrix(truth, predicted, labels=labels).tolist(),
    )


def confusion_matrix_png(evaluation: Evaluation, title: str) -> bytes:
    """The confusion matrix as a PNG, rows normalised to recall."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = np.asarray(evaluation.confusion, dtype=float)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = max(6.0, 0.45 * len(evaluation.labels) + 3)
    figure, axes = plt.subplots(figsize=(size, size))
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ticks = range(len(evaluation.labels))
    axes.set_xticks(ticks, evaluation.labels, rotation=90, fontsize=8)
    axes.set_yticks(ticks, evaluation.labels, fontsize=8)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    figure.colorbar(image, ax=axes, fraction=0.046)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    reason: str
    challenger_macro_f1: float
    champion_macro_f1: float | None


def decide_promotion(
    challenger_macro_f1: float, champion_macro_f1: float | None, margin: float
) -> PromotionDecision:
    """Promote the first model always; later ones only when better by ``margin`` (absolute)."""
    if champion_macro_f1 is None:
        return PromotionDecision(True, "no champion yet", challenger_macro_f1, None)
    gain = challenger_macro_f1 - champion_macro_f1
    promote = gain >= margin
    verdict = "meets" if promote else "is below"
    reason = (
        f"macro-F1 {challenger_macro_f1:.4f} vs champion {champion_macro_f1:.4f}: "
        f"gain {gain:+.4f} {verdict} the margin {margin}"
    )
    return PromotionDecision(promote, reason, challenger_macro_f1, champion_macro_f1)


def production_metrics(window: pd.DataFrame, low_confidence: float = 0.5) -> dict[str, Any]:
    """Aggregates of a prediction-log window; accuracy and macro-F1 over rows with feedback."""
    labelled = window[window["true_label"].notna()]
    confidence = window["confidence"].astype(float)
    metrics: dict[str, Any] = {
        "count": len(window),
        "first_at": str(window["created_at"].min()) if len(window) else None,
        "last_at": str(window["created_at"].max()) if len(window) else None,
        "label_distribution": _counts(window["prediction"]),
        "model_versions": _counts(window["model_version"]),
        "mean_confidence": float(confidence.mean()) if len(window) else None,
        "low_confidence_share": float((confidence < low_confidence).mean())
        if len(window)
        else None,
        "feedback_count": len(labelled),
        "accuracy": None,
        "macro_f1": None,
    }
    if len(labelled):
        scores = evaluate(labelled["true_label"], labelled["prediction"])
        metrics.update(accuracy=scores.accuracy, macro_f1=scores.macro_f1)
    return metrics


def _counts(column: pd.Series) -> dict[str, int]:
    return {str(key): int(value) for key, value in column.value_counts().sort_index().items()}
