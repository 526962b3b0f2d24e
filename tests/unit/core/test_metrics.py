from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from core.metrics import confusion_matrix_png, evaluate, resampled_macro_f1


def test_metrics_on_a_known_case() -> None:
    evaluation = evaluate(["a", "a", "b", "b"], ["a", "b", "b", "b"])
    assert evaluation.accuracy == 0.75
    assert evaluation.macro_f1 == pytest.approx((2 / 3 + 0.8) / 2)
    assert evaluation.confusion == [[1, 1], [0, 2]]
    assert evaluation.report["a"]["recall"] == 0.5
    assert confusion_matrix_png(evaluation, "t").startswith(b"\x89PNG")


def test_window_metrics_count_confidence_and_score_feedback_only() -> None:
    from core.metrics import window_metrics
    from core.records import WindowAggregates

    aggregates = WindowAggregates(
        groups=[("1", "a", 1, 0.9, 0), ("1", "b", 1, 0.4, 1), ("2", "a", 1, 0.7, 0)],
        confusion=[("a", "a", 1), ("b", "a", 1), ("nueva", "a", 2)],
        first_at="2026-11-26T10:00",
        last_at="2026-11-26T12:00",
    )
    metrics = window_metrics(aggregates, served_labels=["a", "b"])
    assert metrics["count"] == 3 and metrics["label_distribution"] == {"a": 2, "b": 1}
    assert metrics["model_versions"] == {"1": 2, "2": 1}
    assert metrics["mean_confidence"] == pytest.approx(2.0 / 3)
    assert metrics["low_confidence_share"] == pytest.approx(1 / 3)
    assert metrics["feedback_count"] == 4 and metrics["accuracy"] == 0.25
    assert metrics["feedback_labels_outside_model"] == 2
    empty = window_metrics(WindowAggregates([], [], None, None))
    assert empty["count"] == 0 and empty["macro_f1"] is None and empty["mean_confidence"] is None


def test_macro_f1_from_counts_equals_evaluate() -> None:
    from collections import Counter

    import numpy as np

    from core.metrics import macro_f1_from_counts

    rng = np.random.default_rng(3)
    for _ in range(20):
        truth = rng.choice(list("abcd"), size=200).tolist()
        predicted = rng.choice(list("abcde"), size=200).tolist()
        counts = Counter(zip(truth, predicted, strict=True))
        assert macro_f1_from_counts(counts) == pytest.approx(evaluate(truth, predicted).macro_f1)


def test_the_confusion_matrix_draws_labels_holding_dollar_signs_as_written() -> None:
    labels = ["coste $x^{$", "pagos $\\frac{1}$", "a$b"]
    evaluation = evaluate([labels[0], labels[1], labels[2]], [labels[0], labels[2], labels[2]])
    assert confusion_matrix_png(evaluation, "modelo $7 $\\bad$").startswith(b"\x89PNG")


def test_resampled_macro_f1_matches_resampling_rows_at_any_size() -> None:
    """Drawing the (true, predicted) cell counts gives what resampling rows gives: same centre
    and spread, also for a window far larger than the set it resamples."""
    rng = np.random.default_rng(0)
    truth = [f"c{i}" for i in rng.integers(0, 6, 800)]
    predicted = [t if rng.random() < 0.75 else f"c{rng.integers(0, 6)}" for t in truth]
    labels = sorted(set(truth) | set(predicted))
    t = np.array([labels.index(x) for x in truth])
    p = np.array([labels.index(x) for x in predicted])
    for size in (40, 5000):
        direct = []
        for _ in range(400):
            rows = rng.integers(0, len(t), size)
            true_classes = np.unique(t[rows])
            f1 = f1_score(t[rows], p[rows], labels=true_classes, average=None, zero_division=0)
            direct.append(f1.mean())
        drawn = resampled_macro_f1(truth, predicted, size, seed=1, rounds=400)
        assert abs(np.mean(drawn) - np.mean(direct)) < 0.01
        assert abs(np.std(drawn) - np.std(direct)) < 0.25 * np.std(direct)
