"""Estimators saved inside every model bundle, and the lean prediction path that serves them.

COMPATIBILITY: the import path of every class here (``core.models.<Name>``) is written into each
saved bundle and into the skops allow-list (core/release/bundle.py). Moving or renaming one breaks
every stored model. ``tests/unit/core/release/test_golden_bundle.py`` loads a committed bundle to
catch that; a class that must move keeps an alias here and an entry in the allow-list.

Search spaces, the family registry and pipeline assembly live in ``core/training/families.py``; this
module imports neither Optuna nor the gradient-boosting libraries, so serving stays light.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.optimize import minimize_scalar
from scipy.special import expit, log_softmax, softmax
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, clone
from sklearn.feature_extraction.text import TfidfTransformer, TfidfVectorizer
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.preprocessing import LabelEncoder
from sklearn.svm import LinearSVC
from sklearn.utils._sparse import _align_api_if_sparse
from sklearn.utils.sparsefuncs_fast import (
    inplace_csr_row_normalize_l1,
    inplace_csr_row_normalize_l2,
)

from core.ngrams import CHAR_ANALYZERS, WORD_TOKEN_PATTERN, NgramIndex, fit_counts


class EncodedLabels(ClassifierMixin, BaseEstimator):
    """Lets an estimator that wants labels 0..n-1 (XGBoost) train and predict on text labels."""

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator

    def fit(self, X: Any, y: Any) -> EncodedLabels:
        encoder = LabelEncoder().fit(y)
        self.classes_ = encoder.classes_
        self.estimator_ = clone(self.estimator).fit(X, encoder.transform(y))
        return self

    def predict(self, X: Any) -> np.ndarray:
        return np.asarray(self.classes_[np.asarray(self.estimator_.predict(X), dtype=int)])

    def predict_proba(self, X: Any) -> np.ndarray:
        return np.asarray(self.estimator_.predict_proba(X))


class TemperatureScaledSVC(ClassifierMixin, BaseEstimator):
    """Linear SVM whose probabilities are a softmax of its decision values with one temperature
    fitted on out-of-fold decisions (temperature scaling). Unlike per-class sigmoid calibration it
    never changes the SVM's ranking, so rare classes keep their recall (macro-F1 is the goal)."""

    def __init__(
        self,
        C: float = 1.0,
        class_weight: str | None = "balanced",
        calibration_folds: int = 3,
        random_state: int | None = None,
    ) -> None:
        self.C = C
        self.class_weight = class_weight
        self.calibration_folds = calibration_folds
        self.random_state = random_state

    def _svm(self) -> LinearSVC:
        return LinearSVC(C=self.C, class_weight=self.class_weight, random_state=self.random_state)

    def fit(self, X: Any, y: Any) -> TemperatureScaledSVC:
        self.svm_ = self._svm().fit(X, y)
        self.classes_ = self.svm_.classes_
        self.converged_ = bool(np.max(self.svm_.n_iter_) < self.svm_.max_iter)
        self.temperature_ = 1.0
        if self.calibration_folds >= 2:
            folds = StratifiedKFold(
                self.calibration_folds, shuffle=True, random_state=self.random_state
            )
            decisions = cross_val_predict(self._svm(), X, y, cv=folds, method="decision_function")
            self.temperature_ = fit_temperature(
                _as_2d(decisions), np.searchsorted(self.classes_, y)
            )
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        return _as_2d(self.svm_.decision_function(X))

    def predict(self, X: Any) -> np.ndarray:
        return np.asarray(self.classes_[self.decision_function(X).argmax(axis=1)])

    def predict_proba(self, X: Any) -> np.ndarray:
        return np.asarray(softmax(self.decision_function(X) / self.temperature_, axis=1))


def _as_2d(decisions: np.ndarray) -> np.ndarray:
    return np.column_stack([-decisions, decisions]) if decisions.ndim == 1 else decisions


def fit_temperature(decisions: np.ndarray, targets: np.ndarray) -> float:
    """The temperature minimising the log-loss of softmax(decisions / T)."""

    def loss(log_t: float) -> float:
        log_p = log_softmax(decisions / np.exp(log_t), axis=1)
        return float(-log_p[np.arange(len(targets)), targets].mean())

    return float(np.exp(minimize_scalar(loss, bounds=(-5.0, 3.0), method="bounded").x))


