"""The sentence encoder distilled into a static table at training time, for the ablation.

Serving the encoder costs about 12 ms a ticket; a table lookup costs microseconds. This block
learns, on the training tickets only, a ridge map from a word TF-IDF (1-2 grams, the 5,000 most
frequent) to the tickets' e5 vectors. The map is a table: one 384-wide vector per vocabulary
term, so serving a ticket is a sparse product, as for the token table. Rows it was fitted on
would get better vectors than new tickets, so ``fit_transform`` gives each training row the
vector of a map fitted without it (5-fold cross-fitting, as scikit-learn's TargetEncoder does).

It lives in benchmarks/, not core/: measured on every dataset here it did not earn a place in
the product (see README, "Feature ablation"), and it is kept to make that measurement repeatable.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg as sl
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.model_selection import KFold

from core.embeddings import dense_as_csr
from core.training.features import ENCODER_MAX_WORDS, ENCODER_PREFIX


def _encode(texts: list[str]) -> np.ndarray:
    from core.encoder import encode

    return encode(texts, ENCODER_PREFIX, ENCODER_MAX_WORDS)


class DistilledEncoder(TransformerMixin, BaseEstimator):
    """Texts -> unit-length ridge projection of their word TF-IDF onto e5 space, times
    ``weight``."""

    def __init__(
        self, weight: float = 2.0, vocabulary: int = 5000, alpha: float = 1.0, folds: int = 5
    ) -> None:
        self.weight = weight
        self.vocabulary = vocabulary
        self.alpha = alpha
        self.folds = folds

    def _fit_map(self, texts: list[str], targets: np.ndarray) -> tuple[TfidfVectorizer, Any]:
        words = TfidfVectorizer(
            ngram_range=(1, 2),
            min_df=2,
            max_features=self.vocabulary,
            sublinear_tf=True,
            dtype=np.float32,
        )
        features = words.fit_transform(texts)
        gram = (features.T @ features).toarray().astype(np.float64)
        gram[np.diag_indices_from(gram)] += self.alpha
        table = sl.solve(gram, np.asarray(features.T @ targets, dtype=np.float64), assume_a="pos")
        return words, table.astype(np.float32)

    def _project(self, words: TfidfVectorizer, table: np.ndarray, texts: list[str]) -> np.ndarray:
        vectors = np.asarray(words.transform(texts) @ table, dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors * np.divide(self.weight, norms, out=np.zeros_like(norms), where=norms > 0)

    def fit(self, X: Any, y: Any = None) -> DistilledEncoder:
        texts = [str(text) for text in X]
        self.words_, self.table_ = self._fit_map(texts, _encode(texts))
        return self

    def fit_transform(self, X: Any, y: Any = None, **fit_params: Any) -> Any:
        texts = [str(text) for text in X]
        targets = _encode(texts)
        self.words_, self.table_ = self._fit_map(texts, targets)
        out = np.zeros((len(texts), targets.shape[1]), dtype=np.float32)
        for fit_rows, other_rows in KFold(self.folds, shuffle=True, random_state=0).split(texts):
            words, table = self._fit_map([texts[i] for i in fit_rows], targets[fit_rows])
            out[other_rows] = self._project(words, table, [texts[i] for i in other_rows])
        return dense_as_csr(out)

    def transform(self, X: Any) -> Any:
        return dense_as_csr(self._project(self.words_, self.table_, [str(t) for t in X]))

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.array([f"distilled{i}" for i in range(self.table_.shape[1])], dtype=object)


def with_distilled(model: Any, weight: float) -> Any:
    """The pipeline with the distilled block added to its feature union."""
    model.named_steps["features"].transformer_list.append(("distilled", DistilledEncoder(weight)))
    return model
