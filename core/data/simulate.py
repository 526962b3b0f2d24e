"""Seeded generator of Spanish help-desk tickets from a trust company (fiduciaria) and of drifted
traffic. No public Spanish ticket set exists, so the demo data is made here: overlapping
categories, synonyms, typos, missing accents, greetings, signatures, ids, e-mails, URLs, stray
HTML and some label noise, so that a good model lands well below a perfect score."""

from __future__ import annotations

import random

import pandas as pd

from core.data.phrases import (
    ACCENTED,
    AGENTS,
    CATEGORIES,
    CLIENT_NAMES,
    CLOSINGS,
    FILLERS,
    GENERIC_RESOLUTIONS,
    GENERIC_SUBJECTS,
    GREETINGS,
    NEW_CATEGORY,
    NEW_PRODUCT_PHRASES,
    SLOTS,
    Category,
)
from core.errors import InputError

SCENARIOS: tuple[str, ...] = (
    "baseline",
    "new_product",
    "prior_shift",
    "long_texts",
    "short_texts",
    "new_category",
)


def _typo(word: str, rng: random.Random) -> str:
    if len(word) < 4:
        return word
    i = rng.randrange(1, len(word) - 1)
    kind = rng.random()
    if kind < 0.4:
        return word[:i] + word[i + 1 :]
    if kind < 0.8:
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    return word[:i] + word[i] + word[i:]


def _noisy(text: str, rng: random.Random, typo_rate: float = 0.04) -> str:
    words = []
    for word in text.split():
        if word in ACCENTED and rng.random() < 0.5:
            word = ACCENTED[word]
        if rng.random() < typo_rate:
            word = _typo(word, rng)
        words.append(word)
    text = " ".join(words)
    roll = rng.random()
    if roll < 0.15:
        return text.upper()
    if roll < 0.6:
        return text[:1].upper() + text[1:]
    return text


def _fill(template: str, rng: random.Random) -> str:
    values = {slot: rng.choice(options) for slot, options in SLOTS.items()}
    return template.format(**values)


def _decorations(rng: random.Random) -> list[str]:
    extras = []
    if rng.random() < 0.3:
        extras.append(f"ticket INC{rng.randrange(10**6, 10**7)}")
    if rng.random() < 0.2:
        extras.append(
            f"mi correo es {rng.choice(CLIENT_NAMES).lower()}{rng.randrange(99)}@mail.com"
        )
    if rng.random() < 0.1:
        extras.append(f"ver https://portal.fiduciaria.co/caso/{rng.randrange(10**5)}")
    if rng.random() < 0.2:
        extras.append(f"cedula {rng.randrange(10**7, 10**10)}")
    return extras


def _short_description(category: Category, rng: random.Random, extra: str | None) -> str:
    subjects = category.subjects if rng.random() < 0.8 else GENERIC_SUBJECTS
    text = _fill(rng.choice(subjects), rng)
    if extra:
        text = f"{text} {extra}"
    return _noisy(text, rng)


def _close_notes(category: Category, rng: random.Random, length: float, extra: str | None) -> str:
    pieces = [rng.choice(GREETINGS)]
    n_details = round(rng.choice((0, 1, 1, 2)) * length) + (2 if length > 1 else 0)
    details = [*category.details] * (1 + n_details // len(category.details))
    pieces += [_fill(detail, rng) for detail in rng.sample(details, n_details)]
    if extra:
        pieces.append(f"relacionado con {extra}")
    if rng.random() < 0.5:
        pieces.append(_fill(rng.choice(rng.choice(CATEGORIES).details), rng))
    n_fillers = rng.randrange(0, 3) + (round(2 * length) if length > 1 else 0)
    pieces += [rng.choice(FILLERS) for _ in range(n_fillers)] + _decorations(rng)
    resolutions = category.resolutions if rng.random() < 0.6 else GENERIC_RESOLUTIONS
    pieces.append(_fill(rng.choice(resolutions), rng))
    pieces.append(f"{rng.choice(CLOSINGS)}. Atendido por {rng.choice(AGENTS)}")
    text = ". ".join(_noisy(piece, rng) for piece in pieces)
    if rng.random() < 0.1:
        text = f"<p>{text}</p><br>"
    return text


def _weights(scenario: str, n_categories: int, rng: random.Random) -> list[float]:
    base = [1.0 + 0.8 * rng.random() for _ in range(n_categories)]
    if scenario == "prior_shift":
        base = [w * (12.0 if i < 2 else 0.3) for i, w in enumerate(base)]
    return base


def generate_tickets(n: int, scenario: str = "baseline", seed: int = 42) -> pd.DataFrame:
    """``n`` tickets with columns short_description, close_notes, label.

    Scenarios other than ``baseline`` are drifted traffic: a new product's vocabulary, a shift in
    class priors, longer or shorter texts, or a category the model has never seen.
    """
    if scenario not in SCENARIOS:
        raise InputError(f"unknown scenario {scenario!r}; choose from {list(SCENARIOS)}")
    if n < 1:
        raise InputError("n must be at least 1")
    rng = random.Random(f"{seed}-{scenario}")
    categories = list(CATEGORIES) + ([NEW_CATEGORY] if scenario == "new_category" else [])
    weights = _weights(scenario, len(CATEGORIES), rng)
    if scenario == "new_category":
        weights.append(sum(weights) / 3)
    length = {"long_texts": 4.0, "short_texts": 0.3}.get(scenario, 1.0)
    rows = [_ticket(rng.choices(categories, weights)[0], scenario, length, rng) for _ in range(n)]
    return pd.DataFrame(rows, columns=["short_description", "close_notes", "label"])


def _ticket(
    category: Category, scenario: str, length: float, rng: random.Random
) -> tuple[str, str, str]:
    extra = rng.choice(NEW_PRODUCT_PHRASES) if scenario == "new_product" else None
    short = _short_description(category, rng, extra if extra and rng.random() < 0.7 else None)
    if scenario == "short_texts":
        notes = "" if rng.random() < 0.7 else _noisy(_fill(rng.choice(category.details), rng), rng)
    else:
        notes = "" if rng.random() < 0.08 else _close_notes(category, rng, length, extra)
    label = category.label
    if rng.random() < 0.08:
        label = rng.choice(CATEGORIES).label
    return short, notes, label