class CompactTfidfVectorizer(TfidfVectorizer):
    """TfidfVectorizer whose fitted state serialises fast and small: vocabulary indices as Python
    ints (sklearn leaves NumPy scalars after min_df/max_features, which skops stores one array
    each) and without ``stop_words_``, the set of dropped terms kept only for introspection."""

    def fit(self, raw_documents: Any, y: Any = None) -> CompactTfidfVectorizer:
        super().fit(raw_documents, y)
        self._compact()
        return self

    def fit_transform(self, raw_documents: Any, y: Any = None) -> Any:
        matrix = super().fit_transform(raw_documents, y)
        self._compact()
        return matrix

    def _compact(self) -> None:
        vocabulary: dict[str, Any] = vars(self)["vocabulary_"]
        self.vocabulary_ = {term: int(index) for term, index in vocabulary.items()}
        if hasattr(self, "stop_words_"):
            del self.stop_words_

    def _fast_counting(self, documents: list[Any]) -> bool:
        """Whether the vectorised counter reproduces this configuration exactly."""
        plain = (
            self.input == "content"
            and self.preprocessor is None
            and self.tokenizer is None
            and not self.lowercase
            and self.strip_accents is None
            and self.stop_words is None
        )
        analyzer_known = self.analyzer in CHAR_ANALYZERS or (
            self.analyzer == "word" and self.token_pattern == WORD_TOKEN_PATTERN
        )
        return plain and analyzer_known and all(type(doc) is str for doc in documents)

    def _ngram_index(self) -> NgramIndex:
        vocabulary = vars(self)["vocabulary_"]
        cached = vars(self).get("_index_cache")
        if cached is None or cached[0] is not vocabulary:
            cached = (vocabulary, NgramIndex(vocabulary, self.analyzer, self.ngram_range))
            self._index_cache = cached
        return cached[1]

    def transform(self, raw_documents: Any) -> Any:
        """TF-IDF of new documents; with the vectorised counter it also skips scikit-learn's
        per-call input validation (about a millisecond, most of a small batch's cost)."""
        if isinstance(raw_documents, str) or not hasattr(self, "_tfidf"):
            return super().transform(raw_documents)
        documents = list(raw_documents)
        index = self._ngram_index() if self._fast_counting(documents) else None
        if index is None or not index.usable:
            return super().transform(documents)
        counts = index.counts(documents, self.dtype)
        if self.binary:
            counts.data.fill(1)
        return _align_api_if_sparse(_weighted(counts, self._tfidf))

    def _count_vocab(self, raw_documents: Any, fixed_vocab: bool) -> tuple[Any, Any]:
        """scikit-learn's counting, vectorised (core/ngrams.py) where that is exact."""
        documents = list(raw_documents)
        if self._fast_counting(documents):
            if fixed_vocab:
                index = self._ngram_index()
                if index.usable:
                    return self.vocabulary_, index.counts(documents, self.dtype)
            else:
                counted = fit_counts(documents, self.analyzer, self.ngram_range, self.dtype)
                if counted is not None and not counted[0]:
                    raise ValueError(
                        "empty vocabulary; perhaps the documents only contain stop words"
                    )
                if counted is not None:
                    return counted
        return super()._count_vocab(documents, fixed_vocab)

    def __getstate__(self) -> dict[str, Any]:
        """The vocabulary as two arrays (UTF-8 bytes and lengths, in index order) instead of a
        dict of hundreds of thousands of entries, which skops would write as verbose JSON."""
        state = dict(super().__getstate__())
        state.pop("_index_cache", None)
        vocabulary = state.pop("vocabulary_", None)
        if vocabulary is not None:
            encoded = [
                term.encode("utf-8", "surrogatepass")
                for term in sorted(vocabulary, key=vocabulary.__getitem__)
            ]
            state["vocabulary_bytes_"] = np.frombuffer(b"".join(encoded), dtype=np.uint8).copy()
            state["vocabulary_lengths_"] = np.asarray([len(e) for e in encoded], dtype=np.int64)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        data = state.pop("vocabulary_bytes_", None)
        lengths = state.pop("vocabulary_lengths_", None)
        super().__setstate__(state)
        if data is not None and lengths is not None:
            raw = np.asarray(data, dtype=np.uint8).tobytes()
            ends = np.cumsum(lengths)
            starts = ends - lengths
            self.vocabulary_ = {
                raw[start:end].decode("utf-8", "surrogatepass"): index
                for index, (start, end) in enumerate(
                    zip(starts.tolist(), ends.tolist(), strict=True)
                )
            }


