"""Judging a challenger on live traffic, from the prediction log's rows.

- Shadow: both models scored the same tickets, so they are compared pairwise: agreement, the
  label pairs they disagree on, and on feedback-labelled rows both macro-F1 and the paired
  bootstrap of the gain, with the very rule promotion uses (``decide_promotion``).
- Canary: each ticket was answered by one side, so the sides are compared as groups: the
  canary's error rate (tickets the champion had to answer because the canary failed), p99
  latency, low-confidence share, and macro-F1 on feedback with an unpaired bootstrap. It is
  rolled back when any of them is worse beyond its margin, with enough data."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from core.metrics import macro_f1_replicates
from core.records import LOW_CONFIDENCE
from core.release.promotion import decide_promotion
from core.setting_groups import RolloutSettings

#: The route of a ticket the canary should have answered but failed on (the champion did).
FALLBACK = "canary-fallback"


@dataclass(frozen=True)
class Disagreement:
    champion_label: str
    shadow_label: str
    count: int
    examples: list[str]


@dataclass(frozen=True)
class ShadowSummary:
    """The shadow against the champion on the tickets both scored in a window."""

    scored: int
    champion_versions: list[str]
    shadow_versions: list[str]
    agreement: float | None
    disagreements: list[Disagreement]
    labelled: int
    champion_macro_f1: float | None = None
    shadow_macro_f1: float | None = None
    gain: float | None = None
    gain_ci: tuple[float, float] | None = None
    promote: bool = False
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def shadow_summary(
    rows: pd.DataFrame,
    margin: float,
    min_feedback: int,
    seed: int,
    top: int = 10,
    examples: int = 3,
) -> ShadowSummary:
    """``rows``: log rows the shadow scored (``prediction``, ``shadow_prediction``,
    ``true_label``, ``request_id``, newest first)."""
    if rows.empty:
        return ShadowSummary(0, [], [], None, [], 0, reason="no ticket scored by both yet")
    champion = rows["prediction"].astype(str).to_numpy(dtype=object)
    shadow = rows["shadow_prediction"].astype(str).to_numpy(dtype=object)
    agree = champion == shadow
    pairs: Counter[tuple[str, str]] = Counter()
    found: dict[tuple[str, str], list[str]] = {}
    ids = rows["request_id"].to_numpy(dtype=object)[~agree]
    for c, s, request_id in zip(champion[~agree], shadow[~agree], ids, strict=True):
        pairs[(c, s)] += 1
        kept = found.setdefault((c, s), [])
        if len(kept) < examples:
            kept.append(str(request_id))
    disagreements = [Disagreement(c, s, n, found[(c, s)]) for (c, s), n in pairs.most_common(top)]
    labelled = rows[rows["true_label"].notna()]
    base = ShadowSummary(
        scored=len(rows),
        champion_versions=sorted(rows["model_version"].astype(str).unique().tolist()),
        shadow_versions=sorted(rows["shadow_version"].astype(str).unique().tolist()),
        agreement=round(float(agree.mean()), 6),
        disagreements=disagreements,
        labelled=len(labelled),
    )
    if len(labelled) < min_feedback:
        needed = f"{len(labelled)} labelled tickets scored by both; {min_feedback} needed to judge"
        return replace(base, reason=needed)
    decision = decide_promotion(
        labelled["true_label"].astype(str).tolist(),
        labelled["shadow_prediction"].astype(str).tolist(),
        labelled["prediction"].astype(str).tolist(),
        margin,
        seed,
    )
    return replace(
        base,
        champion_macro_f1=decision.champion_macro_f1,
        shadow_macro_f1=decision.challenger_macro_f1,
        gain=decision.gain,
        gain_ci=decision.gain_ci,
        promote=decision.promote,
        reason=decision.reason,
    )


@dataclass(frozen=True)
class CanaryCheck:
    name: str
    canary: float | None
    champion: float | None
    limit: str
    worse: bool
    detail: str


@dataclass(frozen=True)
class CanaryVerdict:
    rollback: bool
    canary_rows: int
    champion_rows: int
    checks: list[CanaryCheck] = field(default_factory=list)

    @property
    def reasons(self) -> list[str]:
        return [check.detail for check in self.checks if check.worse]

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "reasons": self.reasons}


def judge_canary(
    rows: pd.DataFrame, canary_version: str, rules: RolloutSettings, seed: int
) -> CanaryVerdict:
    """Whether the canary (``canary_version``) should be rolled back, from the log's rows
    since it started (``route``, ``model_version``, ``latency_ms``, ``confidence``,
    ``prediction``, ``true_label``, ``keyed``). Health needs ``min_predictions`` canary
    tickets; quality ``min_feedback`` labelled tickets on each side. Only tickets whose side the
    service drew count: a client whose ``X-Client-Key`` chose its side could have tried keys
    until its tickets (gibberish, say) landed on the canary, and so steered the verdict."""
    if "keyed" in rows:
        rows = rows[rows["keyed"].fillna(0).astype(int) == 0]
    route = rows["route"].astype(str)
    version = rows["model_version"].astype(str)
    canary = rows[((route == "canary") & (version == canary_version)) | (route == FALLBACK)]
    champion = rows[route == "champion"]
    checks: list[CanaryCheck] = []
    if len(canary) >= rules.min_predictions and len(champion) >= rules.min_predictions:
        checks += _health(canary, champion, rules)
    checks += _quality(canary, champion, rules, seed)
    return CanaryVerdict(any(c.worse for c in checks), len(canary), len(champion), checks)


def _health(
    canary: pd.DataFrame, champion: pd.DataFrame, rules: RolloutSettings
) -> list[CanaryCheck]:
    errors = float((canary["route"] == FALLBACK).mean())
    answered = canary[canary["route"] == "canary"]
    checks = [
        CanaryCheck(
            "error rate",
            errors,
            0.0,
            f"> {rules.error_rate_margin:g} above the champion",
            errors > rules.error_rate_margin,
            f"canary error rate {errors:.3f} (tickets the champion answered for it), limit "
            f"{rules.error_rate_margin:g}",
        )
    ]
    latencies = answered["latency_ms"].dropna().astype(float)
    baseline = champion["latency_ms"].dropna().astype(float)
    if len(latencies) >= rules.min_predictions // 2 and len(baseline) >= rules.min_predictions:
        mine, theirs = float(np.percentile(latencies, 99)), float(np.percentile(baseline, 99))
        checks.append(
            CanaryCheck(
                "p99 latency ms",
                round(mine, 3),
                round(theirs, 3),
                f"> {rules.p99_ratio:g}x the champion's",
                mine > rules.p99_ratio * theirs,
                f"canary p99 {mine:.1f} ms vs champion {theirs:.1f} ms "
                f"(limit {rules.p99_ratio:g}x)",
            )
        )
    low = float((answered["confidence"].astype(float) < LOW_CONFIDENCE).mean())
    low_champion = float((champion["confidence"].astype(float) < LOW_CONFIDENCE).mean())
    checks.append(
        CanaryCheck(
            "low-confidence share",
            round(low, 6),
            round(low_champion, 6),
            f"> {rules.low_confidence_margin:g} above the champion's",
            low > low_champion + rules.low_confidence_margin,
            f"canary low-confidence share {low:.3f} vs champion {low_champion:.3f} "
            f"(margin {rules.low_confidence_margin:g})",
        )
    )
    return checks


def _quality(
    canary: pd.DataFrame, champion: pd.DataFrame, rules: RolloutSettings, seed: int
) -> list[CanaryCheck]:
    mine = canary[(canary["route"] == "canary") & canary["true_label"].notna()]
    theirs = champion[champion["true_label"].notna()]
    if len(mine) < rules.min_feedback or len(theirs) < rules.min_feedback:
        return []
    a, b = _replicates(mine, seed), _replicates(theirs, seed + 1)
    gain = float(a[0] - b[0])
    low, high = (float(v) for v in np.percentile(a[1:] - b[1:], [2.5, 97.5]))
    worse = gain < -rules.macro_f1_margin and high < 0
    return [
        CanaryCheck(
            "macro-F1 on feedback",
            round(float(a[0]), 6),
            round(float(b[0]), 6),
            f"< champion - {rules.macro_f1_margin:g}, interval below 0",
            worse,
            f"canary macro-F1 {a[0]:.4f} on {len(mine)} labelled vs champion {b[0]:.4f} on "
            f"{len(theirs)}: gain {gain:+.4f} (95% CI {low:+.4f} to {high:+.4f})",
        )
    ]


def _replicates(rows: pd.DataFrame, seed: int, rounds: int = 1000) -> np.ndarray:
    """Macro-F1 of ``rows`` (column 0 of the result: the full set) and of bootstrap resamples."""
    truth = rows["true_label"].astype(str).tolist()
    return macro_f1_replicates(truth, [rows["prediction"].astype(str).tolist()], rounds, seed)[:, 0]
