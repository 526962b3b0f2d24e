"""Spanish-first text normaliser: a pure function and a scikit-learn transformer.

The transformer sits inside the saved pipeline, so serving can never preprocess differently from
training. Everything it needs (stop words, Snowball rules) ships with the code: no downloads.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd
from nltk.stem.snowball import SnowballStemmer
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

URL_TOKEN = "urltoken"
EMAIL_TOKEN = "emailtoken"
TICKET_TOKEN = "ticketidtoken"
NUMBER_TOKEN = "numtoken"
RESERVED_TOKENS = frozenset({URL_TOKEN, EMAIL_TOKEN, TICKET_TOKEN, NUMBER_TOKEN})

# Every pattern below runs in linear time on any text (benchmarks/text.py measures adversarial
# inputs): a ticket is user input, and the model batcher is serial, so one slow
# ticket would hold up every prediction behind it. The two that backtracked quadratically as
# plain regexes (script/style blocks, e-mails) are scanners that give the same output.
_SCRIPT_STYLE_OPEN = re.compile(r"<(script|style)\b", re.IGNORECASE)
_SCRIPT_STYLE_CLOSE = {
    kind: re.compile(rf"</{kind}\s*>", re.IGNORECASE) for kind in ("script", "style")
}
_TAG = re.compile(r"<[^<>]{0,500}>")
_URL = re.compile(r"(?:https?://|ftp://|www\.)\S+", re.IGNORECASE)
_EMAIL_LOCAL_RUN = re.compile(r"[\w.+-]+")
_EMAIL_DOMAIN = re.compile(r"[\w-]+(?:\.[\w-]+)+")
_TICKET = re.compile(r"#\d+|\b[a-z]{2,5}[-_]?\d{3,}(?:[-_]\d+)*\b", re.IGNORECASE)
_NUMBER = re.compile(r"\d+(?:[.,:/-]\d+)*")
_TOKEN = re.compile(r"\w+")
_MAX_TOKEN_CHARS = 40
_MAX_ROUNDS = 4


@lru_cache(maxsize=8)
def stop_words(language: str) -> frozenset[str]:
    """Accent-folded stop words for ``language`` (bundled; empty when none is known)."""
    if language == "english":
        return frozenset(_fold(word) for word in ENGLISH_STOP_WORDS)
    try:
        text = resources.files("core.resources").joinpath(f"stopwords_{language}.txt").read_text()
    except FileNotFoundError:
        return frozenset()
    lines = (line.strip() for line in text.splitlines())
    return frozenset(_fold(line) for line in lines if line and not line.startswith("#"))


@lru_cache(maxsize=200_000)
def _fold(token: str) -> str:
    """Accent folding that keeps the base letter: 'sesión' -> 'sesion'."""
    if token.isascii():
        return token
    decomposed = unicodedata.normalize("NFKD", token)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return unicodedata.normalize("NFKC", stripped)


@lru_cache(maxsize=8)
def _stemmer(language: str) -> SnowballStemmer | None:
    return SnowballStemmer(language) if language in SnowballStemmer.languages else None


@lru_cache(maxsize=200_000)
def _stem_token(token: str, language: str) -> str:
    stemmer = _stemmer(language)
    if stemmer is None or token in RESERVED_TOKENS:
        return token
    return _fold(stemmer.stem(token))


def strip_script_style(text: str) -> str:
    r"""``<script>...</script>`` and ``<style>...</style>`` blocks replaced by a space: what
    ``re.sub(r"<(script|style)\b.*?</\1\s*>", " ", text, flags=IGNORECASE | DOTALL)`` gives,
    in linear time (that pattern rescans to the end for every unclosed opening tag)."""
    if "<" not in text:
        return text
    parts: list[str] = []
    kept_from = search_from = 0
    unclosed: set[str] = set()  # kinds with no closing tag after some point: none later either
    while (opening := _SCRIPT_STYLE_OPEN.search(text, search_from)) is not None:
        kind = opening.group(1).lower()
        closing = None
        if kind not in unclosed:
            closing = _SCRIPT_STYLE_CLOSE[kind].search(text, opening.end())
            if closing is None:
                unclosed.add(kind)
        if closing is None:
            search_from = opening.start() + 1
            continue
        parts += [text[kept_from : opening.start()], " "]
        kept_from = search_from = closing.end()
    parts.append(text[kept_from:])
    return "".join(parts)


def mask_emails(text: str) -> str:
    r"""E-mail addresses replaced by the e-mail token: what
    ``re.sub(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", ...)`` gives, in linear time (that pattern tries
    every start inside a long run of word characters and rescans the run from each)."""
    if "@" not in text:
        return text
    parts: list[str] = []
    kept_from = 0
    for run in _EMAIL_LOCAL_RUN.finditer(text):
        at = run.end()
        if at >= len(text) or text[at] != "@" or at <= kept_from:
            continue
        domain = _EMAIL_DOMAIN.match(text, at + 1)
        if domain is None:
            continue
        parts += [text[kept_from : max(run.start(), kept_from)], f" {EMAIL_TOKEN} "]
        kept_from = domain.end()
    parts.append(text[kept_from:])
    return "".join(parts)


def _mask(text: str) -> str:
    text = _URL.sub(f" {URL_TOKEN} ", text)
    text = mask_emails(text)
    text = _TICKET.sub(f" {TICKET_TOKEN} ", text)
    return _NUMBER.sub(f" {NUMBER_TOKEN} ", text)


def _normalize_once(text: str, language: str, remove_stop_words: bool) -> str:
    text = unicodedata.normalize("NFKC", html.unescape(text))
    text = _TAG.sub(" ", strip_script_style(text))
    text = _mask(text).lower()
    stops = stop_words(language) if remove_stop_words else frozenset()
    tokens = (_fold(raw[:_MAX_TOKEN_CHARS]) for raw in _TOKEN.findall(text))
    return " ".join(token for token in tokens if token and token not in stops)


def _fixed_point(step: Callable[[str], str], text: str) -> str:
    """Apply ``step`` until the text stops changing: idempotence by construction, which settles
    the rare Unicode characters whose case or compatibility mappings chain."""
    current = step(text)
    for _ in range(_MAX_ROUNDS):
        again = step(current)
        if again == current:
            break
        current = again
    return current


def _clean_once(text: str) -> str:
    text = unicodedata.normalize("NFKC", html.unescape(text))
    text = _TAG.sub(" ", strip_script_style(text))
    return " ".join(_fold(text.lower()).split())


def clean(text: str) -> str:
    """Light normalisation: NFKC, HTML stripped, lowercase, accents folded, whitespace collapsed.
    Punctuation, numbers and ids stay (character n-grams often use them)."""
    return _fixed_point(_clean_once, text)


def normalize(text: str, language: str = "spanish", remove_stop_words: bool = True) -> str:
    """Full normalisation: NFKC, HTML stripped, URLs/e-mails/ids/numbers masked, lowercase,
    accents folded, punctuation dropped and, optionally, stop words. Idempotent."""
    return _fixed_point(lambda t: _normalize_once(t, language, remove_stop_words), text)


def stem(normalized: str, language: str = "spanish") -> str:
    """Snowball-stem a normalised text once (stemming twice would over-stem, so it is a separate
    step from the idempotent ``normalize``). Masks stay as they are."""
    return " ".join(_stem_token(token, language) for token in normalized.split())


LEVELS = ("light", "full")


def analyze(
    text: str,
    language: str = "spanish",
    stem_words: bool = True,
    remove_stop_words: bool = True,
    level: str = "full",
) -> str:
    """What the model sees: ``clean`` (level "light"), or ``normalize`` and optionally ``stem``."""
    if level == "light":
        return clean(text)
    normalized = normalize(text, language, remove_stop_words)
    return stem(normalized, language) if stem_words else normalized


def join_text_fields(fields: Iterable[object]) -> str:
    """Join a ticket's text fields, treating missing values as empty."""
    parts = [str(value) for value in fields if isinstance(value, str) and value.strip()]
    return " . ".join(parts)


