"""The reference profile: what production traffic is compared against (text lengths, classes,
vocabulary, confidence, and the test set's outcomes), computed once at training time from the
training and held-out rows and stored in the bundle's manifest, so a drift check never touches the
training data again."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from core.data.tables import LABEL, NOTES, SHORT
from core.monitoring.estimation import fit_estimation
from core.records import LOW_CONFIDENCE
from core.release.manifest import ReferenceProfile
from core.text import as_documents, normalize

LENGTH_SAMPLE = 2000


VOCABULARY_SIZE = 2000
BIGRAMS = 1000


LENGTH_BINS = 10


TEST_OUTCOMES = 5000

#: Rows of a window the length test and the performance estimate read at most: a seeded,
#: uniform sample of larger windows. Both stay sound on the sample (the KS test's power is bounded
#: by the reference's 2,000 lengths; the estimate's bootstrap interval is the sample's, so it is
#: wider, never narrower, than the whole window's), and their cost stops growing with the window.
STATISTIC_ROWS = 20_000


def seeded_sample(frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    """A uniform sample of ``rows`` of ``frame``'s rows, seeded; the frame itself if smaller."""
    return frame if len(frame) <= rows else frame.sample(rows, random_state=seed)


def text_lengths(frame: pd.DataFrame) -> np.ndarray:
    """Characters per ticket (all text fields joined)."""
    return np.asarray([len(doc) for doc in as_documents(frame)], dtype=np.int64)


def token_counts(frame: pd.DataFrame, language: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    for doc in as_documents(frame):
        counts.update(normalize(doc, language).split())
    return counts


def bigram_shares(frame: pd.DataFrame, language: str, top: int = BIGRAMS) -> dict[str, float]:
    """The ``top`` commonest adjacent-word pairs and their shares of all pairs."""
    counts: Counter[str] = Counter()
    for doc in as_documents(frame):
        tokens = normalize(doc, language).split()
        counts.update(f"{a} {b}" for a, b in itertools.pairwise(tokens))
    total = sum(counts.values()) or 1
    return {pair: count / total for pair, count in counts.most_common(top)}


def _shares(values: Any) -> dict[str, float]:
    series = pd.Series(np.asarray(values, dtype=object)).value_counts(normalize=True)
    return {str(label): float(share) for label, share in series.sort_index().items()}


def outside_share(counts: Counter[str], vocabulary: dict[str, float]) -> float:
    total = sum(counts.values())
    return (
        sum(n for token, n in counts.items() if token not in vocabulary) / total if total else 0.0
    )


def build_reference_profile(
    train: pd.DataFrame,
    test_texts: pd.DataFrame,
    test_probabilities: np.ndarray,
    classes: list[str],
    language: str,
    seed: int,
    test_truth: Sequence[str] | None = None,
) -> ReferenceProfile:
    """What production traffic is compared against: lengths, classes, vocabulary, confidence.
    Class, vocabulary and confidence references come from the held-out test set, which the model
    sees the way it sees production traffic."""
    texts = train[[SHORT, NOTES]]
    lengths = text_lengths(texts)
    rng = np.random.default_rng(seed)
    sample = rng.choice(lengths, size=min(LENGTH_SAMPLE, len(lengths)), replace=False)
    edges = np.unique(np.quantile(lengths, np.linspace(0, 1, LENGTH_BINS + 1)))
    vocabulary = token_counts(texts, language)
    total = sum(vocabulary.values()) or 1
    top = {token: count / total for token, count in vocabulary.most_common(VOCABULARY_SIZE)}
    test_tokens = token_counts(test_texts[[SHORT, NOTES]], language)
    confidence = test_probabilities.max(axis=1) if len(test_probabilities) else np.zeros(0)
    predicted = [classes[i] for i in test_probabilities.argmax(axis=1)]
    return ReferenceProfile.model_validate(
        {
            "language": language,
            "text_length": {"bin_edges": edges.tolist(), "sample": sorted(sample.tolist())},
            "label_distribution": _shares(train[LABEL]),
            "predicted_class_distribution": _shares(predicted),
            "predicted_rows": len(predicted),
            "vocabulary": {
                "token_shares": top,
                "covered_share": sum(top.values()),
                "oov_rate": outside_share(test_tokens, top),
                "bigram_shares": bigram_shares(texts, language),
            },
            "confidence": {
                "mean": float(confidence.mean()) if len(confidence) else 0.0,
                "low_share": float((confidence < LOW_CONFIDENCE).mean())
                if len(confidence)
                else 0.0,
            },
            "rows": len(train),
            "test_outcomes": _test_outcomes(test_truth, predicted, seed),
            "estimation": fit_estimation(test_probabilities, classes, list(test_truth))
            if test_truth is not None and len(test_truth) == len(predicted) and len(predicted)
            else None,
        }
    )


def _test_outcomes(
    truth: Sequence[str] | None, predicted: list[str], seed: int
) -> dict[str, list[str]] | None:
    """The held-out test set's (true, predicted) labels, at most TEST_OUTCOMES of them: what the
    concept test resamples to know the macro-F1 to expect from a window of a given size."""
    if truth is None or len(truth) != len(predicted) or not len(truth):
        return None
    rows = np.arange(len(truth))
    if len(rows) > TEST_OUTCOMES:
        rows = np.sort(np.random.default_rng(seed).choice(rows, TEST_OUTCOMES, replace=False))
    return {
        "truth": [str(truth[int(i)]) for i in rows],
        "predicted": [predicted[int(i)] for i in rows],
    }
