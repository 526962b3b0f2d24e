"""One Optuna study per family: stratified CV, macro-F1, pruning across folds, fixed seeds.

Normalised documents and per-fold TF-IDF matrices are cached by their settings, so a trial that
revisits a text setting only fits its model head.

Small tables are where help desks start, and where this search misleads most: three folds of a
hundred rows underestimate a linear model trained on all of them, one fold's macro-F1 has a
standard error of about 0.05 while families are ranked on thousandths, and median pruning after
one fold throws most trials away. Below ``small_table_rows`` the search therefore uses five
folds (fewer when a class has fewer rows; repeated twice below 500 rows), without pruning, and
``select_winner`` applies the one-standard-error rule: among the configurations whose CV
macro-F1 is within one standard error of the best, it takes a family's default configuration
before a tuned one and a linear family before a tree ensemble.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
import pandas as pd
from scipy.special import softmax
from sklearn.metrics import f1_score
from sklearn.model_selection import RepeatedStratifiedKFold

from core.data.tables import LABEL, NOTES, SHORT
from core.models import TemperatureScaledSVC, fit_temperature
from core.training.families import REGISTRY, build_head
from core.training.features import (
    DEFAULT_TEXT,
    Params,
    build_features,
    build_normalizer,
    encoder_block,
    has_dense_block,
    suggest_features,
    suggest_text,
)
from core.training.folds import cv_plan

FoldMatrices = list[tuple[Any, Any]]


#: Out-of-fold probabilities are kept for a trial while repeats x rows x classes stays under
#: this (float16: 600 KB a trial), so the search's trials can be combined into an ensemble
#: (core/training/ensemble.py); beyond it (Banking77's 10,000 rows x 77 classes) only the single
#: best configuration is refitted.
OOF_CELLS = 300_000


@dataclass
class TrialPredictions:
    """A completed trial: its configuration, CV score and out-of-fold predictions (class
    indices into ``TuningData.classes``, one list per repeat of the folds), which bias-corrected
    selection (core/training/selection.py) reuses instead of refitting, and its out-of-fold
    probabilities (``encode_probabilities``; empty when the table is too large to keep them),
    from which ensemble selection builds its ensemble."""

    params: Params
    cv_macro_f1: float
    cv_std_error: float
    predictions: list[list[int]]
    probabilities: str = ""


def encode_probabilities(probabilities: np.ndarray) -> str:
    """A (repeats, rows, classes) array as text for a trial's user attributes and the study
    cache: its shape, then float16 values in base64."""
    shape = ",".join(str(n) for n in probabilities.shape)
    data = base64.b64encode(np.asarray(probabilities, dtype="<f2").tobytes()).decode("ascii")
    return f"{shape}:{data}"


def decode_probabilities(text: str) -> np.ndarray:
    """``encode_probabilities``'s array back, as float32."""
    shape, data = text.split(":", 1)
    values = np.frombuffer(base64.b64decode(data), dtype="<f2").astype(np.float32)
    return values.reshape(tuple(int(n) for n in shape.split(",")))


@dataclass
class StudyResult:
    """The outcome of one family's study."""

    family: str
    best_params: Params
    cv_macro_f1: float
    trials: int
    pruned: int
    seconds: float
    error: str | None = None
    fits: int = 0
    unconverged_fits: int = 0
    #: Standard error of the best trial's mean over its folds, and how many folds it had.
    cv_std_error: float = float("nan")
    cv_folds: int = 0
    #: The family's default configuration (its first trial) and how it scored.
    default_params: Params | None = None
    default_cv_macro_f1: float = float("nan")
    default_cv_std_error: float = float("nan")
    #: Why this result won, once select_winner has chosen it.
    selection: str = ""
    #: Every completed trial's out-of-fold predictions (small tables only) and probabilities
    #: (within ``OOF_CELLS``).
    trial_predictions: list[TrialPredictions] = field(default_factory=list)
    #: The chosen configuration's out-of-fold probabilities (``encode_probabilities``), when
    #: kept: the label audit reads them instead of refitting on every fold.
    oof_probabilities: str = ""
    #: The TF-IDF gate a winner with the encoder is served behind (core/training/cascade.py):
    #: its family, parameters and threshold, and what out-of-fold probabilities said of it.
    gate: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.trials > 0


