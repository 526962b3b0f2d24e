"""One Optuna study per family: stratified CV, macro-F1, pruning across folds, fixed seeds.

Normalised documents and per-fold TF-IDF matrices are cached by their settings, so a trial that
revisits a text setting only fits its model head.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import optuna
import pandas as pd
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold

from core.data import LABEL, NOTES, SHORT
from core.families import (
    REGISTRY,
    Params,
    build_features,
    build_head,
    build_normalizer,
    starting_points,
    suggest_features,
    suggest_text,
)

FoldMatrices = list[tuple[Any, Any]]


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

    @property
    def ok(self) -> bool:
        return self.error is None and self.trials > 0


class TuningData:
    """Training rows shared by every study, with thread-safe caches of normalised documents and
    of per-fold TF-IDF matrices (studies running side by side often want the same setting, and
    the vectoriser is the slow part for linear models)."""

    def __init__(
        self, frame: pd.DataFrame, language: str, cv_folds: int, seed: int, capacity: int = 4
    ) -> None:
        self.frame = frame
        self.language = language
        self.cv_folds = cv_folds
        self.seed = seed
        self.labels = frame[LABEL].to_numpy(dtype=object)
        splitter = StratifiedKFold(cv_folds, shuffle=True, random_state=seed)
        self.folds = list(splitter.split(np.zeros(len(frame)), self.labels))
        self.capacity = capacity
        self._documents: dict[tuple[Any, ...], np.ndarray] = {}
        self._matrices: OrderedDict[tuple[Any, ...], FoldMatrices] = OrderedDict()
        self._lock = threading.Lock()
        self._key_locks: dict[tuple[Any, ...], threading.Lock] = {}

    def fingerprint(self) -> str:
        """A digest of what a study sees: the rows (texts and labels, in order), the language,
        the folds and the seed. Two runs with the same fingerprint search the same problem."""
        digest = hashlib.sha256()
        rows = pd.util.hash_pandas_object(self.frame[[SHORT, NOTES, LABEL]], index=False)
        digest.update(rows.to_numpy().tobytes())
        digest.update(f"{self.language}|{self.cv_folds}|{self.seed}".encode())
        return digest.hexdigest()[:32]

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


@dataclass
class FitCount:
    """Model fits of a study, and how many stopped at their iteration limit (liblinear)."""

    fits: int = 0
    unconverged: int = 0

    def add(self, head: Any) -> None:
        self.fits += 1
        if not getattr(head.steps[-1][1], "converged_", True):
            self.unconverged += 1


def _objective(
    family: str, data: TuningData, n_jobs: int, count: FitCount
) -> Callable[[optuna.Trial], float]:
    labels, seed = data.labels, data.seed

    def objective(trial: optuna.Trial) -> float:
        text_params = suggest_text(trial)
        feature_params = suggest_features(trial, REGISTRY[family].embeddings)
        head_params = REGISTRY[family].suggest(trial)
        scores = []
        matrices = data.fold_matrices(text_params, feature_params)
        for step, ((x_train, x_valid), (train_idx, valid_idx)) in enumerate(
            zip(matrices, data.folds, strict=True)
        ):
            head = build_head(family, head_params, seed, n_jobs, calibrate=False)
            head.fit(x_train, labels[train_idx])
            count.add(head)
            predicted = head.predict(x_valid)
            scores.append(f1_score(labels[valid_idx], predicted, average="macro"))
            trial.report(float(np.mean(scores)), step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return float(np.mean(scores))

    return objective


#: Modules whose code decides what a study finds; a change to any of them is a new search.
SEARCH_CODE = (
    "core.tuning",
    "core.families",
    "core.models",
    "core.text",
    "core.ngrams",
    "core.embeddings",
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


def run_study(
    family: str,
    data: TuningData,
    trials: int,
    timeout_s: float,
    n_jobs: int = 1,
    on_trial: Callable[[str, optuna.trial.FrozenTrial], None] | None = None,
) -> StudyResult:
    """Tune one family; a failing family is reported, not raised, so the others still count."""
    started = time.perf_counter()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=family,
        direction="maximize",
        sampler=_sampler(trials, data.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2),
    )
    for start in starting_points(family):
        study.enqueue_trial(start, skip_if_exists=True)
    callbacks = [lambda _study, trial: on_trial(family, trial)] if on_trial else []
    count = FitCount()
    objective = _objective(family, data, n_jobs, count)
    study.optimize(
        objective, n_trials=trials, timeout=timeout_s, catch=(Exception,), callbacks=callbacks
    )
    result = _result(family, study, time.perf_counter() - started)
    return replace(result, fits=count.fits, unconverged_fits=count.unconverged)


def convergence_note(result: StudyResult) -> str | None:
    """One line for a study whose models stopped at their iteration limit, or None."""
    if not result.unconverged_fits:
        return None
    return (
        f"{result.family}: {result.unconverged_fits} of {result.fits} fits stopped at the "
        "solver's iteration limit (liblinear); their scores count as they are"
    )


def _sampler(trials: int, seed: int) -> optuna.samplers.TPESampler:
    """TPE that starts modelling after a third of the budget (at least the enqueued starting
    points): with Optuna's default of 10 random trials first, a 12-trial study would be almost
    pure random search."""
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(3, trials // 3))


def _result(family: str, study: optuna.Study, seconds: float) -> StudyResult:
    states = [trial.state for trial in study.trials]
    complete = states.count(optuna.trial.TrialState.COMPLETE)
    pruned = states.count(optuna.trial.TrialState.PRUNED)
    if complete == 0:
        failures = [t.system_attrs.get("fail_reason", "") for t in study.trials]
        reason = next((f for f in failures if f), "no trial completed within the budget")
        return StudyResult(family, {}, float("nan"), 0, pruned, seconds, error=reason)
    best = study.best_trial
    return StudyResult(
        family, dict(best.params), float(best.value or 0.0), complete, pruned, seconds
    )


def describe_trial(trial: optuna.trial.FrozenTrial) -> str:
    """One line for the progress log. Optuna gives a pruned trial the last fold mean it reported,
    which can be above the study's best (the first fold is often the easiest), so a pruned trial
    says so instead of looking like a better score that was thrown away."""
    if trial.state == optuna.trial.TrialState.PRUNED:
        if not trial.intermediate_values:
            return "pruned"
        last = trial.intermediate_values[max(trial.intermediate_values)]
        folds = len(trial.intermediate_values)
        return f"pruned after {folds} fold{'s' if folds > 1 else ''} (mean so far {last:.4f})"
    if trial.state == optuna.trial.TrialState.COMPLETE and trial.value is not None:
        return f"{trial.value:.4f}"
    return trial.state.name.lower()


def leaderboard(results: list[StudyResult]) -> list[StudyResult]:
    """Successful studies, best CV macro-F1 first."""
    return sorted((r for r in results if r.ok), key=lambda r: r.cv_macro_f1, reverse=True)


def leaderboard_rows(results: list[StudyResult]) -> list[dict[str, Any]]:
    """Every study, best first, failed ones last with their error."""
    ordered = leaderboard(results) + [r for r in results if not r.ok]
    return [
        {
            "family": r.family,
            "cv_macro_f1": round(r.cv_macro_f1, 4) if r.ok else None,
            "trials": r.trials,
            "pruned": r.pruned,
            "fit_seconds": round(r.seconds, 1),
            "error": r.error,
        }
        for r in ordered
    ]


def markdown_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = ["" if row[c] is None else str(row[c]).replace("|", "/") for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
