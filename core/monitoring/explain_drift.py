"""What changed, when a drift test fires: in words an operator (or an agent) can act on.

A test statistic says *that* traffic moved; these say *what* moved, each beside its reference:
- vocabulary: the words and bigrams whose share of the window's tokens rose or fell most (a term
  outside the reference vocabulary counts as new, share 0 before);
- predicted classes: the classes gained and lost;
- text length: the length ranges (the reference profile's quantile bins) gained and lost;
- low confidence: the classes the unsure answers went to;
- concept: the commonest (true label -> predicted) mistakes among labelled tickets;
and up to ``EXAMPLES`` request ids of tickets that carry the change.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from core.data.tables import NOTES, SHORT
from core.records import LOW_CONFIDENCE
from core.release.manifest import ReferenceProfile
from core.text import as_documents, normalize

EXAMPLES = 5
TOP_TERMS = 8
TOP_CATEGORIES = 3


@dataclass(frozen=True)
class Shift:
    """One term, class or length range: its share in the window and in the reference (None:
    not in the reference at all)."""

    name: str
    share: float
    reference_share: float | None

    @property
    def change(self) -> float:
        return self.share - (self.reference_share or 0.0)

    def describe(self) -> str:
        before = "new" if self.reference_share is None else f"{self.reference_share:.1%}"
        return f"{self.name} {before} -> {self.share:.1%}"


@dataclass(frozen=True)
class DriftExplanation:
    """What moved for one fired test, and tickets that show it."""

    summary: str
    gained: list[Shift] = field(default_factory=list)
    lost: list[Shift] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)


def _split(shifts: Iterable[Shift], top: int) -> tuple[list[Shift], list[Shift]]:
    ordered = sorted(shifts, key=lambda s: (s.change, s.name))
    gained = [s for s in reversed(ordered) if s.change > 0][:top]
    lost = [s for s in ordered if s.change < 0][:top]
    return gained, lost


def _summary(gained: list[Shift], lost: list[Shift], what: str) -> str:
    parts = []
    if gained:
        parts.append(f"{what} gained: " + ", ".join(s.describe() for s in gained))
    if lost:
        parts.append(f"{what} lost: " + ", ".join(s.describe() for s in lost))
    return "; ".join(parts) or f"no single {what[:-1]} stands out"


def _ids(rows: pd.DataFrame) -> list[str]:
    if "request_id" not in rows.columns:
        return []
    return [str(value) for value in rows["request_id"].head(EXAMPLES)]


def _terms(tokens: list[str]) -> list[str]:
    """A ticket's words and adjacent-word bigrams."""
    return tokens + [f"{a} {b}" for a, b in itertools.pairwise(tokens)]


def explain_vocabulary(
    window: pd.DataFrame,
    profile: ReferenceProfile,
    language: str,
    new_only: bool = False,
    sample: int = 5000,
    seed: int = 0,
) -> DriftExplanation:
    """Words and bigrams whose share rose or fell most (``new_only``: rose, outside the
    reference vocabulary), and tickets with the terms that rose most."""
    rows = window if len(window) <= sample else window.sample(sample, random_state=seed)
    documents = [normalize(doc, language).split() for doc in as_documents(rows[[SHORT, NOTES]])]
    words: Counter[str] = Counter()
    pairs: Counter[str] = Counter()
    for tokens in documents:
        words.update(tokens)
        pairs.update(f"{a} {b}" for a, b in itertools.pairwise(tokens))
    reference_words = profile.vocabulary.token_shares
    reference_pairs = profile.vocabulary.bigram_shares
    shifts = []
    for counts, reference in ((words, reference_words), (pairs, reference_pairs)):
        total = sum(counts.values()) or 1
        known_pairs = bool(reference) or counts is words
        for term, count in counts.items():
            if count < 2 and term not in reference:
                continue  # one ticket's typo is not a trend
            before = reference.get(term)
            if before is None and not known_pairs:
                continue  # a profile without bigram shares cannot say a bigram is new
            shifts.append(Shift(term, count / total, before))
        for term, before in reference.items():
            if term not in counts:
                shifts.append(Shift(term, 0.0, before))
    if new_only:
        shifts = [s for s in shifts if s.reference_share is None]
    gained, lost = _split(shifts, TOP_TERMS)
    if new_only:
        lost = []
    marker = {s.name for s in gained[:3]}
    carriers = [i for i, tokens in enumerate(documents) if marker.intersection(_terms(tokens))]
    return DriftExplanation(
        _summary(gained, lost, "new terms" if new_only else "terms"),
        gained,
        lost,
        _ids(rows.iloc[carriers]),
    )


def _shares(values: pd.Series) -> dict[str, float]:
    return {str(k): float(v) for k, v in values.value_counts(normalize=True).items()}


def explain_classes(window: pd.DataFrame, profile: ReferenceProfile) -> DriftExplanation:
    """Predicted classes gained and lost, and tickets of the class that gained most."""
    current = _shares(window["prediction"].astype(str))
    reference = profile.predicted_class_distribution
    shifts = [
        Shift(label, current.get(label, 0.0), reference.get(label))
        for label in sorted(set(current) | set(reference))
    ]
    gained, lost = _split(shifts, TOP_CATEGORIES)
    top = window[window["prediction"].astype(str) == gained[0].name] if gained else window[:0]
    return DriftExplanation(_summary(gained, lost, "classes"), gained, lost, _ids(top))


