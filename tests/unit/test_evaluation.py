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


def test_promotion_rule() -> None:
    assert decide_promotion(0.5, None, 0.01).promote
    assert decide_promotion(0.82, 0.80, 0.01).promote
    decision = decide_promotion(0.805, 0.80, 0.01)
    assert not decision.promote and "below the margin" in decision.reason
    assert not decide_promotion(0.70, 0.80, 0.0).promote


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