class TuningData:
    """Training rows shared by every study, with thread-safe caches of normalised documents and
    of per-fold TF-IDF matrices (studies running side by side often want the same setting, and
    the vectoriser is the slow part for linear models)."""

    def __init__(
        self,
        frame: pd.DataFrame,
        language: str,
        cv_folds: int,
        seed: int,
        capacity: int = 4,
        small_table_rows: int = 0,
        encoder: bool = False,
    ) -> None:
        self.frame = frame
        self.language = language
        self.seed = seed
        self.cv_folds = cv_folds
        self.small_table_rows = small_table_rows
        #: Where ``publish`` (core/training/shared_data.py) put the rows for other processes.
        #: Set by core/training/shared_data.publish: a ``SharedRows`` whose ``load`` rebuilds
        #: this table in another process.
        self.shared: Any = None
        #: Whether the linear SVM may add the sentence-encoder block (the accurate profile).
        self.encoder = encoder
        self.labels = frame[LABEL].to_numpy(dtype=object)
        self.classes = np.unique(self.labels)
        #: Labels as indices into ``classes``, as out-of-fold predictions are kept.
        self.codes = np.searchsorted(self.classes, self.labels)
        self.plan = cv_plan(self.labels, cv_folds, small_table_rows)
        splitter = RepeatedStratifiedKFold(
            n_splits=self.plan.folds, n_repeats=self.plan.repeats, random_state=seed
        )
        self.folds = list(splitter.split(np.zeros(len(frame)), self.labels))
        self.capacity = capacity
        self._documents: dict[tuple[Any, ...], np.ndarray] = {}
        self._matrices: OrderedDict[tuple[Any, ...], FoldMatrices] = OrderedDict()
        self._lock = threading.Lock()
        self._key_locks: dict[tuple[Any, ...], threading.Lock] = {}

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """What travels to another process (a Dask worker, prefect#5814: locks do not pickle):
        once published, only where the rows are, and each process loads them once and keeps
        its own caches (core/training/shared_data.py); otherwise the rows and the settings,
        from which the other process builds its own caches."""
        if self.shared is not None:
            return self.shared.load, ()
        arguments = (self.frame, self.language, self.cv_folds, self.seed, self.capacity)
        return TuningData, (*arguments, self.small_table_rows, self.encoder)

    def fingerprint(self) -> str:
        """A digest of what a study sees: the rows (texts and labels, in order), the language,
        the folds and the seed. Two runs with the same fingerprint search the same problem."""
        digest = hashlib.sha256()
        rows = pd.util.hash_pandas_object(self.frame[[SHORT, NOTES, LABEL]], index=False)
        digest.update(rows.to_numpy().tobytes())
        plan = self.plan
        digest.update(f"{self.language}|{plan.folds}x{plan.repeats}|{self.seed}".encode())
        if self.encoder:
            digest.update(b"|encoder")
        return digest.hexdigest()[:32]

    def warm_encoder(self) -> int:
        """Embed every training text the encoder block can see, once, before the studies start:
        their trials then find the vectors cached, and no study's time budget pays for them.
        Returns the number of texts the engine embedded (0 when all were cached)."""
        if not self.encoder:
            return 0
        from core.encoder import COUNTS

        before = COUNTS.embedded
        documents = self.documents(DEFAULT_TEXT)
        encoder_block(1.0).fit(documents).transform(documents)
        return COUNTS.embedded - before

    def _key_lock(self, key: tuple[Any, ...]) -> threading.Lock:
        with self._lock:
            return self._key_locks.setdefault(key, threading.Lock())

    def documents(self, text_params: Params) -> np.ndarray:
        key = tuple(sorted(text_params.items()))
        with self._key_lock(("documents", key)):
            if key not in self._documents:
                normalizer = build_normalizer(text_params, self.language)
                self._documents[key] = normalizer.transform(self.frame[[SHORT, NOTES]])
            return self._documents[key]

    def fold_matrices(self, text_params: Params, feature_params: Params) -> FoldMatrices:
        """(train, validation) TF-IDF matrices per fold, fitted on each fold's training part.

        Each caller gets its own copies: SciPy may sort a sparse matrix's indices in place while
        another thread reads them, which crashes the process, so cached matrices are never
        handed out to two studies at once."""
        key = (tuple(sorted(text_params.items())), tuple(sorted(feature_params.items())))
        with self._key_lock(("matrices", key)):
            with self._lock:
                cached = self._matrices.get(key)
                if cached is not None:
                    self._matrices.move_to_end(key)
            if cached is None:
                cached = self._build_matrices(text_params, feature_params)
                with self._lock:
                    self._matrices[key] = cached
                    while len(self._matrices) > self.capacity:
                        self._matrices.popitem(last=False)
            return [(train.copy(), valid.copy()) for train, valid in cached]

    def _build_matrices(self, text_params: Params, feature_params: Params) -> FoldMatrices:
        documents = self.documents(text_params)
        matrices = []
        for train_idx, valid_idx in self.folds:
            features = build_features(feature_params)
            train_matrix = features.fit_transform(documents[train_idx])
            valid_matrix = features.transform(documents[valid_idx])
            for matrix in (train_matrix, valid_matrix):
                matrix.sum_duplicates()  # canonical form: later operations need no in-place fixes
            matrices.append((train_matrix, valid_matrix))
        return matrices


