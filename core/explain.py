"""Why a ticket got its label: contributions of the ticket's own words to a class's score.

- Linear families (logistic regression, linear SVM): exact. A class's score (its one-vs-rest
  log-odds, or the SVM's decision value) is the intercept plus, over the features, feature value
  times coefficient; a dense block (token table, sentence encoder) is one named contribution.
- XGBoost and LightGBM: their native SHAP values (``pred_contribs`` / ``pred_contrib``), which
  add up to the class's raw margin, bias included.
- Random forest, extra trees, histogram gradient boosting: occlusion. Each word's weight is how
  much the class's probability drops when that word is removed from the ticket (one batch of
  re-scored variants). Not additive: no intercept, and the share says how much of the total
  absolute effect the shown words carry.

Features are mapped back to words as ELI5's weighted spans do: every n-gram the model counted is
found in the ticket (word n-grams over the words' normalised tokens, character n-grams over the
normalised text with each character owned by the word it came from); a feature's contribution is
split evenly between its occurrences, a word n-gram's evenly between its words, and a character
n-gram's by the characters each word owns in it. What cannot be placed on a word (n-grams made by
normalising the whole text differently, characters of the separator) is reported as
``unplaced``, so the parts still add up to the score."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.pipeline import FeatureUnion, Pipeline

from core.models import (
    CompactTfidfVectorizer,
    EncodedLabels,
    StackedOneVsRest,
    TemperatureScaledSVC,
)
from core.ngrams import WORD_TOKEN_PATTERN, located_columns
from core.text import TextNormalizer, analyze

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


@dataclass(frozen=True)
class WordWeight:
    word: str
    field: str
    start: int
    end: int
    weight: float


@dataclass(frozen=True)
class ClassExplanation:
    label: str
    probability: float
    #: The score the contributions add up to (None for occlusion, which is not additive).
    score: float | None
    intercept: float | None
    top_terms: list[WordWeight]
    #: Every word's weight, in ticket order (the parts of the score that are words).
    words: list[WordWeight]
    #: Contributions not placed on a word: "unplaced" n-grams and dense blocks by name.
    other: dict[str, float]
    #: Share of the total absolute contribution that ``top_terms`` carry.
    explained_share: float


@dataclass(frozen=True)
class Explanation:
    method: str
    score_kind: str
    prediction: str
    probability: float
    classes: list[ClassExplanation] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """As JSON-ready dicts, built directly (``dataclasses.asdict`` deep-copies every word
        and cost a third of an explanation's time)."""
        return {
            "method": self.method,
            "score_kind": self.score_kind,
            "prediction": self.prediction,
            "probability": self.probability,
            "classes": [
                {
                    "label": c.label,
                    "probability": c.probability,
                    "score": c.score,
                    "intercept": c.intercept,
                    "top_terms": [vars(w) for w in c.top_terms],
                    "words": [vars(w) for w in c.words],
                    "other": c.other,
                    "explained_share": c.explained_share,
                }
                for c in self.classes
            ],
        }


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


def explain(
    model: Pipeline, short_description: str, close_notes: str = "", top_k: int = 10
) -> Explanation:
    """The prediction and, for the predicted class and the runner-up, each word's contribution."""
    row = np.asarray([[short_description, close_notes or ""]], dtype=object)
    ticket = _Ticket(model, row, ticket_words(short_description, close_notes))
    probabilities = ticket.probabilities()
    order = np.argsort(-probabilities)[:2]
    classes = np.asarray(model.classes_)
    words = ticket.words
    head = model.steps[-1][1]
    if isinstance(head, StackedOneVsRest | TemperatureScaledSVC):
        method, kind = "linear", _linear_kind(head)
        parts = _linear(ticket, order)
    elif _booster(head) is not None:
        method, kind = "tree-shap", "raw margin (log-odds)"
        parts = _shap(ticket, order, len(classes))
    else:
        method, kind = "occlusion", "probability drop when the word is removed"
        parts = _occlusion(model, short_description, close_notes, words, order, probabilities)
    explained = [
        _class_explanation(str(classes[c]), float(probabilities[c]), words, part, top_k)
        for c, part in zip(order, parts, strict=True)
    ]
    return Explanation(
        method, kind, str(classes[order[0]]), float(probabilities[order[0]]), explained
    )


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


def _linear_kind(head: Any) -> str:
    return "one-vs-rest log-odds" if isinstance(head, StackedOneVsRest) else "SVM decision value"


def _coefficients(head: Any, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
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
class Placements:
    """Where a block's features sit among the words: entry k gives ``share[k]`` of feature
    ``feature[k]``'s contribution to word ``word[k]``."""

    feature: np.ndarray
    word: np.ndarray
    share: np.ndarray


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
                    analyze(w.chunk, n.language, n.stem, n.remove_stop_words, n.level)
                    for w in self.words
                ]
            level = self.normalizer.level
            located = _located(transformer, self._normalised, self.words, level)
            if located is not None:
                self._placements[name] = located
            else:
                found = _occurrences(transformer, self._normalised, self.words, level)
                self._placements[name] = _as_placements(found, transformer.vocabulary_)
        return self._placements[name]


def _linear(ticket: _Ticket, order: np.ndarray) -> list[_Parts]:
    head = ticket.model.steps[-1][1]
    weights, intercept = _coefficients(head, len(head.classes_))
    parts = []
    for c in order:
        contributions = [
            (name, transformer, _times(x, weights[start:stop, c]))
            for (name, transformer, x), (start, stop) in zip(
                ticket.blocks, ticket.columns, strict=True
            )
        ]
        word_weights, other = _place(ticket, contributions)
        score = float(sum(part.sum() for _, _, part in contributions) + intercept[c])
        parts.append(_Parts(word_weights, other, score, float(intercept[c])))
    return parts


def _times(x: Any, coefficients: np.ndarray) -> np.ndarray:
    """A one-row block times its coefficients, as a dense vector (sparse rows: only their
    nonzero entries are multiplied)."""
    if not sp.issparse(x):
        return np.asarray(x, dtype=np.float64).ravel() * coefficients
    row = sp.csr_matrix(x)
    product = np.zeros(row.shape[1])
    product[row.indices] = row.data * coefficients[row.indices]
    return product


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
    columns = ticket.columns
    parts = []
    for c in order:
        full = np.zeros(x.shape[1])
        full[kept] = per_class[c, :-1]
        contributions = [
            (name, transformer, full[start:stop])
            for (name, transformer, _), (start, stop) in zip(blocks, columns, strict=True)
        ]
        word_weights, other = _place(ticket, contributions)
        bias = float(per_class[c, -1])
        parts.append(_Parts(word_weights, other, float(per_class[c].sum()), bias))
    return parts


def _occlusion(
    model: Pipeline,
    short: str,
    notes: str,
    words: list[Word],
    order: np.ndarray,
    probabilities: np.ndarray,
) -> list[_Parts]:
    variants = []
    for word in words:
        texts = {"short_description": short, "close_notes": notes or ""}
        text = texts[word.field]
        texts[word.field] = text[: word.start] + " " + text[word.end :]
        variants.append([texts["short_description"], texts["close_notes"]])
    if not variants:
        return [_Parts(np.zeros(0), {}) for _ in order]
    without = np.asarray(model.predict_proba(np.asarray(variants, dtype=object)))
    return [_Parts(probabilities[c] - without[:, c], {}) for c in order]


def _place(
    ticket: _Ticket, contributions: list[tuple[str, Any, np.ndarray]]
) -> tuple[np.ndarray, dict[str, float]]:
    """Word weights and the rest, from each block's per-feature contributions."""
    weights = np.zeros(len(ticket.words))
    other: dict[str, float] = {}
    for name, transformer, values in contributions:
        if getattr(transformer, "vocabulary_", None) is None:  # dense: one named contribution
            other[name] = other.get(name, 0.0) + float(values.sum())
            continue
        where = ticket.placements(name, transformer)
        placed = np.bincount(
            where.word, weights=values[where.feature] * where.share, minlength=len(weights)
        )
        weights += placed
        rest = float(values.sum()) - float(placed.sum())
        if abs(rest) > 1e-12:
            other["unplaced"] = other.get("unplaced", 0.0) + rest
    return weights, other


def _as_placements(found: Places, vocabulary: dict[str, int]) -> Placements:
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


def _located(
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
        document, owner = _document(normalised, words, level)
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


def _occurrences(transformer: Any, normalised: list[str], words: list[Word], level: str) -> Places:
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
                for piece in _char_wb_grams(f" {token} ", low, high):
                    found[piece].append({i: 1})
        return found
    document, by_char = _document(normalised, words, level)
    for n in range(low, min(high, len(document)) + 1):
        for k in range(len(document) - n + 1):
            counts: dict[int, int] = defaultdict(int)
            for who in by_char[k : k + n]:
                if who >= 0:
                    counts[who] += 1
            found[document[k : k + n]].append(dict(counts))  # empty: on no word
    return found


def _char_wb_grams(padded: str, low: int, high: int) -> list[str]:
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


def _document(normalised: list[str], words: list[Word], level: str) -> tuple[str, list[int]]:
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


def top_terms_per_class(model: Pipeline, k: int = 15) -> dict[str, list[tuple[str, float]]]:
    """A linear model's global view: per class, the features with the largest coefficients (as
    the model sees them: normalised words, n-grams, character n-grams). Empty for other heads."""
    head = model.steps[-1][1]
    if not isinstance(head, StackedOneVsRest | TemperatureScaledSVC):
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
    weights, _ = _coefficients(head, len(head.classes_))
    result = {}
    for c, label in enumerate(head.classes_):
        best = np.argsort(-weights[:, c])[:k]
        result[str(label)] = [(names[j], round(float(weights[j, c]), 6)) for j in best]
    return result


def word_sum(explanation: ClassExplanation) -> float:
    """The parts added up: words, the rest and the intercept (equals ``score`` when additive)."""
    parts: Sequence[float] = [w.weight for w in explanation.words]
    return float(sum(parts) + sum(explanation.other.values()) + (explanation.intercept or 0.0))


def global_terms(
    model: Pipeline, rows: Sequence[tuple[str, str]], k: int = 15
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
