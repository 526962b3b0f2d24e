"""The vectorised counter must give exactly scikit-learn's vocabulary and counts."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.feature_extraction.text import TfidfVectorizer

from core.models import CompactTfidfVectorizer
from core.ngrams import WORD_TOKEN_PATTERN, NgramIndex, fit_counts
from core.training.features import build_features

CONFIGS = [
    {"analyzer": "char", "ngram_range": (2, 5)},
    {"analyzer": "char", "ngram_range": (1, 4)},
    {"analyzer": "char_wb", "ngram_range": (2, 5)},
    {"analyzer": "char_wb", "ngram_range": (4, 6)},
    {"analyzer": "word", "ngram_range": (1, 2), "token_pattern": WORD_TOKEN_PATTERN},
    {"analyzer": "word", "ngram_range": (2, 3), "token_pattern": WORD_TOKEN_PATTERN},
]
# Whitespace of every kind scikit-learn's "\s\s+" rule and str.split() see, plus accents,
# combining marks, CJK, emoji and lone surrogates.
ALPHABET = st.sampled_from(
    [*"ab cdé\u0301\t\n\x0b\x0c\r\x1c\x1f\u00a0\u2028\u3000ñ中😀_-.1", "\ud800", "\udfff"]
)
TEXTS = st.lists(st.text(ALPHABET, max_size=40), min_size=1, max_size=8)


def _reference(config: dict[str, Any], **extra: Any) -> TfidfVectorizer:
    return TfidfVectorizer(lowercase=False, dtype=np.float32, **config, **extra)


def _fast(config: dict[str, Any], **extra: Any) -> CompactTfidfVectorizer:
    return CompactTfidfVectorizer(lowercase=False, dtype=np.float32, **config, **extra)


def _same_fit(config: dict[str, Any], train: list[str], test: list[str], **extra: Any) -> None:
    try:
        expected = _reference(config, **extra).fit(train)
    except ValueError as error:
        with pytest.raises(ValueError, match=str(error)[:20]):
            _fast(config, **extra).fit(train)
        return
    fast = _fast(config, **extra)
    fast_train = fast.fit_transform(train)
    assert fast.vocabulary_ == expected.vocabulary_
    np.testing.assert_allclose(fast.idf_, expected.idf_)
    for documents, matrix in ((train, fast_train), (test, fast.transform(test))):
        reference = expected.transform(documents)
        assert (abs(matrix - reference) > 1e-6).nnz == 0


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c['analyzer']}{c['ngram_range']}")
@settings(max_examples=60, deadline=None)
@given(train=TEXTS, test=TEXTS)
def test_counts_equal_scikit_learn_on_any_text(
    config: dict[str, Any], train: list[str], test: list[str]
) -> None:
    _same_fit(config, train, test)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c['analyzer']}{c['ngram_range']}")
def test_limits_and_unseen_text_match_scikit_learn(config: dict[str, Any]) -> None:
    rng = np.random.default_rng(0)
    words = ["sesion", "clave", "pago", "transferencia", "fiducia", "error", "app", "ñandú"]
    train = [" ".join(rng.choice(words, size=rng.integers(1, 12))) for _ in range(300)]
    test = [" ".join(rng.choice([*words, "nuevo", "zzz"], size=8)) for _ in range(50)]
    _same_fit(config, train, test, min_df=2, max_features=40, sublinear_tf=True)


def test_pipeline_features_are_unchanged_by_the_fast_counter() -> None:
    rng = np.random.default_rng(1)
    documents = np.array(
        ["".join(rng.choice(list("abcde fgh.ñ"), size=rng.integers(0, 80))) for _ in range(200)],
        dtype=object,
    )
    for char_ngrams in ("char_2_5", "char_wb_2_5", "char_1_4"):
        fast = build_features({"word_ngram_max": 2, "char_ngrams": char_ngrams, "min_df": 1})
        slow = build_features({"word_ngram_max": 2, "char_ngrams": char_ngrams, "min_df": 1})
        for _, vectorizer in slow.transformer_list:
            vectorizer._fast_counting = lambda documents: False
        expected = slow.fit_transform(documents)
        assert (abs(fast.fit_transform(documents) - expected) > 1e-6).nnz == 0


def test_a_vocabulary_too_large_for_63_bit_codes_is_declined() -> None:
    many_characters = [
        "".join(chr(0x4E00 + i) for i in range(start, start + 50)) for start in range(0, 10_000, 50)
    ]
    assert fit_counts(many_characters, "char", (2, 5), np.float32) is None
    terms = {text[start : start + 5] for text in many_characters for start in range(0, 50, 5)}
    vocabulary = {term: i for i, term in enumerate(sorted(terms))}
    assert not NgramIndex(vocabulary, "char", (2, 5)).usable
    fallback = _fast({"analyzer": "char", "ngram_range": (2, 5)}).fit(many_characters)
    assert (
        fallback.vocabulary_
        == _reference({"analyzer": "char", "ngram_range": (2, 5)}).fit(many_characters).vocabulary_
    )
