"""The contributions of core/explain (its docstring says how, per family): the prediction, and
for the predicted class and the runner-up, each word's weight, what is not a word, the intercept
and the score they add up to."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.pipeline import FeatureUnion, Pipeline

from core.explain import words as placing
from core.explain.occlusion import MAX_OCCLUDED_SPANS as MAX_OCCLUDED_SPANS
from core.explain.occlusion import OCCLUSION_CHUNK as OCCLUSION_CHUNK
from core.explain.occlusion import occlusion_spans as occlusion_spans
from core.explain.occlusion import occlusion_weights
from core.explain.records import ClassExplanation as ClassExplanation
from core.explain.records import Explanation as Explanation
from core.explain.records import WordWeight as WordWeight
from core.explain.words import Placements, Word
from core.models import (
    Cascade,
    EncodedLabels,
    StackedOneVsRest,
    TemperatureScaledSVC,
    WeightedEnsemble,
)
from core.text import TextNormalizer


def explain(
    model: Any, short_description: str, close_notes: str = "", top_k: int = 10
) -> Explanation:
    """The prediction and, for the predicted class and the runner-up, each word's contribution.
    An ensemble's are its members' parts weighted as their probabilities are, where every
    member's parts add up (linear heads, boosters); otherwise the whole ensemble is occluded."""
    row = np.asarray([[short_description, close_notes or ""]], dtype=object)
    if isinstance(model, Cascade):
        gate_sure = not model.unsure(np.asarray(model.gate_.predict_proba(row)))[0]
        answered = model.gate_ if gate_sure else model.model_
        result = explain(answered, short_description, close_notes, top_k)
        who = "the TF-IDF gate, sure enough" if gate_sure else "the model behind the gate"
        return replace(result, method=f"{result.method} ({who})")
    words = placing.ticket_words(short_description, close_notes)
    classes = np.asarray(model.classes_)
    if isinstance(model, WeightedEnsemble):
        probabilities = np.asarray(model.predict_proba(row))[0]
        order = np.argsort(-probabilities)[:2]
        pipelines = [member for _, member in model.members_]
        methods = [_method(member.steps[-1][1]) for member in pipelines]
        if "occlusion" in methods:
            method, kind = "occlusion", "probability drop when the word is removed"
            parts = _occlusion(model, short_description, close_notes, words, order, probabilities)
        else:
            method = "ensemble of " + " + ".join(sorted(set(methods)))
            kind = "weighted sum of the members' scores (weights as in the ensemble)"
            member_parts = [
                _additive(_Ticket(member, row, words), order, len(classes)) for member in pipelines
            ]
            parts = [
                _weighted([p[i] for p in member_parts], model.weights_) for i in range(len(order))
            ]
    else:
        ticket = _Ticket(model, row, words)
        probabilities = ticket.probabilities()
        order = np.argsort(-probabilities)[:2]
        method = _method(model.steps[-1][1])
        if method == "occlusion":
            kind = "probability drop when the word is removed"
            parts = _occlusion(model, short_description, close_notes, words, order, probabilities)
        else:
            kind = _kind(model.steps[-1][1])
            parts = _additive(ticket, order, len(classes))
    explained = [
        _class_explanation(str(classes[c]), float(probabilities[c]), words, part, top_k)
        for c, part in zip(order, parts, strict=True)
    ]
    return Explanation(
        method, kind, str(classes[order[0]]), float(probabilities[order[0]]), explained
    )


def _method(head: Any) -> str:
    if is_linear(head):
        return "linear"
    return "tree-shap" if _booster(head) is not None else "occlusion"


def _kind(head: Any) -> str:
    return _linear_kind(head) if is_linear(head) else "raw margin (log-odds)"


def _additive(ticket: _Ticket, order: np.ndarray, n_classes: int) -> list[_Parts]:
    """Exact per-word parts of a linear head, or a booster's SHAP values."""
    if is_linear(ticket.model.steps[-1][1]):
        return _linear(ticket, order)
    return _shap(ticket, order, n_classes)


def _weighted(parts: list[_Parts], weights: np.ndarray) -> _Parts:
    """Members' parts of one class, weighted: they still add up to the weighted score."""
    words = sum(w * p.word_weights for w, p in zip(weights, parts, strict=True))
    other: dict[str, float] = {}
    for w, p in zip(weights, parts, strict=True):
        for name, value in p.other.items():
            other[name] = other.get(name, 0.0) + float(w) * value
    score = float(sum(w * (p.score or 0.0) for w, p in zip(weights, parts, strict=True)))
    intercept = float(sum(w * (p.intercept or 0.0) for w, p in zip(weights, parts, strict=True)))
    return _Parts(np.asarray(words, dtype=np.float64), other, score, intercept)


