"""Finding a ticket's words and where the model's n-grams sit among them (the placing half of
core/explain: see its docstring). Two ways to find the n-grams, with the same result (tested):
the vectorised counter's own windows (core/ngrams.py), and plain enumeration for vectorisers it
does not count."""

from __future__ import annotations

import functools
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.models import CompactTfidfVectorizer
from core.ngrams import WORD_TOKEN_PATTERN, located_columns
from core.text import analyze

_CHUNK = re.compile(r"\S+")
_WORD_TOKEN = re.compile(WORD_TOKEN_PATTERN)
_EDGE_PUNCTUATION = re.compile(r"^[^\w]+|[^\w]+$")
FIELDS = ("short_description", "close_notes")


@dataclass(frozen=True)
class Word:
    """A word of the ticket: which field, where (character offsets in that field), as written."""

    field: str
    start: int
    end: int
    text: str
    #: The whitespace-separated chunk it came from, punctuation included (what is normalised).
    chunk: str


def ticket_words(short_description: str, close_notes: str) -> list[Word]:
    words = []
    for name, text in zip(FIELDS, (short_description, close_notes or ""), strict=True):
        for match in _CHUNK.finditer(text):
            stripped = _EDGE_PUNCTUATION.sub("", match.group())
            if not stripped:
                continue
            offset = match.group().find(stripped)
            start = match.start() + offset
            words.append(Word(name, start, start + len(stripped), stripped, match.group()))
    return words


@dataclass(frozen=True)
class Placements:
    """Where a block's features sit among the words: entry k gives ``share[k]`` of feature
    ``feature[k]``'s contribution to word ``word[k]``."""

    feature: np.ndarray
    word: np.ndarray
    share: np.ndarray


def analyzed(chunk: str, language: str, stem: bool, remove_stop_words: bool, level: str) -> str:
    """One word as the normaliser sees it. The same words come back ticket after ticket, so
    short ones are remembered (bounded: at most 65,536 words of at most 64 characters)."""
    if len(chunk) > 64:
        return analyze(chunk, language, stem, remove_stop_words, level)
    return _analyzed_short(chunk, language, stem, remove_stop_words, level)


@functools.lru_cache(maxsize=65536)
def _analyzed_short(
    chunk: str, language: str, stem: bool, remove_stop_words: bool, level: str
) -> str:
    return analyze(chunk, language, stem, remove_stop_words, level)


def as_placements(found: Places, vocabulary: dict[str, int]) -> Placements:
    features: list[int] = []
    owners_of: list[int] = []
    shares: list[float] = []
    for term, places in found.items():
        index = vocabulary.get(term)
        if index is None:
            continue
        for owners in places:
            total = sum(owners.values()) * len(places)
            for word_index, count in owners.items():  # none when it sits on no word
                features.append(int(index))
                owners_of.append(word_index)
                shares.append(count / total)
    return Placements(
        np.asarray(features, dtype=np.int64),
        np.asarray(owners_of, dtype=np.int64),
        np.asarray(shares, dtype=np.float64),
    )


def located(
    transformer: Any, normalised: list[str], words: list[Word], level: str
) -> Placements | None:
    """Placements from the vectorised counter's own windows (core/ngrams.py): the same n-grams
    the model counted, found with their positions; None where that counter does not apply."""
    if not isinstance(transformer, CompactTfidfVectorizer) or not hasattr(transformer, "_tfidf"):
        return None
    if not transformer._fast_counting(["x"]):
        return None
    index = transformer._ngram_index()
    if not index.usable:
        return None
    segments: list[Any]
    if transformer.analyzer == "word":
        per_word = [_WORD_TOKEN.findall(norm) for norm in normalised]
        segments = [[token for tokens in per_word for token in tokens]]
        owner = [i for i, tokens in enumerate(per_word) for _ in tokens]
    elif transformer.analyzer == "char_wb":
        segments, owner = [], []
        for i, norm in enumerate(normalised):
            for token in norm.split():
                segments.append(f" {token} ")
                owner += [i] * (len(token) + 2)
    else:
        document, owner = document_owners(normalised, words, level)
        segments = [document]
    if not owner:
        return Placements(*(np.zeros(0, dtype=dtype) for dtype in (np.int64, np.int64, float)))
    starts, sizes, columns = located_columns(index, segments)
    owners = np.asarray(owner, dtype=np.int64)
    occurrences = np.bincount(columns)[columns]
    offsets = np.arange(int(sizes.max()) if len(sizes) else 1)
    positions = np.minimum(starts[:, None] + offsets[None, :], len(owners) - 1)
    who = np.where(offsets[None, :] < sizes[:, None], owners[positions], -1)
    owned = who >= 0
    window, offset = np.nonzero(owned)
    shares = 1.0 / (occurrences[window] * owned.sum(axis=1)[window])
    return Placements(columns[window], who[window, offset], shares)


Places = dict[str, list[dict[int, int]]]


def occurrences(transformer: Any, normalised: list[str], words: list[Word], level: str) -> Places:
    """Every n-gram the transformer would count in the reconstructed document, with, for each
    occurrence, how many of its characters (or tokens) each word owns."""
    low, high = transformer.ngram_range
    found: Places = defaultdict(list)
    if transformer.analyzer == "word":
        pattern = re.compile(transformer.token_pattern)
        tokens = [(t, i) for i, text in enumerate(normalised) for t in pattern.findall(text)]
        for n in range(low, high + 1):
            for k in range(len(tokens) - n + 1):
                gram = tokens[k : k + n]
                owners: dict[int, int] = defaultdict(int)
                for _, owner in gram:
                    owners[owner] += 1
                found[" ".join(t for t, _ in gram)].append(dict(owners))
        return found
    if transformer.analyzer == "char_wb":
        for i, norm in enumerate(normalised):
            for token in norm.split():
                for piece in char_wb_grams(f" {token} ", low, high):
                    found[piece].append({i: 1})
        return found
    document, by_char = document_owners(normalised, words, level)
    for n in range(low, min(high, len(document)) + 1):
        for k in range(len(document) - n + 1):
            counts: dict[int, int] = defaultdict(int)
            for who in by_char[k : k + n]:
                if who >= 0:
                    counts[who] += 1
            found[document[k : k + n]].append(dict(counts))  # empty: on no word
    return found


def char_wb_grams(padded: str, low: int, high: int) -> list[str]:
    """scikit-learn's ``char_wb`` n-grams of one padded word, in its order and with its stop:
    a word shorter than n yields itself once, and no longer n-grams."""
    grams = []
    for n in range(low, high + 1):
        offset = 0
        grams.append(padded[offset : offset + n])
        while offset + n < len(padded):
            offset += 1
            grams.append(padded[offset : offset + n])
        if offset == 0:
            break
    return grams


def document_owners(normalised: list[str], words: list[Word], level: str) -> tuple[str, list[int]]:
    """The normalised document rebuilt word by word (fields joined as the normaliser joins them,
    " . " at the light level), with the word that owns each character (-1: none)."""
    text: list[str] = []
    owner: list[int] = []
    previous_field = None
    for i, (word, norm) in enumerate(zip(words, normalised, strict=True)):
        if not norm:
            continue
        if text:
            gap = " . " if level == "light" and word.field != previous_field else " "
            text.append(gap)
            owner.extend([-1] * len(gap))
        text.append(norm)
        owner.extend([i] * len(norm))
        previous_field = word.field
    return "".join(text), owner
