"""Drift statistics. The reference profile is computed once at training time and stored in the
bundle's manifest, so a check never touches the training data again.

Each test has two gates: statistical significance (where a sampling model exists; Holm-corrected
over the family of tests) and an effect size (KS statistic, PSI, Jensen-Shannon distance, a rise of
the out-of-vocabulary rate, a share of low-confidence answers, a drop of macro-F1). Large windows
make every p-value tiny on harmless differences; the effect-size gate is what keeps those quiet.
Token counts have no trustworthy p-value (tokens of one ticket are not independent), so the
vocabulary test reports the Jensen-Shannon distance in excess of what sampling alone produces at the
window's size (a multinomial draw from the reference), and fires on that excess.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial.distance import jensenshannon

from core.data.tables import NOTES, SHORT
from core.metrics import macro_f1_bootstrap, macro_f1_replicates, psi, resampled_macro_f1
from core.monitoring.estimation import PerformanceEstimate, estimate_markdown, estimate_performance
from core.monitoring.explain_drift import (
    DriftExplanation,
    explain,
    reason_line,
    what_changed_markdown,
)
from core.monitoring.reference import (
    STATISTIC_ROWS,
    outside_share,
    seeded_sample,
    text_lengths,
    token_counts,
)
from core.records import LOW_CONFIDENCE, Verdict
from core.release.manifest import HeldOutOutcomes, ReferenceProfile
from core.settings import Settings

OTHER_TOKENS = "<other>"
BOOTSTRAP_ROUNDS = 1000
JS_TOKENS = 300
NULL_DRAWS = 50
#: Tickets the vocabulary tests tokenise at most (a seeded sample of larger windows; their
#: sampling-noise correction uses the sample's size): tokenising is most of a report's cost.
VOCABULARY_DOCS = 5000


@dataclass(frozen=True)
class DriftTest:
    """One test: its statistic against its threshold, and (where it has one) its p-value
    against the Holm-corrected level."""

    name: str
    statistic: float | None
    threshold: float
    verdict: str
    detail: str
    p_value: float | None = None
    alpha: float | None = None
    effect_exceeded: bool = False
    #: What changed, for a fired test (core/monitoring/explain_drift.py).
    explanation: DriftExplanation | None = None

    @property
    def fired(self) -> bool:
        return self.verdict == Verdict.DRIFT


@dataclass(frozen=True)
class DriftReport:
    tests: list[DriftTest]
    n_predictions: int
    n_feedback: int
    drift_score: float
    drift_score_threshold: float
    drift_detected: bool
    reasons: list[str] = field(default_factory=list)
    #: Accuracy and macro-F1 estimated from confidence (core/monitoring/estimation.py).
    estimated: PerformanceEstimate | None = None

    @property
    def insufficient_data(self) -> bool:
        return all(test.verdict == Verdict.INSUFFICIENT for test in self.tests)

    @property
    def dataset_drift(self) -> bool:
        """The share of fired tests reaches the drift-score threshold (a broad shift)."""
        return self.drift_score >= self.drift_score_threshold

    def as_dict(self) -> dict[str, Any]:
        body = asdict(self)
        body["insufficient_data"] = self.insufficient_data
        body["dataset_drift"] = self.dataset_drift
        body["fired"] = [test.name for test in self.tests if test.fired]
        return body

    def markdown(self) -> str:
        verdict = "DRIFT" if self.drift_detected else "no drift"
        if self.insufficient_data:
            verdict = "insufficient data"
        lines = [
            f"# Drift report: {verdict}",
            "",
            f"{self.n_predictions} predictions, {self.n_feedback} with feedback; "
            f"drift score {self.drift_score:.2f} (threshold {self.drift_score_threshold}).",
            "",
            "| test | statistic | threshold | p-value | level | verdict | detail |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for test in self.tests:
            lines.append(
                f"| {test.name} | {_fmt(test.statistic)} | {test.threshold:g} | "
                f"{_fmt(test.p_value)} | {_fmt(test.alpha)} | {test.verdict} | {test.detail} |"
            )
        if self.reasons:
            lines += ["", "Reasons:", *[f"- {reason}" for reason in self.reasons]]
        lines += estimate_markdown(self.estimated)
        lines += what_changed_markdown([(t.name, t.explanation) for t in self.tests])
        return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def _insufficient(name: str, threshold: float, detail: str) -> DriftTest:
    return DriftTest(name, None, threshold, Verdict.INSUFFICIENT, detail)


def _length_test(window: pd.DataFrame, profile: ReferenceProfile, settings: Settings) -> DriftTest:
    lengths = text_lengths(window[[SHORT, NOTES]])
    reference = np.asarray(profile.text_length.sample, dtype=float)
    result = stats.ks_2samp(lengths, reference)
    median, reference_median = float(np.median(lengths)), float(np.median(reference))
    return DriftTest(
        "text_length_ks",
        float(result.statistic),
        settings.ks_threshold,
        Verdict.NO_DRIFT,
        f"median length {median:.0f} vs {reference_median:.0f} characters",
        p_value=float(result.pvalue),
        effect_exceeded=float(result.statistic) >= settings.ks_threshold,
    )


def _class_test(window: pd.DataFrame, profile: ReferenceProfile, settings: Settings) -> DriftTest:
    reference_shares: dict[str, float] = profile.predicted_class_distribution
    window_counts = window["prediction"].astype(str).value_counts()
    classes = sorted(set(reference_shares) | set(window_counts.index))
    reference_n = int(profile.predicted_rows or 1000)
    expected = np.array([reference_shares.get(c, 0.0) for c in classes])
    actual_counts = np.array([int(window_counts.get(c, 0)) for c in classes])
    table = np.vstack([np.round(expected * reference_n), actual_counts])
    table = table[:, table.sum(axis=0) > 0]
    p_value = float(stats.chi2_contingency(table).pvalue) if table.shape[1] > 1 else 1.0
    value = psi(expected, actual_counts / actual_counts.sum())
    moved = classes[int(np.argmax(np.abs(actual_counts / actual_counts.sum() - expected)))]
    return DriftTest(
        "predicted_class_psi",
        value,
        settings.psi_threshold,
        Verdict.NO_DRIFT,
        f"chi-square over {len(classes)} classes; largest move: {moved}"
        + ("; PSI above 0.1 (moderate)" if 0.1 <= value < settings.psi_threshold else ""),
        p_value=p_value,
        effect_exceeded=value >= settings.psi_threshold,
    )


def _vocabulary_tests(
    window: pd.DataFrame, profile: ReferenceProfile, settings: Settings
) -> list[DriftTest]:
    vocabulary: dict[str, float] = profile.vocabulary.token_shares
    texts = seeded_sample(window[[SHORT, NOTES]], VOCABULARY_DOCS, settings.seed)
    counts = token_counts(texts, profile.language or settings.language)
    total = sum(counts.values())
    if not total:
        return [
            _insufficient("vocabulary_js", settings.js_threshold, "no tokens in the window"),
            _insufficient("oov_rate", settings.oov_increase, "no tokens in the window"),
        ]
    tokens = list(vocabulary)[:JS_TOKENS]
    reference = np.array([*(vocabulary[t] for t in tokens), 0.0])
    reference[-1] = max(0.0, 1.0 - reference.sum())
    reference /= reference.sum()
    current = np.array([*(counts.get(t, 0) for t in tokens), 0.0]) / total
    current[-1] = max(0.0, 1.0 - current.sum())
    observed = float(jensenshannon(reference, current, base=2))
    rng = np.random.default_rng(settings.seed)
    draws = rng.multinomial(total, reference, size=NULL_DRAWS) / total
    noise = float(np.median([jensenshannon(reference, draw, base=2) for draw in draws]))
    excess = observed - noise
    outside = outside_share(counts, vocabulary)
    reference_oov = float(profile.vocabulary.oov_rate)
    new_tokens = [t for t, _ in counts.most_common() if t not in vocabulary][:5]
    return [
        DriftTest(
            "vocabulary_js",
            excess,
            settings.js_threshold,
            Verdict.NO_DRIFT,
            f"Jensen-Shannon distance {observed:.3f} over the {len(tokens)} commonest reference "
            f"tokens, {noise:.3f} expected from sampling alone",
            effect_exceeded=excess >= settings.js_threshold,
        ),
        DriftTest(
            "oov_rate",
            outside - reference_oov,
            settings.oov_increase,
            Verdict.NO_DRIFT,
            f"out-of-vocabulary rate {outside:.3f} vs {reference_oov:.3f}; "
            f"frequent new tokens: {', '.join(new_tokens) or 'none'}",
            effect_exceeded=outside - reference_oov >= settings.oov_increase,
        ),
    ]


def _confidence_test(
    window: pd.DataFrame, profile: ReferenceProfile, settings: Settings
) -> DriftTest:
    low = int((window["confidence"].astype(float) < LOW_CONFIDENCE).sum())
    share = low / len(window)
    reference = float(profile.confidence.low_share)
    p_value = stats.binomtest(low, len(window), min(max(reference, 1e-3), 0.999), "greater").pvalue
    return DriftTest(
        "low_confidence_share",
        share,
        settings.low_confidence_share,
        Verdict.NO_DRIFT,
        f"{low} of {len(window)} under {LOW_CONFIDENCE} (reference share {reference:.3f})",
        p_value=float(p_value),
        effect_exceeded=share >= settings.low_confidence_share,
    )


def _concept_test(
    window: pd.DataFrame,
    reference_f1: float | None,
    settings: Settings,
    outcomes: HeldOutOutcomes | None = None,
) -> DriftTest:
    labelled = window[window["true_label"].notna()]
    name = "concept_macro_f1_drop"
    if reference_f1 is None:
        return _insufficient(name, settings.performance_drop, "the model has no test macro-F1")
    if len(labelled) < settings.min_feedback:
        return _insufficient(
            name,
            settings.performance_drop,
            f"{len(labelled)} labelled predictions; {settings.min_feedback} needed",
        )
    truth = labelled["true_label"].astype(str).tolist()
    predicted = labelled["prediction"].astype(str).tolist()
    if outcomes:
        # Macro-F1 on a small sample is biased low (rare classes score 0 more often), so compare
        # with the test set's macro-F1 at the window's size: resampled, it says what to expect.
        # The p-value asks whether the drop is larger than the tolerated one, not merely above
        # zero: production usually scores a little under the test set, and a few dozen labels
        # cannot tell a small gap from noise, so testing against zero would alarm on every
        # modest window.
        observed = float(macro_f1_replicates(truth, [predicted], 0, settings.seed)[0, 0])
        expected = resampled_macro_f1(
            outcomes.truth, outcomes.predicted, len(labelled), settings.seed, BOOTSTRAP_ROUNDS
        )
        reference_f1 = float(np.median(expected))
        drop = reference_f1 - observed
        tolerated = expected - settings.performance_drop
        p_value = float((np.sum(tolerated <= observed) + 1) / (len(expected) + 1))
    else:  # profiles written before test outcomes were kept
        observed, replicates = macro_f1_bootstrap(truth, predicted, BOOTSTRAP_ROUNDS, settings.seed)
        drop = reference_f1 - observed
        p_value = float((np.sum(replicates >= reference_f1) + 1) / (len(replicates) + 1))
    return DriftTest(
        name,
        drop,
        settings.performance_drop,
        Verdict.NO_DRIFT,
        f"macro-F1 {observed:.3f} on {len(labelled)} labelled vs {reference_f1:.3f} expected "
        "from the test set",
        p_value=p_value,
        effect_exceeded=drop >= settings.performance_drop,
    )


def _estimated_test(estimate: PerformanceEstimate | None, settings: Settings) -> list[DriftTest]:
    """The estimated macro-F1's drop from what the held-out set estimates, beyond the tolerated
    drop (p-value: the bootstrap's chance it is within it); no test without an estimate."""
    if estimate is None:
        return []
    drop = estimate.expected_macro_f1 - estimate.estimated_macro_f1
    low, high = getattr(estimate, estimate.default).macro_f1_interval
    return [
        DriftTest(
            "estimated_macro_f1_drop",
            drop,
            settings.performance_drop,
            Verdict.NO_DRIFT,
            f"estimated macro-F1 {estimate.estimated_macro_f1:.3f} (95% {low:.3f}-{high:.3f}, "
            f"{estimate.default}) vs {estimate.expected_macro_f1:.3f} on the held-out set",
            p_value=estimate.drop_p_value,
            effect_exceeded=drop >= settings.performance_drop,
        )
    ]


def _holm(tests: list[DriftTest], alpha: float) -> list[DriftTest]:
    """Holm's step-down levels for the tests with p-values; a test fires when it is significant
    at its level (effect-only tests need no level) and its effect size exceeds the threshold."""
    tested = sorted(
        (
            i
            for i, t in enumerate(tests)
            if t.p_value is not None and t.verdict != Verdict.INSUFFICIENT
        ),
        key=lambda i: float(tests[i].p_value or 0.0),
    )
    levels: dict[int, tuple[float | None, bool]] = {}
    rejecting = True
    for rank, i in enumerate(tested):
        holm_level = alpha / (len(tested) - rank)
        rejecting = rejecting and float(tests[i].p_value or 0.0) < holm_level
        levels[i] = (holm_level, rejecting)
    decided = []
    for i, test in enumerate(tests):
        if test.verdict == Verdict.INSUFFICIENT:
            decided.append(test)
            continue
        level, significant = levels.get(i, (None, True))
        verdict = Verdict.DRIFT if significant and test.effect_exceeded else Verdict.NO_DRIFT
        decided.append(replace(test, alpha=level, verdict=verdict))
    return decided


def drift_report(
    window: pd.DataFrame,
    profile: ReferenceProfile,
    reference_f1: float | None,
    settings: Settings,
    sample: pd.DataFrame | None = None,
) -> DriftReport:
    """The report for a prediction-log window against a model's reference profile. The class,
    confidence and concept tests count every row of ``window`` (which needs only the log's
    ``COUNT_COLUMNS``); the length, vocabulary and estimate tests and the explanations read
    ``sample`` (every column), by default a seeded sample of ``STATISTIC_ROWS`` of the window."""
    n = len(window)
    labelled = int(window["true_label"].notna().sum()) if n else 0
    if sample is None:
        sample = seeded_sample(window, STATISTIC_ROWS, settings.seed)
    if n < settings.min_predictions:
        detail = f"{n} predictions; {settings.min_predictions} needed"
        thresholds = {
            "text_length_ks": settings.ks_threshold,
            "predicted_class_psi": settings.psi_threshold,
            "vocabulary_js": settings.js_threshold,
            "oov_rate": settings.oov_increase,
            "low_confidence_share": settings.low_confidence_share,
        }
        tests = [_insufficient(name, limit, detail) for name, limit in thresholds.items()]
    else:
        tests = [
            _length_test(sample, profile, settings),
            _class_test(window, profile, settings),
            *_vocabulary_tests(sample, profile, settings),
            _confidence_test(window, profile, settings),
        ]
    concept = _concept_test(window, reference_f1, settings, profile.test_outcomes)
    estimated = None
    if profile.estimation and n >= settings.min_predictions and "top_probabilities" in sample:
        estimated = estimate_performance(
            sample, profile.estimation, settings.seed, settings.performance_drop
        )
    tests = _holm([*tests, concept, *_estimated_test(estimated, settings)], settings.drift_p_value)
    language = profile.language or settings.language
    tests = [
        replace(test, explanation=explain(test.name, sample, profile, language, settings.seed))
        if test.fired
        else test
        for test in tests
    ]
    decided = [test for test in tests if test.verdict != Verdict.INSUFFICIENT]
    fired = [test for test in decided if test.fired]
    score = len(fired) / len(decided) if decided else 0.0
    return DriftReport(
        tests=tests,
        n_predictions=n,
        n_feedback=labelled,
        drift_score=score,
        drift_score_threshold=settings.drift_score_threshold,
        drift_detected=bool(fired),
        reasons=[reason_line(t.name, t.detail, t.explanation) for t in fired],
        estimated=estimated,
    )
