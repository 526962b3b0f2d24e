"""Vectorised n-gram counting that reproduces scikit-learn's ``char``, ``char_wb`` and ``word``
analyzers exactly.

scikit-learn builds every n-gram as a Python string and looks it up in a dict, about 0.4 ms a
ticket for character 2-5-grams: that loop, not the model, limited training trials and serving
latency. Here each symbol (a character, or a word token) gets a small integer rank, an n-gram
becomes one integer (its ranks as digits in base ``alphabet size + 1``; no digit is zero, so
n-grams of different lengths never share a code), and windows are computed for a whole batch at
once with NumPy. Counting is only used when the codes fit in 63 bits; callers fall back to
scikit-learn otherwise. Tests check equality with scikit-learn on arbitrary Unicode.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

CHAR_ANALYZERS = ("char", "char_wb")
WORD_TOKEN_PATTERN = r"(?u)\b\w+\b"
_WHITE_SPACES = re.compile(r"\s\s+")  # scikit-learn's rule: runs of 2+ become one space
_WORD_TOKEN = re.compile(WORD_TOKEN_PATTERN)
_CODE_LIMIT = 2**63 - 1
_DIRECT_TABLE = 1 << 16
_EMPTY = -1
_PROBE_ROUNDS = 3
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@dataclass(frozen=True)
class Symbols:
    """A batch as one sequence of symbol ranks (0 = unknown), cut into segments: n-grams never
    cross a segment end. ``owner`` is the document each segment belongs to."""

    ranks: np.ndarray
    lengths: np.ndarray
    owner: np.ndarray


def _segments(documents: Sequence[str], analyzer: str) -> tuple[list[str], np.ndarray]:
    if analyzer == "char":
        return [_WHITE_SPACES.sub(" ", doc) for doc in documents], np.arange(len(documents))
    segments: list[str] = []
    counts = []
    for doc in documents:
        words = _WHITE_SPACES.sub(" ", doc).split()
        segments.extend(f" {word} " for word in words)
        counts.append(len(words))
    return segments, np.repeat(np.arange(len(documents)), counts)


def _code_points(segments: list[str]) -> np.ndarray:
    joined = "".join(segments).encode("utf-32-le", "surrogatepass")
    return np.frombuffer(joined, dtype="<u4").astype(np.int64)


def _char_symbols(
    documents: Sequence[str], analyzer: str, alphabet: np.ndarray | None
) -> tuple[Symbols, np.ndarray]:
    """Ranks of every character; the alphabet is the batch's own when none is given (fit)."""
    segments, owner = _segments(documents, analyzer)
    points = _code_points(segments)
    if alphabet is None:
        alphabet = np.unique(points)
    ranks = _ranks(alphabet, points)
    lengths = np.fromiter(map(len, segments), dtype=np.int64, count=len(segments))
    return Symbols(ranks, lengths, owner), alphabet


def _ranks(alphabet: np.ndarray, points: np.ndarray) -> np.ndarray:
    """1-based position of each code point in the sorted alphabet, 0 when absent: a direct
    table for the usual small code points, binary search beyond it."""
    if not len(alphabet):
        return np.zeros(len(points), dtype=np.int64)
    table_size = min(int(alphabet[-1]) + 1, _DIRECT_TABLE)
    table = np.zeros(table_size, dtype=np.int64)
    direct = alphabet < table_size
    table[alphabet[direct]] = np.flatnonzero(direct) + 1
    small = points < table_size
    ranks = table[np.where(small, points, 0)] * small
    if not small.all():
        large = np.flatnonzero(~small)
        position = np.searchsorted(alphabet, points[large])
        clipped = np.minimum(position, len(alphabet) - 1)
        found = (position < len(alphabet)) & (alphabet[clipped] == points[large])
        ranks[large] = np.where(found, position + 1, 0)
    return ranks


def _word_symbols(
    documents: Sequence[str], tokens: dict[str, int], grow: bool
) -> tuple[Symbols, dict[str, int]]:
    """Ranks of every word token; with ``grow`` unseen tokens are added to ``tokens`` (fit)."""
    per_doc = [_WORD_TOKEN.findall(doc) for doc in documents]
    flat = [token for doc_tokens in per_doc for token in doc_tokens]
    if grow:
        ranks = [tokens.setdefault(token, len(tokens) + 1) for token in flat]
    else:
        ranks = [tokens.get(token, 0) for token in flat]
    lengths = np.fromiter(map(len, per_doc), dtype=np.int64, count=len(per_doc))
    symbols = Symbols(np.asarray(ranks, dtype=np.int64), lengths, np.arange(len(documents)))
    return symbols, tokens


