"""The seven model families: a search space and a pipeline builder for each.

A pipeline is ``normalize -> features -> head``. The normaliser is stateless and the features
(word and character TF-IDF) depend only on the text settings, so tuning computes both once per
setting and fold and searches the head on top; the saved pipeline still holds every step.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
import scipy.sparse as sp
from lightgbm import LGBMClassifier
from scipy.optimize import minimize_scalar
from scipy.special import expit, log_softmax, softmax
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, clone
from sklearn.ensemble import (
    ExtraTreesClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.feature_extraction.text import TfidfTransformer, TfidfVectorizer
from sklearn.feature_selection import SelectKBest, chi2
from sklearn.linear_model import LogisticRegression
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
from xgboost import XGBClassifier

from core.embeddings import StaticTokenEmbedding
from core.ngrams import CHAR_ANALYZERS, WORD_TOKEN_PATTERN, NgramIndex, fit_counts
from core.settings import FAMILIES
from core.text import TextNormalizer

Params = dict[str, Any]

# A search may ask for more selected features than a small table has; all are kept, as intended.
warnings.filterwarnings("ignore", message=r"k=\d+ is greater than n_features", category=UserWarning)
TEXT_KEYS = ("text_level", "stem", "remove_stop_words")
FEATURE_KEYS = ("word_ngram_max", "char_ngrams", "min_df", "embedding_weight")
CHAR_NGRAMS: dict[str, tuple[str, tuple[int, int]] | None] = {
    "none": None,
    "char_2_5": ("char", (2, 5)),
    "char_1_4": ("char", (1, 4)),
    "char_wb_2_5": ("char_wb", (2, 5)),
}
TFIDF_MAX_FEATURES = 300_000
#: Shares of the static token-embedding block next to the TF-IDF blocks; 0 leaves it out.
EMBEDDING_WEIGHTS = (0.0, 0.5, 1.0, 2.0)


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
        self.temperature_ = 1.0
        if self.calibration_folds >= 2:
            folds = StratifiedKFold(
                self.calibration_folds, shuffle=True, random_state=self.random_state
            )
            decisions = cross_val_predict(self._svm(), X, y, cv=folds, method="decision_function")
            self.temperature_ = _fit_temperature(
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


def _fit_temperature(decisions: np.ndarray, targets: np.ndarray) -> float:
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
        positive = expit(self._scores(X))
        if positive.shape[1] == 1:
            return np.hstack([1 - positive, positive])
        return positive / positive.sum(axis=1, keepdims=True)

    def predict(self, X: Any) -> np.ndarray:
        return np.asarray(self.classes_)[self.predict_proba(X).argmax(axis=1)]


class ToDense(TransformerMixin, BaseEstimator):
    """Sparse to dense, for estimators without sparse input (histogram gradient boosting)."""

    def fit(self, X: Any, y: Any = None) -> ToDense:
        return self

    def transform(self, X: Any) -> np.ndarray:
        return np.asarray(X.toarray() if hasattr(X, "toarray") else X, dtype=np.float32)


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


def suggest_features(trial: optuna.Trial, embeddings: bool = False) -> Params:
    """Word n-grams, character n-grams across (``char``) or within (``char_wb``) words and, for
    families that take dense signed features, the weight of the token-embedding block."""
    params: Params = {
        "word_ngram_max": trial.suggest_int("word_ngram_max", 1, 2),
        "char_ngrams": trial.suggest_categorical("char_ngrams", list(CHAR_NGRAMS)),
        "min_df": trial.suggest_int("min_df", 1, 2),
    }
    if embeddings:
        weight = trial.suggest_categorical("embedding_weight", list(EMBEDDING_WEIGHTS))
        params["embedding_weight"] = weight
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
    return FeatureUnion(parts)


@dataclass(frozen=True)
class Family:
    """A model family: its own hyper-parameters and the estimator steps after the features.
    ``embeddings`` says whether its search may add the token-embedding block: tree families
    select features with chi-squared, which needs non-negative inputs, so only linear ones do."""

    name: str
    suggest: Callable[[optuna.Trial], Params]
    head: Callable[[Params, int, int], list[tuple[str, Any]]]
    defaults: Params
    embeddings: bool = False


def _suggest_logreg(trial: optuna.Trial) -> Params:
    return {"C": trial.suggest_float("C", 1.0, 100.0, log=True)}


def _head_logreg(p: Params, seed: int, n_jobs: int) -> list[tuple[str, Any]]:
    """One-vs-rest liblinear: fast on wide sparse TF-IDF, and it releases the GIL, so studies
    running side by side in threads do not stall each other (lbfgs holds it for minutes)."""
    binary = LogisticRegression(
        C=p["C"],
        class_weight="balanced",
        solver="liblinear",
        dual=True,
        max_iter=300,
        random_state=seed,
    )
    return [("clf", StackedOneVsRest(binary))]


def _suggest_svm(trial: optuna.Trial) -> Params:
    return {"C": trial.suggest_float("C", 0.1, 3.0, log=True)}


def _head_svm(p: Params, seed: int, n_jobs: int) -> list[tuple[str, Any]]:
    return [("clf", TemperatureScaledSVC(C=p["C"], class_weight="balanced", random_state=seed))]


def _suggest_forest(trial: optuna.Trial) -> Params:
    return {
        "k": trial.suggest_int("k", 1000, 8000, step=500),
        "n_estimators": trial.suggest_int("n_estimators", 100, 400, step=50),
        "max_features": trial.suggest_categorical("max_features", ["sqrt", "log2"]),
        "min_samples_leaf": trial.suggest_int("min_samples_leaf", 1, 3),
        "class_weight": trial.suggest_categorical("class_weight", ["balanced_subsample", None]),
    }


def _forest_defaults() -> Params:
    return {
        "k": 4000,
        "n_estimators": 300,
        "max_features": "sqrt",
        "min_samples_leaf": 1,
        "class_weight": "balanced_subsample",
    }


def _select(k: int) -> tuple[str, Any]:
    return ("select", SelectKBest(chi2, k=k))


def _forest_head(forest: type) -> Callable[[Params, int, int], list[tuple[str, Any]]]:
    """Random forest and extra trees share their search space and their head."""

    def head(p: Params, seed: int, n_jobs: int) -> list[tuple[str, Any]]:
        model = forest(
            n_estimators=p["n_estimators"],
            max_features=p["max_features"],
            min_samples_leaf=p["min_samples_leaf"],
            class_weight=p["class_weight"],
            n_jobs=n_jobs,
            random_state=seed,
        )
        return [_select(p["k"]), ("clf", model)]

    return head


def _suggest_hgb(trial: optuna.Trial) -> Params:
    return {
        "k": trial.suggest_int("k", 300, 1500, step=100),
        "learning_rate": trial.suggest_float("learning_rate", 0.05, 0.3, log=True),
        "max_leaf_nodes": trial.suggest_int("max_leaf_nodes", 7, 31),
        "l2_regularization": trial.suggest_float("l2_regularization", 1e-3, 10.0, log=True),
    }


def _head_hgb(p: Params, seed: int, n_jobs: int) -> list[tuple[str, Any]]:
    model = HistGradientBoostingClassifier(
        learning_rate=p["learning_rate"],
        max_iter=200,
        max_leaf_nodes=p["max_leaf_nodes"],
        l2_regularization=p["l2_regularization"],
        max_bins=32,
        early_stopping=True,
        n_iter_no_change=8,
        random_state=seed,
    )
    return [_select(p["k"]), ("dense", ToDense()), ("clf", model)]


def _suggest_xgb(trial: optuna.Trial) -> Params:
    return {
        "k": trial.suggest_int("k", 500, 2000, step=250),
        "n_estimators": trial.suggest_int("n_estimators", 50, 250, step=50),
        "max_depth": trial.suggest_int("max_depth", 3, 8),
        "learning_rate": trial.suggest_float("learning_rate", 0.05, 0.3, log=True),
        "subsample": trial.suggest_float("subsample", 0.6, 1.0),
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.3, 1.0),
    }


def _head_xgb(p: Params, seed: int, n_jobs: int) -> list[tuple[str, Any]]:
    model = XGBClassifier(
        n_estimators=p["n_estimators"],
        max_depth=p["max_depth"],
        learning_rate=p["learning_rate"],
        subsample=p["subsample"],
        colsample_bytree=p["colsample_bytree"],
        tree_method="hist",
        max_bin=32,
        n_jobs=n_jobs,
        random_state=seed,
        verbosity=0,
    )
    return [_select(p["k"]), ("clf", EncodedLabels(model))]


def _suggest_lgbm(trial: optuna.Trial) -> Params:
    return {
        "k": trial.suggest_int("k", 500, 2000, step=250),
        "n_estimators": trial.suggest_int("n_estimators", 50, 250, step=50),
        "num_leaves": trial.suggest_int("num_leaves", 8, 64, log=True),
        "learning_rate": trial.suggest_float("learning_rate", 0.03, 0.2, log=True),
        "min_child_samples": trial.suggest_int("min_child_samples", 5, 30),
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.3, 1.0),
    }


def _head_lgbm(p: Params, seed: int, n_jobs: int) -> list[tuple[str, Any]]:
    model = LGBMClassifier(
        n_estimators=p["n_estimators"],
        num_leaves=p["num_leaves"],
        learning_rate=p["learning_rate"],
        min_child_samples=p["min_child_samples"],
        colsample_bytree=p["colsample_bytree"],
        class_weight="balanced",
        max_bin=32,
        n_jobs=n_jobs,
        random_state=seed,
        verbose=-1,
    )
    return [_select(p["k"]), ("clf", model)]


REGISTRY: dict[str, Family] = {
    family.name: family
    for family in (
        Family("logistic_regression", _suggest_logreg, _head_logreg, {"C": 20.0}, True),
        Family("linear_svm", _suggest_svm, _head_svm, {"C": 0.5}, True),
        Family(
            "random_forest",
            _suggest_forest,
            _forest_head(RandomForestClassifier),
            _forest_defaults(),
        ),
        Family(
            "extra_trees", _suggest_forest, _forest_head(ExtraTreesClassifier), _forest_defaults()
        ),
        Family(
            "gradient_boosting",
            _suggest_hgb,
            _head_hgb,
            {"k": 800, "learning_rate": 0.1, "max_leaf_nodes": 15, "l2_regularization": 1.0},
        ),
        Family(
            "xgboost",
            _suggest_xgb,
            _head_xgb,
            {
                "k": 1000,
                "n_estimators": 150,
                "max_depth": 6,
                "learning_rate": 0.15,
                "subsample": 0.9,
                "colsample_bytree": 0.5,
            },
        ),
        Family(
            "lightgbm",
            _suggest_lgbm,
            _head_lgbm,
            {
                "k": 1000,
                "n_estimators": 150,
                "num_leaves": 16,
                "learning_rate": 0.1,
                "min_child_samples": 10,
                "colsample_bytree": 0.5,
            },
        ),
    )
}
assert tuple(REGISTRY) == FAMILIES


def default_params(family: str) -> Params:
    """A known-reasonable starting point, tried first by every study."""
    return {**DEFAULT_TEXT, **DEFAULT_FEATURES, **REGISTRY[family].defaults}


def starting_points(family: str) -> list[Params]:
    """Trials every study runs first: the defaults, then (where the family takes it) the same
    with the token-embedding block, then the same head on word-bounded character n-grams and on
    fully normalised text, so even a small budget compares the representations."""
    base = default_params(family)
    if REGISTRY[family].embeddings:
        base = {**base, "embedding_weight": 0.0}
        with_embeddings = [{**base, "embedding_weight": 1.0}]
    else:
        with_embeddings = []
    return [
        base,
        *with_embeddings,
        {**base, "char_ngrams": "char_wb_2_5", "min_df": 2},
        {**base, "text_level": "full", "stem": True, "remove_stop_words": False},
    ]


def split_params(params: Params) -> tuple[Params, Params, Params]:
    """(text, features, head) parts of a flat parameter dict."""
    text = {key: params[key] for key in TEXT_KEYS if key in params}
    features = {key: params[key] for key in FEATURE_KEYS if key in params}
    head = {key: value for key, value in params.items() if key not in (*TEXT_KEYS, *FEATURE_KEYS)}
    return text, features, head


def build_head(
    family: str, head_params: Params, seed: int, n_jobs: int = 1, calibrate: bool = True
) -> Pipeline:
    """The steps after the features. ``calibrate=False`` skips probability calibration, which
    cross-validation scoring (macro-F1 of predicted labels) does not need."""
    head = Pipeline(REGISTRY[family].head(head_params, seed, n_jobs))
    if not calibrate:
        for name, step in head.steps:
            if hasattr(step, "calibration_folds"):
                head.set_params(**{f"{name}__calibration_folds": 0})
    return head


def lean_predict_proba(model: Any, rows: Any) -> np.ndarray:
    """``model.predict_proba(rows)`` for a pipeline, without scikit-learn's per-call machinery
    (output containers, metadata routing, one joblib call per feature block), which costs more
    than the arithmetic for the handful of tickets of a serving micro-batch. Same steps, same
    numbers; anything but a plain pipeline goes the usual way."""
    if not isinstance(model, Pipeline):
        return np.asarray(model.predict_proba(rows))
    data = rows
    for _, step in model.steps[:-1]:
        if step is None or isinstance(step, str):
            continue
        if isinstance(step, FeatureUnion) and _plain_union(step):
            blocks = [transformer.transform(data) for _, transformer in step.transformer_list]
            sparse = any(sp.issparse(block) for block in blocks)
            data = sp.hstack(blocks).tocsr() if sparse else np.hstack(blocks)
        else:
            data = step.transform(data)
    return np.asarray(model.steps[-1][1].predict_proba(data))


def _plain_union(union: FeatureUnion) -> bool:
    return union.transformer_weights is None and all(
        not isinstance(transformer, str) for _, transformer in union.transformer_list
    )


def build_pipeline(
    family: str, params: Params, language: str, seed: int, n_jobs: int = 1
) -> Pipeline:
    """The full, unfitted pipeline that is trained, saved and served."""
    text, features, head = split_params(params)
    steps: list[tuple[str, Any]] = [
        ("normalize", build_normalizer(text, language)),
        ("features", build_features(features)),
        *REGISTRY[family].head(head, seed, n_jobs),
    ]
    return Pipeline(steps)