def _length_label(low: float, high: float | None) -> str:
    return f"{low:.0f}+ characters" if high is None else f"{low:.0f}-{high:.0f} characters"


def explain_lengths(window: pd.DataFrame, profile: ReferenceProfile) -> DriftExplanation:
    """Length ranges (the reference's quantile bins, open at both ends) gained and lost, and
    tickets in the range that gained most."""
    edges = np.asarray(profile.text_length.bin_edges, dtype=float)
    lengths = np.asarray([len(doc) for doc in as_documents(window[[SHORT, NOTES]])])
    reference = np.asarray(profile.text_length.sample, dtype=float)
    inner = edges[1:-1]
    names = [_length_label(0, edges[1] if len(edges) > 1 else None)]
    names += [_length_label(lo, hi) for lo, hi in zip(inner, [*inner[1:], None], strict=True)]
    bins = np.searchsorted(inner, lengths, side="right")
    reference_bins = np.searchsorted(inner, reference, side="right")
    current = np.bincount(bins, minlength=len(names)) / max(len(lengths), 1)
    before = np.bincount(reference_bins, minlength=len(names)) / max(len(reference), 1)
    shifts = [Shift(n, float(c), float(b)) for n, c, b in zip(names, current, before, strict=True)]
    gained, lost = _split(shifts, TOP_CATEGORIES)
    top = window[bins == names.index(gained[0].name)] if gained else window[:0]
    return DriftExplanation(_summary(gained, lost, "lengths"), gained, lost, _ids(top))


def explain_confidence(window: pd.DataFrame, profile: ReferenceProfile) -> DriftExplanation:
    """The classes the low-confidence answers went to (against the reference's class shares),
    and the least confident tickets."""
    unsure = window[window["confidence"].astype(float) < LOW_CONFIDENCE]
    current = _shares(unsure["prediction"].astype(str)) if len(unsure) else {}
    reference = profile.predicted_class_distribution
    shifts = [Shift(label, share, reference.get(label)) for label, share in current.items()]
    gained, _ = _split(shifts, TOP_CATEGORIES)
    least = window.sort_values("confidence", kind="stable")
    summary = _summary(gained, [], "unsure classes")
    return DriftExplanation(summary, gained, [], _ids(least[least["confidence"] < LOW_CONFIDENCE]))


def explain_concept(window: pd.DataFrame) -> DriftExplanation:
    """The commonest mistakes among labelled tickets, and mistaken tickets."""
    labelled = window[window["true_label"].notna()]
    wrong = labelled[labelled["true_label"].astype(str) != labelled["prediction"].astype(str)]
    pairs = Counter(
        f"{t} -> {p}"
        for t, p in zip(
            wrong["true_label"].astype(str), wrong["prediction"].astype(str), strict=True
        )
    )
    total = max(len(labelled), 1)
    gained = [Shift(name, count / total, None) for name, count in pairs.most_common(3)]
    summary = (
        "commonest mistakes: " + ", ".join(f"{s.name} ({s.share:.1%})" for s in gained)
        if gained
        else "no mistakes among labelled tickets"
    )
    return DriftExplanation(summary, gained, [], _ids(wrong))


def explain(
    name: str, window: pd.DataFrame, profile: ReferenceProfile, language: str, seed: int
) -> DriftExplanation | None:
    """The explanation of the test called ``name``, or None for a test without one."""
    if name == "vocabulary_js":
        return explain_vocabulary(window, profile, language, seed=seed)
    if name == "oov_rate":
        return explain_vocabulary(window, profile, language, new_only=True, seed=seed)
    if name == "predicted_class_psi":
        return explain_classes(window, profile)
    if name == "text_length_ks":
        return explain_lengths(window, profile)
    if name == "low_confidence_share":
        return explain_confidence(window, profile)
    if name == "concept_macro_f1_drop":
        return explain_concept(window)
    return None


def reason_line(name: str, detail: str, explanation: DriftExplanation | None) -> str:
    """One line per fired test: the statistic's detail, then what changed and example tickets."""
    line = f"{name}: {detail}"
    if explanation is not None:
        line += f". What changed: {explanation.summary}"
        if explanation.examples:
            line += f" (e.g. tickets {', '.join(explanation.examples[:3])})"
    return line


def explanation_markdown(name: str, explanation: DriftExplanation) -> list[str]:
    lines = [f"### {name}", "", explanation.summary]
    if explanation.examples:
        lines.append(f"Example tickets: {', '.join(explanation.examples)}")
    return [*lines, ""]


def what_changed_markdown(tests: list[tuple[str, DriftExplanation | None]]) -> list[str]:
    """The report's "What changed" section: one part per explained test (none: no lines)."""
    explained = [(name, e) for name, e in tests if e is not None]
    if not explained:
        return []
    lines = ["", "## What changed", ""]
    for name, explanation in explained:
        lines += explanation_markdown(name, explanation)
    return lines