def _windows(
    symbols: Symbols, base: int, ngram_range: tuple[int, int], whole_short_segments: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(document, code) of every n-gram made only of known symbols, n in ``ngram_range``.

    ``whole_short_segments`` is char_wb's rule: a padded word shorter than the smallest n
    counts once as a whole."""
    min_n, max_n = ngram_range
    ranks, lengths = symbols.ranks, symbols.lengths
    total = len(ranks)
    starts = np.cumsum(lengths) - lengths
    segment_end = np.repeat(starts + lengths, lengths)
    position_owner = np.repeat(symbols.owner, lengths)
    unknown_before = np.concatenate([[0], np.cumsum(ranks == 0)])
    rows, codes = [], []
    code = np.zeros(total, dtype=np.int64)
    for n in range(1, max_n + 1):
        count = total - n + 1
        if count <= 0:
            break
        code = code[:count] * base + ranks[n - 1 : n - 1 + count]
        if n < min_n:
            continue
        start = np.arange(count)
        valid = (start + n <= segment_end[:count]) & (
            unknown_before[start + n] == unknown_before[start]
        )
        rows.append(position_owner[:count][valid])
        codes.append(code[valid])
    if whole_short_segments:
        _add_short_segments(symbols, base, min_n, starts, rows, codes)
    if not codes:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(rows), np.concatenate(codes)


def _add_short_segments(
    symbols: Symbols,
    base: int,
    min_n: int,
    starts: np.ndarray,
    rows: list[np.ndarray],
    codes: list[np.ndarray],
) -> None:
    short = np.flatnonzero((symbols.lengths > 0) & (symbols.lengths < min_n))
    for segment in short.tolist():
        digits = symbols.ranks[starts[segment] : starts[segment] + symbols.lengths[segment]]
        if (digits == 0).any():
            continue
        code = 0
        for digit in digits.tolist():
            code = code * base + digit
        rows.append(np.array([symbols.owner[segment]]))
        codes.append(np.array([code], dtype=np.int64))


def _fits(alphabet_size: int, max_n: int) -> bool:
    return bool((alphabet_size + 1) ** max_n <= _CODE_LIMIT)


def _count_matrix(
    rows: np.ndarray, columns: np.ndarray, n_documents: int, n_features: int, dtype: type
) -> sp.csr_array:
    """Counts of (row, column) pairs as a canonical CSR matrix (sorted, no duplicates)."""
    keys, counts = np.unique(rows * n_features + columns, return_counts=True)
    entry_rows = keys // n_features
    indptr = np.searchsorted(entry_rows, np.arange(n_documents + 1))
    index_dtype = np.int32 if len(keys) < 2**31 and n_features < 2**31 else np.int64
    return sp.csr_array(
        (counts.astype(dtype), (keys % n_features).astype(index_dtype), indptr.astype(index_dtype)),
        shape=(n_documents, n_features),
    )


def _digits(codes: np.ndarray, base: int, max_n: int) -> np.ndarray:
    """Rank digits of each code, most significant first, 0 where a shorter n-gram has none."""
    digits = np.zeros((len(codes), max_n), dtype=np.int64)
    remaining = codes.copy()
    for column in range(max_n - 1, -1, -1):
        digits[:, column] = remaining % base
        remaining //= base
    return digits


def _char_terms(codes: np.ndarray, alphabet: np.ndarray, max_n: int) -> list[str]:
    digits = _digits(codes, len(alphabet) + 1, max_n)
    present = digits > 0
    points = alphabet[digits[present] - 1].astype("<u4")
    text = points.tobytes().decode("utf-32-le", "surrogatepass")
    ends = np.cumsum(present.sum(axis=1))
    starts = ends - present.sum(axis=1)
    return [text[start:end] for start, end in zip(starts.tolist(), ends.tolist(), strict=True)]


def _word_terms(codes: np.ndarray, tokens: dict[str, int], max_n: int) -> list[str]:
    by_rank = ["", *list(tokens)]
    digits = _digits(codes, len(tokens) + 1, max_n)
    return [" ".join(by_rank[d] for d in row if d) for row in digits.tolist()]


def fit_counts(
    documents: Sequence[str], analyzer: str, ngram_range: tuple[int, int], dtype: type
) -> tuple[dict[str, int], sp.csr_array] | None:
    """scikit-learn's unfitted ``_count_vocab``: (vocabulary, counts), or None when the batch's
    alphabet is too large for 63-bit codes. Column order is arbitrary (scikit-learn sorts)."""
    max_n = ngram_range[1]
    if analyzer == "word":
        symbols, tokens = _word_symbols(documents, {}, grow=True)
        if not _fits(len(tokens), max_n):
            return None
        base = len(tokens) + 1
    else:
        symbols, alphabet = _char_symbols(documents, analyzer, None)
        if not _fits(len(alphabet), max_n):
            return None
        base = len(alphabet) + 1
    rows, codes = _windows(symbols, base, ngram_range, analyzer == "char_wb")
    unique, columns = np.unique(codes, return_inverse=True)
    if analyzer == "word":
        terms = _word_terms(unique, tokens, max_n)
    else:
        terms = _char_terms(unique, alphabet, max_n)
    vocabulary = dict(zip(terms, range(len(terms)), strict=True))
    return vocabulary, _count_matrix(rows, columns, len(documents), len(terms), dtype)


class CodeTable:
    """An open-addressing hash table (linear probing, load <= 1/4) from n-gram codes to columns,
    looked up for a whole array at once: one random read per code instead of a binary search.
    The few codes still unresolved after a few probes are binary-searched, so a long probe
    chain never costs a round of array operations per step."""

    def __init__(self, codes: np.ndarray, columns: np.ndarray) -> None:
        bits = max(4, (4 * len(codes)).bit_length())
        self.mask = (1 << bits) - 1
        self.shift = np.uint64(64 - bits)
        self.keys = np.full(self.mask + 1, _EMPTY, dtype=np.int64)
        self.values = np.zeros(self.mask + 1, dtype=np.int64)
        home = self._home(codes)
        pending = np.arange(len(codes))
        self.max_probe = 0
        while pending.size:
            slots = (home[pending] + self.max_probe) & self.mask
            free = self.keys[slots] == _EMPTY
            taken_slots, first = np.unique(slots[free], return_index=True)
            placed = pending[free][first]
            self.keys[taken_slots] = codes[placed]
            self.values[taken_slots] = columns[placed]
            pending = np.setdiff1d(pending, placed, assume_unique=True)
            self.max_probe += 1
        order = np.argsort(codes)
        self.sorted_codes, self.sorted_columns = codes[order], columns[order]

    def _home(self, codes: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):
            hashed = codes.astype(np.uint64) * _GOLDEN
        return (hashed >> self.shift).astype(np.int64)

    def lookup(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(positions in ``codes`` that are present, their columns)."""
        slots = self._home(codes)
        active = np.arange(len(codes))
        hits, columns = [], []
        for _ in range(min(self.max_probe, _PROBE_ROUNDS)):
            keys = self.keys[slots]
            found = keys == codes[active]
            hits.append(active[found])
            columns.append(self.values[slots[found]])
            going_on = ~found & (keys != _EMPTY)
            active = active[going_on]
            slots = (slots[going_on] + 1) & self.mask
        if active.size:
            position = np.searchsorted(self.sorted_codes, codes[active])
            clipped = np.minimum(position, len(self.sorted_codes) - 1)
            found = self.sorted_codes[clipped] == codes[active]
            hits.append(active[found])
            columns.append(self.sorted_columns[clipped[found]])
        if not hits:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        return np.concatenate(hits), np.concatenate(columns)


class NgramIndex:
    """A fitted vocabulary as sorted n-gram codes, for counting new documents."""

    def __init__(self, vocabulary: dict[str, int], analyzer: str, ngram_range: tuple[int, int]):
        self.analyzer = analyzer
        self.ngram_range = ngram_range
        self.n_features = len(vocabulary)
        terms = list(vocabulary)
        term_columns = np.fromiter(vocabulary.values(), dtype=np.int64, count=len(terms))
        codes = self._word_codes(terms) if analyzer == "word" else self._char_codes(terms)
        self.table = CodeTable(codes, term_columns)

    def _char_codes(self, terms: list[str]) -> np.ndarray:
        points = _code_points(terms)
        self.alphabet = np.unique(points)
        self.tokens: dict[str, int] = {}
        self.base = len(self.alphabet) + 1
        self.usable = _fits(len(self.alphabet), self.ngram_range[1])
        ranks = np.searchsorted(self.alphabet, points) + 1
        return _term_codes(ranks, [len(term) for term in terms], self.base, self.usable)

    def _word_codes(self, terms: list[str]) -> np.ndarray:
        split = [term.split(" ") for term in terms]
        self.tokens = {}
        for parts in split:
            for token in parts:
                self.tokens.setdefault(token, len(self.tokens) + 1)
        self.alphabet = np.zeros(0, dtype=np.int64)
        self.base = len(self.tokens) + 1
        self.usable = _fits(len(self.tokens), self.ngram_range[1])
        ranks = np.asarray([self.tokens[t] for parts in split for t in parts], dtype=np.int64)
        return _term_codes(ranks, [len(parts) for parts in split], self.base, self.usable)

    def counts(self, documents: Sequence[str], dtype: type) -> sp.csr_array:
        if self.analyzer == "word":
            symbols, _ = _word_symbols(documents, self.tokens, grow=False)
        else:
            symbols, _ = _char_symbols(documents, self.analyzer, self.alphabet)
        rows, codes = _windows(symbols, self.base, self.ngram_range, self.analyzer == "char_wb")
        found, columns = self.table.lookup(codes)
        return _count_matrix(rows[found], columns, len(documents), self.n_features, dtype)


def _term_codes(ranks: np.ndarray, lengths: list[int], base: int, usable: bool) -> np.ndarray:
    """Each term's code: its ranks as base-``base`` digits, most significant first."""
    if not usable or not lengths:
        return np.zeros(len(lengths), dtype=np.int64)
    term_lengths = np.asarray(lengths, dtype=np.int64)
    starts = np.cumsum(term_lengths) - term_lengths
    offset = np.arange(len(ranks)) - np.repeat(starts, term_lengths)
    exponent = np.repeat(term_lengths, term_lengths) - 1 - offset
    weights = np.power(base, exponent, dtype=np.int64)
    return np.add.reduceat(ranks * weights, starts)


def located_columns(
    index: NgramIndex, segments: Sequence[str] | Sequence[Sequence[str]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where each counted n-gram of one document sits: (start, length, column) per window, with
    starts counted in symbols (characters, or word tokens) of ``segments`` laid end to end. For
    the character analyzers ``segments`` are strings (``char``: the whole document as one;
    ``char_wb``: each word padded with spaces); for ``word`` each segment is a list of tokens.
    The explainer (core/explain/words.py) places feature contributions on words with it."""
    if index.analyzer == "word":
        tokens = [token for segment in segments for token in segment]
        ranks = np.asarray([index.tokens.get(token, 0) for token in tokens], dtype=np.int64)
    else:
        ranks = _ranks(index.alphabet, _code_points([str(s) for s in segments]))
    lengths = np.fromiter(map(len, segments), dtype=np.int64, count=len(segments))
    starts, sizes, codes = [], [], []
    segment_start = np.cumsum(lengths) - lengths
    segment_end = np.repeat(segment_start + lengths, lengths)
    unknown_before = np.concatenate([[0], np.cumsum(ranks == 0)])
    total = len(ranks)
    code = np.zeros(total, dtype=np.int64)
    min_n, max_n = index.ngram_range
    for n in range(1, max_n + 1):
        count = total - n + 1
        if count <= 0:
            break
        code = code[:count] * index.base + ranks[n - 1 : n - 1 + count]
        if n < min_n:
            continue
        start = np.arange(count)
        valid = (start + n <= segment_end[:count]) & (
            unknown_before[start + n] == unknown_before[start]
        )
        starts.append(start[valid])
        sizes.append(np.full(int(valid.sum()), n, dtype=np.int64))
        codes.append(code[valid])
    if index.analyzer == "char_wb":  # a padded word shorter than the smallest n counts whole
        for segment in np.flatnonzero((lengths > 0) & (lengths < min_n)).tolist():
            digits = ranks[segment_start[segment] : segment_start[segment] + lengths[segment]]
            if (digits == 0).any():
                continue
            whole = 0
            for digit in digits.tolist():
                whole = whole * index.base + digit
            starts.append(np.array([segment_start[segment]]))
            sizes.append(np.array([lengths[segment]]))
            codes.append(np.array([whole], dtype=np.int64))
    if not codes:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    found, columns = index.table.lookup(np.concatenate(codes))
    return np.concatenate(starts)[found], np.concatenate(sizes)[found], columns
