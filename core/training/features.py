"""The text and feature part of every pipeline: how a ticket is normalised and turned into
features (word and character TF-IDF, the static token table, the sentence encoder), each
setting's search space and defaults. The normaliser is stateless and the features depend only on
these settings, so tuning computes both once per setting and fold and searches the heads
(core/training/families.py) on top."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.pipeline import FeatureUnion

from core.embeddings import SentenceEncoderEmbedding, StaticTokenEmbedding
from core.models import CompactTfidfVectorizer
from core.ngrams import WORD_TOKEN_PATTERN
from core.text import TextNormalizer

if TYPE_CHECKING:
    import optuna

Params = dict[str, Any]


TEXT_KEYS = ("text_level", "stem", "remove_stop_words")


FEATURE_KEYS = ("word_ngram_max", "char_ngrams", "min_df", "embedding_weight", "encoder_weight")


CHAR_NGRAMS: dict[str, tuple[str, tuple[int, int]] | None] = {
    "none": None,
    "char_2_5": ("char", (2, 5)),
    "char_1_4": ("char", (1, 4)),
    "char_wb_2_5": ("char_wb", (2, 5)),
}


TFIDF_MAX_FEATURES = 300_000


#: Shares of the static token-embedding block next to the TF-IDF blocks; 0 leaves it out.
EMBEDDING_WEIGHTS = (0.0, 0.5, 1.0, 2.0)


#: Shares of the sentence-encoder block (the standard profile); 0 leaves it out. Measured on
#: Banking77 with LinearSVC: TF-IDF 0.913, + encoder at 1: 0.924, at 2: 0.933, at 3: 0.938.
ENCODER_WEIGHTS = (0.0, 1.0, 2.0, 3.0)


#: The weight the studies try first, right after the defaults.
ENCODER_FIRST_WEIGHT = 2.0


#: Words of a ticket the encoder reads: the short description and the start of the close notes
#: carry the topic, and the cost grows with the length (long IT close notes: 45 ms a ticket).
ENCODER_MAX_WORDS = 48


ENCODER_PREFIX = "query"


def suggest_text(trial: optuna.Trial) -> Params:
    """Light cleaning, or full normalisation with optional stemming and stop-word removal."""
    level = trial.suggest_categorical("text_level", ["light", "full"])
    if level == "light":
        return {"text_level": level}
    return {
        "text_level": level,
        "stem": trial.suggest_categorical("stem", [True, False]),
        "remove_stop_words": trial.suggest_categorical("remove_stop_words", [False, True]),
    }


def build_normalizer(text_params: Params, language: str) -> TextNormalizer:
    return TextNormalizer(
        language=language,
        level=text_params.get("text_level", "full"),
        stem=text_params.get("stem", False),
        remove_stop_words=text_params.get("remove_stop_words", False),
    )


def suggest_features(
    trial: optuna.Trial, embeddings: bool = False, encoder: bool = False, text_level: str = "light"
) -> Params:
    """Word n-grams, character n-grams across (``char``) or within (``char_wb``) words and, for
    families that take dense signed features, the weight of the token-embedding block and (with
    ``encoder``) of the sentence-encoder block. The encoder reads the lightly cleaned text only:
    stemmed, stop-word-free text is not language it was trained on, and every other text setting
    would cost a second embedding of every ticket."""
    params: Params = {
        "word_ngram_max": trial.suggest_int("word_ngram_max", 1, 2),
        "char_ngrams": trial.suggest_categorical("char_ngrams", list(CHAR_NGRAMS)),
        "min_df": trial.suggest_int("min_df", 1, 2),
    }
    if embeddings:
        weight = trial.suggest_categorical("embedding_weight", list(EMBEDDING_WEIGHTS))
        params["embedding_weight"] = weight
    if embeddings and encoder and text_level == "light":
        params["encoder_weight"] = trial.suggest_categorical(
            "encoder_weight", list(ENCODER_WEIGHTS)
        )
    return params


DEFAULT_TEXT: Params = {"text_level": "light"}


DEFAULT_FEATURES: Params = {"word_ngram_max": 2, "char_ngrams": "char_2_5", "min_df": 1}


def build_features(params: Params) -> FeatureUnion:
    """Word TF-IDF (``min_df`` applies to words), plus character TF-IDF unless ``char_ngrams`` is
    "none" (character n-grams seen once are always dropped, they are mostly noise), plus the
    static token embeddings when ``embedding_weight`` is above 0."""
    common = {
        "lowercase": False,
        "max_features": TFIDF_MAX_FEATURES,
        "sublinear_tf": True,
        "dtype": np.float32,
    }
    word = CompactTfidfVectorizer(
        token_pattern=WORD_TOKEN_PATTERN,
        ngram_range=(1, params["word_ngram_max"]),
        min_df=params["min_df"],
        **common,
    )
    parts: list[tuple[str, Any]] = [("word", word)]
    char = CHAR_NGRAMS[params["char_ngrams"]]
    if char is not None:
        analyzer, ngram_range = char
        chars = CompactTfidfVectorizer(
            analyzer=analyzer, ngram_range=ngram_range, min_df=2, **common
        )
        parts.append(("char", chars))
    if params.get("embedding_weight", 0.0) > 0:
        parts.append(("embedding", StaticTokenEmbedding(weight=params["embedding_weight"])))
    if params.get("encoder_weight", 0.0) > 0:
        parts.append(("encoder", encoder_block(params["encoder_weight"])))
    return FeatureUnion(parts)


def encoder_block(weight: float) -> SentenceEncoderEmbedding:
    return SentenceEncoderEmbedding(
        weight=weight, prefix=ENCODER_PREFIX, max_words=ENCODER_MAX_WORDS
    )


def uses_encoder(params: Params) -> bool:
    """Whether a configuration's pipeline runs the sentence encoder (an ensemble's: whether a
    member's does)."""
    members = params.get("members")
    if isinstance(members, list):
        return any(uses_encoder(dict(member.get("params", {}))) for member in members)
    return float(params.get("encoder_weight", 0.0)) > 0


def has_dense_block(params: Params) -> bool:
    """Whether the features hold a dense block (token table or encoder) beside the TF-IDF."""
    return float(params.get("embedding_weight", 0.0)) > 0 or uses_encoder(params)
