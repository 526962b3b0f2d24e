from __future__ import annotations

import pytest

from core.evaluation import confusion_matrix_png, decide_promotion, evaluate


def test_metrics_on_a_known_case() -> None:
    evaluation = evaluate(["a", "a", "b", "b"], ["a", "b", "b", "b"])
    assert evaluation.accuracy == 0.75
    assert evaluation.macro_f1 == pytest.approx((2 / 3 + 0.8) / 2)
    assert evaluation.confusion == [[1, 1], [0, 2]]
    assert evaluation.report["a"]["recall"] == 0.5
    assert confusion_matrix_png(evaluation, "t").startswith(b"\x89PNG")


def test_production_metrics_count_confidence_and_score_feedback_only() -> None:
    import pandas as pd

    from core.evaluation import production_metrics

    window = pd.DataFrame(
        {
            "created_at": ["2026-11-26T10:00", "2026-11-26T11:00", "2026-11-26T12:00"],
            "model_version": ["1", "1", "2"],
            "prediction": ["a", "b", "a"],
            "confidence": [0.9, 0.4, 0.7],
            "true_label": ["a", None, "b"],
        }
    )
    metrics = production_metrics(window)
    assert metrics["count"] == 3 and metrics["label_distribution"] == {"a": 2, "b": 1}
    assert metrics["model_versions"] == {"1": 2, "2": 1}
    assert metrics["mean_confidence"] == pytest.approx(2.0 / 3)
    assert metrics["low_confidence_share"] == pytest.approx(1 / 3)
    assert metrics["feedback_count"] == 2 and metrics["accuracy"] == 0.5
    empty = production_metrics(window.iloc[0:0])
    assert empty["count"] == 0 and empty["macro_f1"] is None and empty["mean_confidence"] is None


def test_promotion_needs_the_margin_and_a_gain_that_is_not_noise() -> None:
    truth = ["a", "b", "c", "d"] * 250
    champion = list(truth)
    for i in range(0, 1000, 5):
        champion[i] = "a" if truth[i] != "a" else "b"
    assert decide_promotion(truth, champion, None, 0.01, seed=0).promote
    better = list(truth)
    for i in range(0, 1000, 10):
        better[i] = "a" if truth[i] != "a" else "b"
    decision = decide_promotion(truth, better, champion, 0.01, seed=0)
    assert decision.promote and decision.gain_ci is not None and decision.gain_ci[0] > 0
    assert "interval excludes 0" in decision.reason
    small = list(champion)
    small[0] = truth[0]
    decision = decide_promotion(truth, small, champion, 0.0, seed=0)
    assert not decision.promote and "could be noise" in decision.reason
    decision = decide_promotion(truth, champion, better, 0.01, seed=0)
    assert not decision.promote and "below the margin" in decision.reason
