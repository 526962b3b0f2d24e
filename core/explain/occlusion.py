"""Occlusion, the explanation of models whose parts do not add up (forests, histogram gradient
boosting): a word's weight is how much a class's probability drops when it is removed. Bounded
whatever the ticket's length: at most ``MAX_OCCLUDED_SPANS`` variants, scored in chunks."""

from __future__ import annotations

from typing import Any

import numpy as np

from core.explain.words import Word

#: Occlusion removes at most this many spans of a ticket, one variant each: beyond it,
#: neighbouring words are removed together (each word of a span gets an equal share of its
#: span's drop). Without a cap a ticket of n words cost n variants of n words (2,000 one-letter
#: words: 58 s and 8 GB).
MAX_OCCLUDED_SPANS = 48
#: Variants scored per model call, so memory stays bounded whatever the ticket's length.
OCCLUSION_CHUNK = 16


def occlusion_spans(words: list[Word], cap: int = MAX_OCCLUDED_SPANS) -> list[list[int]]:
    """Word indices grouped into at most ``cap`` runs of neighbours in the same field (each
    field gets its share of ``cap`` by its number of words), word by word when they fit."""
    fields: dict[str, list[int]] = {}
    for index, word in enumerate(words):
        fields.setdefault(word.field, []).append(index)
    spans: list[list[int]] = []
    for indices in fields.values():
        share = max(1, cap * len(indices) // len(words))
        size = -(-len(indices) // share)
        spans += [indices[start : start + size] for start in range(0, len(indices), size)]
    return spans


def without_span(short: str, notes: str, words: list[Word], span: list[int]) -> list[str]:
    """The ticket with the span's words blanked (offsets from the right, so they hold)."""
    texts = {"short_description": short, "close_notes": notes or ""}
    for index in sorted(span, key=lambda i: words[i].start, reverse=True):
        word = words[index]
        text = texts[word.field]
        texts[word.field] = text[: word.start] + " " + text[word.end :]
    return [texts["short_description"], texts["close_notes"]]


def occlusion_weights(
    model: Any,
    short: str,
    notes: str,
    words: list[Word],
    order: np.ndarray,
    probabilities: np.ndarray,
) -> np.ndarray:
    """Each span's removal scored in chunks: the probability drop of each class in ``order``,
    shared by the span's words (an array of words x classes)."""
    spans = occlusion_spans(words)
    weights = np.zeros((len(words), len(order)))
    if not spans:
        return weights
    drops = np.zeros((len(spans), len(order)))
    for start in range(0, len(spans), OCCLUSION_CHUNK):
        chunk = spans[start : start + OCCLUSION_CHUNK]
        variants = np.asarray([without_span(short, notes, words, s) for s in chunk], dtype=object)
        without = np.asarray(model.predict_proba(variants))
        drops[start : start + len(chunk)] = probabilities[order][None, :] - without[:, order]
    for span, drop in zip(spans, drops, strict=True):
        weights[span] = drop / len(span)
    return weights