def _weighted(counts: Any, tfidf: TfidfTransformer) -> Any:
    """``TfidfTransformer.transform`` on a fresh CSR count matrix, in place, same arithmetic."""
    if tfidf.sublinear_tf:
        np.log(counts.data, counts.data)
        counts.data += 1.0
    if hasattr(tfidf, "idf_"):
        counts.data *= tfidf.idf_[counts.indices]
    if tfidf.norm == "l2":
        inplace_csr_row_normalize_l2(counts)
    elif tfidf.norm == "l1":
        inplace_csr_row_normalize_l1(counts)
    return counts


class StackedOneVsRest(OneVsRestClassifier):
    """One-vs-rest with linear binary estimators that predicts with one matrix product: after
    fit the per-class coefficients are stacked, so a prediction costs one sparse-dense product
    instead of one call per class (at serving time the per-call overhead, not the arithmetic,
    dominates). Probabilities equal one-vs-rest's: per-class sigmoids, normalised. The per-class
    estimators are dropped once stacked: they would double the saved bundle and serving memory."""

    def fit(self, X: Any, y: Any, **fit_params: Any) -> StackedOneVsRest:
        super().fit(X, y, **fit_params)
        self.converged_ = all(
            np.max(getattr(e, "n_iter_", 0)) < getattr(e, "max_iter", np.inf)
            for e in self.estimators_
        )
        self.stacked_coef_ = np.column_stack([e.coef_.ravel() for e in self.estimators_])
        self.stacked_intercept_ = np.array(
            [float(np.ravel(e.intercept_)[0]) for e in self.estimators_]
        )
        del self.estimators_
        return self

    def _scores(self, X: Any) -> np.ndarray:
        return np.asarray(X @ self.stacked_coef_) + self.stacked_intercept_

    def decision_function(self, X: Any) -> np.ndarray:
        scores = self._scores(X)
        return scores.ravel() if scores.shape[1] == 1 else scores

    def predict_proba(self, X: Any) -> np.ndarray:
        return self.proba_from_scores(self._scores(X))

    def proba_from_blocks(self, blocks: list[Any]) -> np.ndarray:
        """``predict_proba`` of the blocks laid side by side, without building that matrix:
        each block times its rows of the coefficients (a serving micro-batch's copies cost more
        than its arithmetic)."""
        scores = np.zeros((blocks[0].shape[0], self.stacked_coef_.shape[1]))
        offset = 0
        for block in blocks:
            width = block.shape[1]
            scores += np.asarray(block @ self.stacked_coef_[offset : offset + width])
            offset += width
        if offset != self.stacked_coef_.shape[0]:
            raise ValueError(f"{offset} features for {self.stacked_coef_.shape[0]} coefficients")
        return self.proba_from_scores(scores + self.stacked_intercept_)

    def proba_from_scores(self, scores: np.ndarray) -> np.ndarray:
        positive = expit(scores)
        if positive.shape[1] == 1:
            return np.hstack([1 - positive, positive])
        return positive / positive.sum(axis=1, keepdims=True)

    def predict(self, X: Any) -> np.ndarray:
        return np.asarray(self.classes_)[self.predict_proba(X).argmax(axis=1)]


class WeightedEnsemble(ClassifierMixin, BaseEstimator):
    """A weighted average of complete pipelines' probabilities: the model ensemble selection
    (core/training/ensemble.py) chooses. Each member keeps its own text settings, features and
    head; members that use the sentence encoder share its vectors (core/encoder.py caches them
    by text), so serving embeds a ticket once."""

    def __init__(self, members: list[tuple[str, Any]], weights: list[float]) -> None:
        self.members = members
        self.weights = weights

    def fit(self, X: Any, y: Any) -> WeightedEnsemble:
        self.members_ = [(name, clone(member).fit(X, y)) for name, member in self.members]
        self.classes_ = np.asarray(self.members_[0][1].classes_)
        for name, member in self.members_:
            if not np.array_equal(np.asarray(member.classes_), self.classes_):
                raise ValueError(f"member {name} learned other classes")
        total = float(sum(self.weights))
        self.weights_ = np.asarray(self.weights, dtype=np.float64) / total
        return self

    def combine(self, probabilities: list[np.ndarray]) -> np.ndarray:
        """The members' probabilities (in member order), averaged with the weights."""
        mixed = sum(weight * p for weight, p in zip(self.weights_, probabilities, strict=True))
        return np.asarray(mixed)

    def predict_proba(self, X: Any) -> np.ndarray:
        return self.combine([np.asarray(m.predict_proba(X)) for _, m in self.members_])

    def predict(self, X: Any) -> np.ndarray:
        return np.asarray(self.classes_[self.predict_proba(X).argmax(axis=1)])


