"""Drift statistics. The reference profile is computed once at training time and stored in the
bundle's manifest, so a check never has to touch the training data again."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

from core.data import LABEL
from core.text import as_documents, normalize

LOW_CONFIDENCE = 0.5
LENGTH_SAMPLE = 2000
VOCABULARY_SIZE = 5000
LENGTH_BINS = 10


def text_lengths(frame: pd.DataFrame) -> np.ndarray:
    """Characters per ticket (all text fields joined)."""
    return np.asarray([len(doc) for doc in as_documents(frame)], dtype=np.int64)


def token_counts(frame: pd.DataFrame, language: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    for doc in as_documents(frame):
        counts.update(normalize(doc, language).split())
    return counts


def _shares(values: Any) -> dict[str, float]:
    series = pd.Series(np.asarray(values, dtype=object)).value_counts(normalize=True)
    return {str(label): float(share) for label, share in series.sort_index().items()}


def build_reference_profile(
    train: pd.DataFrame,
    test_texts: pd.DataFrame,
    test_probabilities: np.ndarray,
    classes: list[str],
    language: str,
    seed: int,
) -> dict[str, Any]:
    """What production traffic is compared against: lengths, classes, vocabulary, confidence."""
    lengths = text_lengths(train)
    rng = np.random.default_rng(seed)
    sample = rng.choice(lengths, size=min(LENGTH_SAMPLE, len(lengths)), replace=False)
    edges = np.unique(np.quantile(lengths, np.linspace(0, 1, LENGTH_BINS + 1)))
    vocabulary = token_counts(train, language)
    total = sum(vocabulary.values()) or 1
    top = dict(vocabulary.most_common(VOCABULARY_SIZE))
    test_tokens = token_counts(test_texts, language)
    test_total = sum(test_tokens.values()) or 1
    oov = sum(count for token, count in test_tokens.items() if token not in vocabulary)
    confidence = test_probabilities.max(axis=1) if len(test_probabilities) else np.zeros(0)
    predicted = [classes[i] for i in test_probabilities.argmax(axis=1)]
    return {
        "language": language,
        "text_length": {"bin_edges": edges.tolist(), "sample": sorted(sample.tolist())},
        "label_distribution": _shares(train[LABEL]),
        "predicted_class_distribution": _shares(predicted),
        "vocabulary": {
            "token_shares": {token: count / total for token, count in top.items()},
            "covered_share": sum(top.values()) / total,
            "oov_rate": oov / test_total,
        },
        "confidence": {
            "mean": float(confidence.mean()) if len(confidence) else 0.0,
            "low_share": float((confidence < LOW_CONFIDENCE).mean()) if len(confidence) else 0.0,
        },
        "rows": len(train),
    }
