"""Metrics, reports and the promotion rule."""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score

from core.records import WindowAggregates


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


def plain_label(text: str) -> str:
    """A label as matplotlib prints it verbatim: ``$`` escaped, so a class name holding
    ``$...$`` is not parsed as mathtext (a malformed one raised and failed the training)."""
    return text.replace("$", r"\$")


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
    labels = [plain_label(label) for label in evaluation.labels]
    axes.set_xticks(ticks, labels, rotation=90, fontsize=8)
    axes.set_yticks(ticks, labels, fontsize=8)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(plain_label(title))
    figure.colorbar(image, ax=axes, fraction=0.046)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()


def macro_f1_replicates(
    truth: Sequence[str], predictions: Sequence[Sequence[str]], rounds: int, seed: int
) -> np.ndarray:
    """Macro-F1 (over the true labels) of each prediction vector on the full set (column 0) and
    on ``rounds`` bootstrap resamples shared by all vectors (paired), as a (rounds + 1, k) array."""
    labels = sorted(set(truth).union(*(set(p) for p in predictions)))
    index = {label: i for i, label in enumerate(labels)}
    t = np.array([index[x] for x in truth])
    encoded = [np.array([index[x] for x in p]) for p in predictions]
    true_classes = np.unique(t)
    rng = np.random.default_rng(seed)
    samples = np.vstack([np.arange(len(t)), rng.integers(0, len(t), size=(rounds, len(t)))])
    k = len(labels)
    scores = np.empty((len(samples), len(encoded)))
    for row, sample in enumerate(samples):
        ts = t[sample]
        support = np.bincount(ts, minlength=k)
        for column, p in enumerate(encoded):
            ps = p[sample]
            tp = np.bincount(ts[ts == ps], minlength=k)
            denominator = support + np.bincount(ps, minlength=k)
            f1 = np.divide(2 * tp, denominator, out=np.zeros(k), where=denominator > 0)
            scores[row, column] = f1[true_classes].mean()
    return scores


def window_metrics(
    aggregates: WindowAggregates, served_labels: Sequence[str] | None = None
) -> dict[str, Any]:
    """Metrics of a prediction-log window from the database's aggregates: traffic, label mix,
    confidence, and accuracy and macro-F1 over the rows with feedback (macro over the true
    labels, as ``evaluate`` computes it). Labels outside ``served_labels`` are counted: new
    categories arrive as feedback before any model knows them."""
    count = sum(n for *_, n, _, _ in aggregates.groups)
    labels: Counter[str] = Counter()
    versions: Counter[str] = Counter()
    for version, prediction, n, _, _ in aggregates.groups:
        labels[prediction] += n
        versions[version] += n
    confidence_sum = sum(total for *_, total, _ in aggregates.groups)
    low = sum(under for *_, under in aggregates.groups)
    feedback = Counter({(truth, predicted): n for truth, predicted, n in aggregates.confusion})
    labelled = sum(feedback.values())
    known = set(served_labels) if served_labels is not None else None
    outside = sum(n for (truth, _), n in feedback.items() if truth not in known) if known else None
    return {
        "count": count,
        "first_at": aggregates.first_at,
        "last_at": aggregates.last_at,
        "label_distribution": dict(sorted(labels.items())),
        "model_versions": dict(sorted(versions.items())),
        "mean_confidence": confidence_sum / count if count else None,
        "low_confidence_share": low / count if count else None,
        "feedback_count": labelled,
        "feedback_labels_outside_model": outside,
        "accuracy": sum(n for (t, p), n in feedback.items() if t == p) / labelled
        if labelled
        else None,
        "macro_f1": macro_f1_from_counts(feedback) if labelled else None,
    }


def macro_f1_from_counts(confusion: Counter[tuple[str, str]]) -> float:
    """Macro-F1 over the true labels from (true, predicted) counts; equals ``evaluate``'s."""
    true_totals: Counter[str] = Counter()
    predicted_totals: Counter[str] = Counter()
    for (truth, predicted), n in confusion.items():
        true_totals[truth] += n
        predicted_totals[predicted] += n
    scores = []
    for label, support in true_totals.items():
        hits = confusion.get((label, label), 0)
        denominator = support + predicted_totals[label]
        scores.append(2 * hits / denominator if denominator else 0.0)
    return float(np.mean(scores))


def resampled_macro_f1(
    truth: Sequence[str], predicted: Sequence[str], size: int, seed: int, rounds: int
) -> np.ndarray:
    """Macro-F1 of ``rounds`` resamples of ``size`` (true, predicted) pairs, with replacement:
    what a window of ``size`` labelled tickets scores when nothing changed.

    A resample with replacement only matters through how often each (true, predicted) cell
    comes up, and those counts are multinomial over the cells' shares: drawing them directly
    gives the same distribution at a cost that does not grow with ``size``."""
    labels = sorted(set(truth) | set(predicted))
    index = {label: i for i, label in enumerate(labels)}
    k = len(labels)
    cells = np.array([index[x] for x in truth]) * k + np.array([index[x] for x in predicted])
    shares = np.bincount(cells, minlength=k * k) / len(cells)
    counts = np.random.default_rng(seed).multinomial(size, shares, size=rounds).reshape(-1, k, k)
    support = counts.sum(axis=2)
    hits = np.diagonal(counts, axis1=1, axis2=2)
    denominator = support + counts.sum(axis=1)
    f1 = np.divide(2 * hits, denominator, out=np.zeros(support.shape), where=denominator > 0)
    present = support > 0
    return np.asarray((f1 * present).sum(axis=1) / np.maximum(present.sum(axis=1), 1))


def psi(expected: np.ndarray, actual: np.ndarray, floor: float = 1e-4) -> float:
    """Population stability index of two share vectors over the same categories."""
    expected = np.clip(expected, floor, None)
    actual = np.clip(actual, floor, None)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def macro_f1_bootstrap(
    truth: Sequence[str], predicted: Sequence[str], rounds: int, seed: int
) -> tuple[float, np.ndarray]:
    """Macro-F1 over the true labels, and its bootstrap replicates."""
    scores = macro_f1_replicates(truth, [predicted], rounds, seed)[:, 0]
    return float(scores[0]), scores[1:]
