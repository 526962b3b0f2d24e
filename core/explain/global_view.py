"""A model's global view: per class, the terms that weigh most. Stored with every training (its
MLflow run and the manifest) and shown on the dashboard."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from core.explain.attribution import coefficients, explain, is_linear
from core.models import Cascade, WeightedEnsemble


def top_terms_per_class(model: Any, k: int = 15) -> dict[str, list[tuple[str, float]]]:
    """A linear model's global view: per class, the features with the largest coefficients (as
    the model sees them: normalised words, n-grams, character n-grams); an ensemble of linear
    models', its members' views weighted (a feature's weight summed over the members that have
    it). Empty for other heads."""
    if isinstance(model, Cascade):
        return top_terms_per_class(model.model_, k)
    if isinstance(model, WeightedEnsemble):
        return _ensemble_terms(model, k)
    head = model.steps[-1][1]
    if not is_linear(head):
        return {}
    union = model.steps[1][1]
    names: list[str] = []
    for name, transformer in union.transformer_list:
        vocabulary = getattr(transformer, "vocabulary_", None)
        if vocabulary is None:
            names += [f"[{name}]"] * int(
                transformer.transform(np.asarray([""], dtype=object)).shape[1]
            )
            continue
        block = [""] * len(vocabulary)
        for term, index in vocabulary.items():
            block[index] = f"{term!r}" if name == "char" else term
        names += block
    weights, _ = coefficients(head, len(head.classes_))
    result = {}
    for c, label in enumerate(head.classes_):
        best = np.argsort(-weights[:, c])[:k]
        result[str(label)] = [(names[j], round(float(weights[j, c]), 6)) for j in best]
    return result


def _ensemble_terms(model: WeightedEnsemble, k: int) -> dict[str, list[tuple[str, float]]]:
    views = [top_terms_per_class(member, 4 * k) for _, member in model.members_]
    if not all(views):
        return {}
    merged: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for weight, view in zip(model.weights_, views, strict=True):
        for label, terms in view.items():
            for term, value in terms:
                merged[label][term] += float(weight) * value
    return {
        label: [
            (term, round(value, 6))
            for term, value in sorted(terms.items(), key=lambda item: -item[1])[:k]
        ]
        for label, terms in merged.items()
    }


def global_terms(
    model: Any, rows: Sequence[tuple[str, str]], k: int = 15
) -> dict[str, list[tuple[str, float]]]:
    """The model's global view, per class: a linear model's largest coefficients; for the other
    families, the words with the largest summed contributions over ``rows`` (held-out tickets)
    to the class each was predicted as."""
    view = top_terms_per_class(model, k)
    if view:
        return view
    totals: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for short, notes in rows:
        result = explain(model, short, notes, top_k=k)
        predicted = result.classes[0]
        for word in predicted.words:
            totals[predicted.label][word.word.lower()] += word.weight
    return {
        label: [
            (word, round(weight, 6))
            for word, weight in sorted(words.items(), key=lambda item: -item[1])[:k]
        ]
        for label, words in sorted(totals.items())
    }