@dataclass
class _Parts:
    word_weights: np.ndarray
    other: dict[str, float]
    score: float | None = None
    intercept: float | None = None


def _class_explanation(
    label: str, probability: float, words: list[Word], parts: _Parts, top_k: int
) -> ClassExplanation:
    weighted = [
        WordWeight(w.text, w.field, w.start, w.end, round(float(weight), 9))
        for w, weight in zip(words, parts.word_weights, strict=True)
    ]
    top = sorted((w for w in weighted if w.weight != 0), key=lambda w: -abs(w.weight))[:top_k]
    total = float(np.abs(parts.word_weights).sum() + sum(abs(v) for v in parts.other.values()))
    shown = sum(abs(w.weight) for w in top)
    return ClassExplanation(
        label,
        round(probability, 6),
        parts.score,
        parts.intercept,
        top,
        weighted,
        {name: round(value, 9) for name, value in parts.other.items()},
        round(shown / total, 6) if total > 0 else 0.0,
    )


def is_linear(head: Any) -> bool:
    return isinstance(head, StackedOneVsRest | TemperatureScaledSVC)


def _linear_kind(head: Any) -> str:
    return "one-vs-rest log-odds" if isinstance(head, StackedOneVsRest) else "SVM decision value"


def coefficients(head: Any, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(features x classes) coefficients and per-class intercepts; a binary model's single
    column becomes two (the negative class scores the negated value)."""
    if isinstance(head, StackedOneVsRest):
        weights, intercept = np.asarray(head.stacked_coef_), np.asarray(head.stacked_intercept_)
    else:
        weights, intercept = np.asarray(head.svm_.coef_).T, np.asarray(head.svm_.intercept_)
    if weights.shape[1] == 1 and n_classes == 2:
        return np.hstack([-weights, weights]), np.concatenate([-intercept, intercept])
    return weights, intercept


Block = tuple[str, Any, Any]


@dataclass(frozen=True)
class Contribution:
    """One block's per-feature contributions to a class's score, sparse: ``values[k]`` for
    column ``columns[k]`` of the block (sorted), every other column contributing nothing."""

    name: str
    transformer: Any
    columns: np.ndarray
    values: np.ndarray

    def at(self, columns: np.ndarray) -> np.ndarray:
        """The contributions of ``columns`` (0 where a column is not among ours)."""
        if not len(self.columns):
            return np.zeros(len(columns))
        position = np.minimum(np.searchsorted(self.columns, columns), len(self.columns) - 1)
        return np.where(self.columns[position] == columns, self.values[position], 0.0)


class _Ticket:
    """One ticket on its way through the pipeline: its words, its feature blocks (computed
    once), and where each counted n-gram sits among its words (found once per block)."""

    def __init__(self, model: Pipeline, row: np.ndarray, words: list[Word]) -> None:
        self.model = model
        self.words = words
        normalizer: TextNormalizer = model.steps[0][1]
        self.normalizer = normalizer
        union = model.steps[1][1]
        assert isinstance(union, FeatureUnion)
        document = normalizer.transform(row)
        self.blocks: list[Block] = [
            (name, t, t.transform(document)) for name, t in union.transformer_list
        ]
        self.columns = _columns(self.blocks)
        self._placements: dict[str, Placements] = {}
        self._normalised: list[str] | None = None

    def features(self) -> Any:
        parts = [x for _, _, x in self.blocks]
        if any(sp.issparse(x) for x in parts):
            return sp.hstack([x if sp.issparse(x) else sp.csr_matrix(x) for x in parts]).tocsr()
        return np.hstack(parts)

    def probabilities(self) -> np.ndarray:
        data = self.features()
        for _, step in self.model.steps[2:-1]:
            data = step.transform(data)
        return np.asarray(self.model.steps[-1][1].predict_proba(data))[0]

    def placements(self, name: str, transformer: Any) -> Placements:
        if name not in self._placements:
            if self._normalised is None:
                n = self.normalizer
                self._normalised = [
                    placing.analyzed(w.chunk, n.language, n.stem, n.remove_stop_words, n.level)
                    for w in self.words
                ]
            level = self.normalizer.level
            located = placing.located(transformer, self._normalised, self.words, level)
            if located is not None:
                self._placements[name] = located
            else:
                found = placing.occurrences(transformer, self._normalised, self.words, level)
                self._placements[name] = placing.as_placements(found, transformer.vocabulary_)
        return self._placements[name]


def _linear(ticket: _Ticket, order: np.ndarray) -> list[_Parts]:
    head = ticket.model.steps[-1][1]
    weights, intercept = coefficients(head, len(head.classes_))
    parts = []
    for c in order:
        contributions = [
            _times(name, transformer, x, weights[start:stop, c])
            for (name, transformer, x), (start, stop) in zip(
                ticket.blocks, ticket.columns, strict=True
            )
        ]
        word_weights, other = _place(ticket, contributions)
        score = float(sum(part.values.sum() for part in contributions) + intercept[c])
        parts.append(_Parts(word_weights, other, score, float(intercept[c])))
    return parts


def _times(name: str, transformer: Any, x: Any, coefficients: np.ndarray) -> Contribution:
    """A one-row block times its coefficients (a sparse row: only its nonzero entries)."""
    if not sp.issparse(x):
        values = np.asarray(x, dtype=np.float64).ravel() * coefficients
        return Contribution(name, transformer, np.arange(len(values)), values)
    row = sp.csr_matrix(x)
    row.sort_indices()
    columns = np.asarray(row.indices, dtype=np.int64)
    values = np.asarray(row.data, dtype=np.float64) * coefficients[columns]
    return Contribution(name, transformer, columns, values)


def _columns(blocks: list[Block]) -> list[tuple[int, int]]:
    spans, start = [], 0
    for _, _, x in blocks:
        spans.append((start, start + x.shape[1]))
        start += x.shape[1]
    return spans


def _row_dense(x: Any) -> np.ndarray:
    return np.asarray(x.toarray() if sp.issparse(x) else x, dtype=np.float64).ravel()


def _booster(head: Any) -> Any:
    inner = head.estimator_ if isinstance(head, EncodedLabels) else head
    if type(inner).__name__ in ("XGBClassifier", "LGBMClassifier"):
        return inner
    return None


def _shap(ticket: _Ticket, order: np.ndarray, n_classes: int) -> list[_Parts]:
    model, blocks = ticket.model, ticket.blocks
    x = sp.csr_matrix(ticket.features())
    select = dict(model.steps).get("select")
    kept = select.get_support(indices=True) if select is not None else np.arange(x.shape[1])
    selected = x[:, kept]
    booster = _booster(model.steps[-1][1])
    if type(booster).__name__ == "XGBClassifier":
        import xgboost

        raw = booster.get_booster().predict(xgboost.DMatrix(selected), pred_contribs=True)
        per_class = np.asarray(raw).reshape(n_classes if n_classes > 2 else 1, -1)
    else:  # LightGBM: one sparse matrix per class for sparse input, else classes side by side
        raw = booster.predict(selected, pred_contrib=True)
        if isinstance(raw, list):
            per_class = np.vstack([np.asarray(part.toarray()).ravel() for part in raw])
        else:
            per_class = _row_dense(raw).reshape(-1, len(kept) + 1)
    if per_class.shape[0] == 1 and n_classes == 2:
        per_class = np.vstack([-per_class, per_class])
    parts = []
    for c in order:
        contributions = [
            Contribution(
                name,
                transformer,
                kept[(kept >= start) & (kept < stop)] - start,
                per_class[c, :-1][(kept >= start) & (kept < stop)],
            )
            for (name, transformer, _), (start, stop) in zip(blocks, ticket.columns, strict=True)
        ]
        word_weights, other = _place(ticket, contributions)
        bias = float(per_class[c, -1])
        parts.append(_Parts(word_weights, other, float(per_class[c].sum()), bias))
    return parts


def _occlusion(
    model: Any,
    short: str,
    notes: str,
    words: list[Word],
    order: np.ndarray,
    probabilities: np.ndarray,
) -> list[_Parts]:
    """Each span's removal scored in chunks (core/explain/occlusion.py), as parts per class."""
    weights = occlusion_weights(model, short, notes, words, order, probabilities)
    return [_Parts(weights[:, k], {}) for k in range(len(order))]


def _place(
    ticket: _Ticket, contributions: list[Contribution]
) -> tuple[np.ndarray, dict[str, float]]:
    """Word weights and the rest, from each block's per-feature contributions."""
    weights = np.zeros(len(ticket.words))
    other: dict[str, float] = {}
    for part in contributions:
        if getattr(part.transformer, "vocabulary_", None) is None:  # dense: one named part
            other[part.name] = other.get(part.name, 0.0) + float(part.values.sum())
            continue
        where = ticket.placements(part.name, part.transformer)
        placed = np.bincount(
            where.word, weights=part.at(where.feature) * where.share, minlength=len(weights)
        )
        weights += placed
        rest = float(part.values.sum()) - float(placed.sum())
        if abs(rest) > 1e-12:
            other["unplaced"] = other.get("unplaced", 0.0) + rest
    return weights, other


def word_sum(explanation: ClassExplanation) -> float:
    """The parts added up: words, the rest and the intercept (equals ``score`` when additive)."""
    parts: Sequence[float] = [w.weight for w in explanation.words]
    return float(sum(parts) + sum(explanation.other.values()) + (explanation.intercept or 0.0))