def objective_for(family: str, data: TuningData, n_jobs: int) -> Callable[[optuna.Trial], float]:
    """The trial's mean macro-F1 over the folds. Each trial keeps in its user attributes what
    the study's result needs, so a study whose trials ran in several processes (a shared
    storage) is summed up from the storage alone: its fold scores, its model fits and how many
    stopped at their iteration limit, the host and process that ran it, on small tables its
    out-of-fold predictions, and (within ``OOF_CELLS``) its out-of-fold probabilities."""
    labels, seed = data.labels, data.seed

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())
        try:
            return _folds(trial)
        finally:
            trial.set_user_attr("fits", fits[trial.number])
            trial.set_user_attr("unconverged", unconverged[trial.number])

    fits: dict[int, int] = {}
    unconverged: dict[int, int] = {}
    shape = (data.plan.repeats, len(labels), len(data.classes))
    keep_outputs = int(np.prod(shape)) <= OOF_CELLS

    def _folds(trial: optuna.Trial) -> float:
        fits[trial.number] = unconverged[trial.number] = 0
        text_params = suggest_text(trial)
        feature_params = suggest_features(
            trial,
            REGISTRY[family].embeddings,
            data.encoder and REGISTRY[family].encoder,
            text_params["text_level"],
        )
        head_params = REGISTRY[family].suggest(trial)
        dense = has_dense_block(feature_params)
        scores = []
        matrices = data.fold_matrices(text_params, feature_params)
        predictions = np.full((data.plan.repeats, len(labels)), -1, dtype=np.int32)
        outputs = np.zeros(shape if keep_outputs else (0, 0, 0))
        decisions = False
        for step, ((x_train, x_valid), (train_idx, valid_idx)) in enumerate(
            zip(matrices, data.folds, strict=True)
        ):
            head = build_head(family, head_params, seed, n_jobs, calibrate=False, dense=dense)
            head.fit(x_train, labels[train_idx])
            fits[trial.number] += 1
            unconverged[trial.number] += int(not getattr(head.steps[-1][1], "converged_", True))
            output, decisions = fold_output(head, x_valid, data.classes)
            predicted = data.classes[output.argmax(axis=1)]
            repeat = step // data.plan.folds
            predictions[repeat, valid_idx] = output.argmax(axis=1)
            if keep_outputs:
                outputs[repeat, valid_idx] = output
            scores.append(float(f1_score(labels[valid_idx], predicted, average="macro")))
            trial.set_user_attr("fold_scores", scores)
            if data.plan.prune:
                trial.report(float(np.mean(scores)), step)
                if trial.should_prune():
                    raise optuna.TrialPruned()
        if data.plan.small:
            trial.set_user_attr("out_of_fold", predictions.tolist())
        if keep_outputs:
            probabilities = as_probabilities(outputs, decisions, data.codes)
            trial.set_user_attr("oof_proba", encode_probabilities(probabilities))
        return float(np.mean(scores))

    return objective


def fold_output(head: Any, x: Any, classes: np.ndarray) -> tuple[np.ndarray, bool]:
    """A fitted head's output on a fold's held-out rows, in ``classes`` order, and whether it is
    decision values (the SVM, calibrated only at refit: its temperature is fitted on all folds'
    decisions at once, as the refit does) rather than the probabilities the refitted model
    serves (the others)."""
    final = head.steps[-1][1]
    decisions = isinstance(final, TemperatureScaledSVC)
    raw = np.asarray(head.decision_function(x) if decisions else head.predict_proba(x))
    if raw.ndim == 1:
        raw = np.column_stack([-raw, raw])
    out = np.full((raw.shape[0], len(classes)), -1e9 if decisions else 0.0)
    out[:, np.searchsorted(classes, np.asarray(final.classes_))] = raw
    return out, decisions


def as_probabilities(outputs: np.ndarray, decisions: bool, codes: np.ndarray) -> np.ndarray:
    """Out-of-fold outputs (repeats, rows, classes) as probabilities: decision values through a
    softmax with one temperature fitted on all of them (``TemperatureScaledSVC``'s rule)."""
    if not decisions:
        return outputs
    stacked = outputs.reshape(-1, outputs.shape[2])
    temperature = fit_temperature(stacked, np.tile(codes, outputs.shape[0]))
    return np.asarray(softmax(outputs / temperature, axis=2))


#: Modules whose code decides what a study finds; a change to any of them is a new search.
SEARCH_CODE = (
    "core.training.tuning",
    "core.training.studies",
    "core.training.families",
    "core.training.features",
    "core.training.folds",
    "core.models",
    "core.text",
    "core.ngrams",
    "core.embeddings",
    "core.encoder",
)


def code_version() -> str:
    """A digest of the search code and the package version, for study result caches."""
    import importlib
    import inspect
    from importlib import metadata

    digest = hashlib.sha256(metadata.version("tickets").encode())
    for name in SEARCH_CODE:
        digest.update(inspect.getsource(importlib.import_module(name)).encode())
    return digest.hexdigest()[:16]
