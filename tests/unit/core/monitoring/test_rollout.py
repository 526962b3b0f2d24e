"""Judging a challenger from log rows: the shadow's pairwise summary and the canary's checks,
each firing on its own and none without enough data."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from core.monitoring.rollout import judge_canary, shadow_summary
from core.setting_groups import RolloutSettings

LABELS = ["acceso", "correo", "red", "hardware"]
RULES = RolloutSettings(min_predictions=100, min_feedback=50)


def _rows(
    n: int,
    route: str,
    version: str,
    accuracy: float,
    seed: int,
    latency_ms: float = 10.0,
    confidence: float = 0.9,
    labelled: bool = True,
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    truth = rng.choice(LABELS, n)
    wrong = rng.random(n) > accuracy
    predicted = np.where(wrong, np.roll(truth, 1), truth)
    return pd.DataFrame(
        {
            "request_id": [f"{route}-{seed}-{i}" for i in range(n)],
            "route": route,
            "model_version": version,
            "latency_ms": rng.normal(latency_ms, latency_ms / 10, n),
            "confidence": np.clip(rng.normal(confidence, 0.05, n), 0, 1),
            "prediction": predicted,
            "true_label": truth if labelled else None,
        }
    )


def _judge(*parts: pd.DataFrame) -> dict[str, bool]:
    verdict = judge_canary(pd.concat(parts, ignore_index=True), "8", RULES, seed=0)
    return {check.name: check.worse for check in verdict.checks}


def test_a_canary_as_good_as_the_champion_stays() -> None:
    checks = _judge(_rows(400, "champion", "7", 0.9, 1), _rows(400, "canary", "8", 0.9, 2))
    assert checks and not any(checks.values())


@pytest.mark.parametrize(
    ("canary", "fired"),
    [
        (dict(accuracy=0.5), "macro-F1 on feedback"),
        (dict(accuracy=0.9, latency_ms=40.0), "p99 latency ms"),
        (dict(accuracy=0.9, confidence=0.35), "low-confidence share"),
    ],
)
def test_each_check_rolls_back_on_its_own(canary: dict[str, Any], fired: str) -> None:
    checks = _judge(
        _rows(400, "champion", "7", 0.9, 1), _rows(400, "canary", "8", seed=2, **canary)
    )
    assert {name for name, worse in checks.items() if worse} == {fired}


def test_failures_the_champion_answered_count_as_canary_errors() -> None:
    fallback = _rows(30, "canary-fallback", "7", 0.9, 3)
    checks = _judge(
        _rows(400, "champion", "7", 0.9, 1), _rows(300, "canary", "8", 0.9, 2), fallback
    )
    assert checks["error rate"] and not checks["macro-F1 on feedback"]


def test_without_enough_data_nothing_is_judged() -> None:
    few = _judge(_rows(400, "champion", "7", 0.9, 1), _rows(40, "canary", "8", 0.2, 2))
    assert few == {}, "40 canary tickets: neither health nor quality has enough"
    unlabelled = _judge(
        _rows(400, "champion", "7", 0.9, 1), _rows(400, "canary", "8", 0.2, 2, labelled=False)
    )
    assert "macro-F1 on feedback" not in unlabelled and not any(unlabelled.values())
    # Rows of another canary version (an earlier one) are not this canary's.
    other = _judge(_rows(400, "champion", "7", 0.9, 1), _rows(400, "canary", "6", 0.2, 2))
    assert other == {}


def test_the_shadow_summary_counts_pairs_and_judges_like_promotion() -> None:
    rows = _rows(300, "champion", "7", 0.9, 1)
    rng = np.random.default_rng(5)
    shadow = np.where(rng.random(300) < 0.97, rows["true_label"], "red")
    rows = rows.assign(shadow_prediction=shadow, shadow_version="8")
    summary = shadow_summary(rows, margin=0.01, min_feedback=50, seed=0)
    agree = rows["prediction"] == rows["shadow_prediction"]
    assert summary.scored == 300 and summary.agreement == pytest.approx(agree.mean())
    assert sum(d.count for d in summary.disagreements) == (~agree).sum()
    counts = [d.count for d in summary.disagreements]
    assert counts == sorted(counts, reverse=True) and all(
        len(d.examples) <= 3 for d in summary.disagreements
    )
    assert summary.shadow_macro_f1 is not None and summary.champion_macro_f1 is not None
    assert summary.shadow_macro_f1 > summary.champion_macro_f1
    assert summary.promote and summary.gain_ci is not None and summary.gain_ci[0] > 0
    few = shadow_summary(rows.head(40), margin=0.01, min_feedback=50, seed=0)
    assert not few.promote and few.gain is None and "50 needed" in few.reason
    empty = shadow_summary(rows.head(0), margin=0.01, min_feedback=50, seed=0)
    assert empty.scored == 0 and empty.agreement is None