class Cascade(ClassifierMixin, BaseEstimator):
    """A cheap gate in front of a costly model: the gate (TF-IDF, about a millisecond a ticket)
    answers the tickets it is at least ``threshold`` sure of, and only the others go to the
    model, which runs the sentence encoder (tens of milliseconds a ticket). Training chooses
    the threshold on out-of-fold probabilities so that the cascade loses nothing against the
    model alone (core/training/cascade.py); on real help-desk tickets the gate was sure of
    half to two thirds of them."""

    def __init__(self, gate: Any, model: Any, threshold: float) -> None:
        self.gate = gate
        self.model = model
        self.threshold = threshold

    def fit(self, X: Any, y: Any) -> Cascade:
        self.gate_ = clone(self.gate).fit(X, y)
        self.model_ = clone(self.model).fit(X, y)
        self.classes_ = np.asarray(self.model_.classes_)
        if not np.array_equal(np.asarray(self.gate_.classes_), self.classes_):
            raise ValueError("the gate learned other classes than the model")
        return self

    def unsure(self, gate_probabilities: np.ndarray) -> np.ndarray:
        """Rows the gate is not sure enough of: the model answers them."""
        return np.asarray(gate_probabilities.max(axis=1) < self.threshold)

    def mix(self, gate_probabilities: np.ndarray, rows: Any, proba: Any) -> np.ndarray:
        """The gate's probabilities, with ``proba(rows)`` in the unsure rows' place."""
        out = np.array(gate_probabilities, dtype=np.float64)
        unsure = np.flatnonzero(self.unsure(out))
        if len(unsure):
            subset = rows.iloc[unsure] if hasattr(rows, "iloc") else rows[unsure]
            out[unsure] = proba(subset)
        return out

    def predict_proba(self, X: Any) -> np.ndarray:
        gate = np.asarray(self.gate_.predict_proba(X))
        return self.mix(gate, X, lambda rows: np.asarray(self.model_.predict_proba(rows)))

    def predict(self, X: Any) -> np.ndarray:
        return np.asarray(self.classes_[self.predict_proba(X).argmax(axis=1)])


class ToDense(TransformerMixin, BaseEstimator):
    """Sparse to dense, for estimators without sparse input (histogram gradient boosting)."""

    def fit(self, X: Any, y: Any = None) -> ToDense:
        return self

    def transform(self, X: Any) -> np.ndarray:
        return np.asarray(X.toarray() if hasattr(X, "toarray") else X, dtype=np.float32)


def lean_predict_proba(model: Any, rows: Any) -> np.ndarray:
    """``model.predict_proba(rows)`` for a pipeline, without scikit-learn's per-call machinery
    (output containers, metadata routing, one joblib call per feature block), which costs more
    than the arithmetic for the handful of tickets of a serving micro-batch. Same steps, same
    numbers; anything but a plain pipeline goes the usual way."""
    if isinstance(model, WeightedEnsemble):
        return model.combine([lean_predict_proba(member, rows) for _, member in model.members_])
    if isinstance(model, Cascade):
        gate = lean_predict_proba(model.gate_, rows)
        return model.mix(gate, rows, lambda unsure: lean_predict_proba(model.model_, unsure))
    if not isinstance(model, Pipeline):
        return np.asarray(model.predict_proba(rows))
    data = rows
    steps = [step for _, step in model.steps[:-1] if not (step is None or isinstance(step, str))]
    final = model.steps[-1][1]
    for position, step in enumerate(steps):
        if isinstance(step, FeatureUnion) and _plain_union(step):
            blocks = [transformer.transform(data) for _, transformer in step.transformer_list]
            if position == len(steps) - 1 and isinstance(final, StackedOneVsRest):
                return final.proba_from_blocks(blocks)
            sparse = any(sp.issparse(block) for block in blocks)
            data = sp.hstack(blocks).tocsr() if sparse else np.hstack(blocks)
        else:
            data = step.transform(data)
    return np.asarray(final.predict_proba(data))


def _plain_union(union: FeatureUnion) -> bool:
    return union.transformer_weights is None and all(
        not isinstance(transformer, str) for _, transformer in union.transformer_list
    )
