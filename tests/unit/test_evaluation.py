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