def as_documents(X: Any) -> list[str]:
    """One string per ticket from a DataFrame of text columns, a 2-D array or a list of strings."""
    if isinstance(X, pd.DataFrame):
        rows: Iterable[Sequence[object]] = X.to_numpy(dtype=object)
    else:
        array = np.asarray(X, dtype=object)
        rows = array if array.ndim == 2 else array.reshape(-1, 1)
    return [join_text_fields(row) for row in rows]


class TextNormalizer(TransformerMixin, BaseEstimator):
    """Turns ticket text columns into one normalised document per ticket. Stateless."""

    def __init__(
        self,
        language: str = "spanish",
        stem: bool = True,
        remove_stop_words: bool = True,
        level: str = "full",
    ) -> None:
        self.language = language
        self.stem = stem
        self.remove_stop_words = remove_stop_words
        self.level = level

    def fit(self, X: Any, y: Any = None) -> TextNormalizer:
        return self

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Bundles saved before ``level`` existed used full normalisation."""
        super().__setstate__({"level": "full", **state})

    def transform(self, X: Any) -> np.ndarray:
        if self.level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, not {self.level!r}")
        documents = as_documents(X)
        analyzed = [
            analyze(doc, self.language, self.stem, self.remove_stop_words, self.level)
            for doc in documents
        ]
        return np.asarray(analyzed, dtype=object)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.two_d_array = False
        tags.requires_fit = False
        return tags
