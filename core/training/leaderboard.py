"""Ranking the studies and choosing what to refit: the leaderboard, the winner (an ensemble of
the search's trials where their out-of-fold probabilities were kept, checked on small tables
against the linear defaults by bias-corrected CV; otherwise the best mean CV on large tables and
bias-corrected selection or the one-standard-error rule on small ones), and the leaderboard as
rows and as a markdown table for MLflow and the README."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from core.training.cascade import choose_gate
from core.training.ensemble import (
    EnsembleCandidate,
    bias_corrected_check,
    select_ensemble,
)
from core.training.families import ENSEMBLE, REGISTRY, baseline_points
from core.training.features import uses_encoder
from core.training.selection import Candidate, bootstrap_bias_corrected
from core.training.tuning import (
    StudyResult,
    TrialPredictions,
    decode_probabilities,
    encode_probabilities,
)


def leaderboard(results: list[StudyResult]) -> list[StudyResult]:
    """Successful studies, best CV macro-F1 first."""
    return sorted((r for r in results if r.ok), key=lambda r: r.cv_macro_f1, reverse=True)


def select_winner(
    results: list[StudyResult],
    one_standard_error: bool,
    truth: np.ndarray | None = None,
    seed: int = 0,
    ensemble: bool = False,
    encoder: bool = False,
    cascade: bool = False,
) -> StudyResult | None:
    """``choose_winner``'s choice; with ``cascade``, a winner that runs the sentence encoder is
    put behind a TF-IDF gate where the out-of-fold probabilities say the gate loses nothing
    (core/training/cascade.py)."""
    chosen = choose_winner(results, one_standard_error, truth, seed, ensemble, encoder)
    if chosen is None or not cascade or truth is None:
        return chosen
    return _gated(chosen, leaderboard(results), truth)


def _oof(winner: StudyResult, ranked: list[StudyResult]) -> str:
    """The winner's out-of-fold probabilities: kept with it, or its trial's."""
    if winner.oof_probabilities:
        return winner.oof_probabilities
    for result in ranked:
        if result.family == winner.family:
            for trial in result.trial_predictions:
                if trial.params == winner.best_params and trial.probabilities:
                    return trial.probabilities
    return ""


def _gated(winner: StudyResult, ranked: list[StudyResult], truth: np.ndarray) -> StudyResult:
    if not uses_encoder(winner.best_params):
        return winner
    probabilities = _oof(winner, ranked)
    gates = [
        (result, trial)
        for result in ranked
        if REGISTRY[result.family].linear
        for trial in result.trial_predictions
        if trial.probabilities and not uses_encoder(trial.params)
    ]
    if not probabilities or not gates:
        return replace(winner, oof_probabilities=probabilities)
    result, trial = max(gates, key=lambda item: item[1].cv_macro_f1)
    choice = choose_gate(
        truth, decode_probabilities(probabilities), decode_probabilities(trial.probabilities)
    )
    if choice is None:
        return replace(winner, oof_probabilities=probabilities)
    gate = {
        "family": result.family,
        "params": dict(trial.params),
        "threshold": choice.threshold,
        "model_share": round(choice.model_share, 4),
        "model_macro_f1": round(choice.model_macro_f1, 4),
        "cascade_macro_f1": round(choice.cascade_macro_f1, 4),
    }
    served = (
        f"; served behind a TF-IDF gate ({result.family}): the tickets it is at least "
        f"{choice.threshold:g} sure of skip the encoder ({1 - choice.model_share:.0%} of them "
        f"out of fold), out-of-fold macro-F1 {choice.cascade_macro_f1:.4f} against "
        f"{choice.model_macro_f1:.4f} without the gate"
    )
    return replace(
        winner, gate=gate, selection=winner.selection + served, oof_probabilities=probabilities
    )


def choose_winner(
    results: list[StudyResult],
    one_standard_error: bool,
    truth: np.ndarray | None = None,
    seed: int = 0,
    ensemble: bool = False,
    encoder: bool = False,
) -> StudyResult | None:
    """What to refit. With ``ensemble``, ``truth`` (label codes) and every study's out-of-fold
    probabilities: an ensemble of the search's trials (core/training/ensemble.py), which must
    also beat the best linear default (with the encoder where the search offered it:
    ``encoder``) on bias-corrected CV, or that default is refitted. Otherwise, on large tables:
    the best mean CV macro-F1; on small ones, with every study's out-of-fold predictions,
    bias-corrected selection (core/training/selection.py)
    between the best linear default and the best configuration of the search, and without
    them, the simplest configuration within one standard error of the best (a linear family's
    default, a linear family's best, a tree family's default, a tree family's best; the higher
    mean among equals). None when no study completed."""
    ranked = leaderboard(results)
    if not ranked:
        return None
    if ensemble and truth is not None:
        chosen = _ensemble_winner(ranked, truth, seed, one_standard_error, encoder)
        if chosen is not None:
            return chosen
    if one_standard_error and truth is not None:
        corrected = _bias_corrected_winner(ranked, truth, seed)
        if corrected is not None:
            return corrected
    best = ranked[0]
    score = f"CV macro-F1 {best.cv_macro_f1:.4f}"
    if not one_standard_error or not np.isfinite(best.cv_std_error):
        return replace(best, selection=f"highest mean {score} ({best.family})")
    floor = best.cv_macro_f1 - best.cv_std_error
    # (simplicity rank, -mean, kind, result): the lowest rank wins, then the higher mean.
    candidates: list[tuple[int, float, str, StudyResult]] = []
    for result in ranked:
        simple = 0 if REGISTRY[result.family].linear else 2
        if result.default_params is not None and result.default_cv_macro_f1 >= floor:
            default = replace(
                result,
                best_params=result.default_params,
                cv_macro_f1=result.default_cv_macro_f1,
                cv_std_error=result.default_cv_std_error,
            )
            candidates.append((simple, -default.cv_macro_f1, "default configuration", default))
        if result.cv_macro_f1 >= floor:
            candidates.append((simple + 1, -result.cv_macro_f1, "tuned configuration", result))
    _, _, kind, chosen = min(candidates, key=lambda c: (c[0], c[1]))
    if chosen is best:
        why = f"highest mean {score} ({best.family}); nothing simpler within one standard error"
    else:
        why = (
            f"{chosen.family} {kind}, CV macro-F1 {chosen.cv_macro_f1:.4f}, within one standard "
            f"error ({best.cv_std_error:.4f}) of the best, {best.family} "
            f"{best.cv_macro_f1:.4f}: the simpler model is kept (one-standard-error rule)"
        )
    return replace(chosen, selection=why)


#: Bootstrap rounds of the ensemble's bias-corrected check: on large tables one fold plan's
#: out-of-fold rows are many and the check's noise small, so fewer rounds do.
SMALL_TABLE_ROUNDS, LARGE_TABLE_ROUNDS = 200, 60


def _is_point(params: dict[str, Any], points: list[dict[str, Any]]) -> bool:
    """Whether a trial's parameters are one of ``points`` (a point may carry keys its trial
    never suggested, such as the encoder's weight on fully normalised text)."""
    return any(all(point.get(key) == value for key, value in params.items()) for point in points)


def _ensemble_winner(
    ranked: list[StudyResult],
    truth: np.ndarray,
    seed: int,
    small: bool,
    encoder: bool,
) -> StudyResult | None:
    """The ensemble (or, when forward selection keeps one trial, that trial), or the best linear
    default when bias-corrected CV prefers it; None when a study kept no out-of-fold
    probabilities (too many rows x classes, or restored from an older cache)."""
    if any(not any(t.probabilities for t in r.trial_predictions) for r in ranked):
        return None
    pool: list[tuple[StudyResult, TrialPredictions]] = []
    candidates: list[EnsembleCandidate] = []
    for result in ranked:
        points = baseline_points(result.family, encoder)
        for trial in result.trial_predictions:
            if not trial.probabilities:
                continue
            pool.append((result, trial))
            candidates.append(
                EnsembleCandidate(
                    result.family,
                    trial.params,
                    trial.cv_macro_f1,
                    decode_probabilities(trial.probabilities),
                    bool(points) and _is_point(trial.params, points),
                )
            )
    choice = select_ensemble(candidates, truth)
    built = (
        f"ensemble selection over {len(candidates)} trials' out-of-fold probabilities "
        f"(balanced log-loss {choice.balanced_log_loss:.4f}, out-of-fold macro-F1 "
        f"{choice.macro_f1:.4f}, optimistic: chosen on the same rows)"
    )
    check = ""
    if any(c.baseline for c in candidates):
        rounds = SMALL_TABLE_ROUNDS if small else LARGE_TABLE_ROUNDS
        outcome = bias_corrected_check(candidates, truth, seed, rounds)
        check = (
            f"; bias-corrected CV ({outcome.rounds} bootstrap rounds): the ensemble "
            f"{outcome.ensemble_macro_f1:.4f}, the best linear default "
            f"{outcome.baseline_macro_f1:.4f}, gain {outcome.gain:+.4f} "
            f"(won {outcome.ensemble_wins:.0%} of rounds)"
        )
        if not outcome.prefer_ensemble:
            result, trial = max(
                (item for item, c in zip(pool, candidates, strict=True) if c.baseline),
                key=lambda item: item[1].cv_macro_f1,
            )
            why = (
                f"{result.family} default configuration, CV macro-F1 {trial.cv_macro_f1:.4f}: "
                f"the linear default is kept over the ensemble; {built}{check}"
            )
            return _single(result, trial, why)
    if len(choice.members) == 1:
        result, trial = pool[choice.members[0][0]]
        return _single(result, trial, f"{result.family} alone: {built}{check}")
    members = [
        {"family": pool[i][0].family, "params": dict(pool[i][1].params), "weight": weight}
        for i, weight in choice.members
    ]
    mixed = sum(candidates[i].probabilities * weight for i, weight in choice.members)
    names = ", ".join(f"{m['family']} {m['weight']:.2f}" for m in members)
    return StudyResult(
        ENSEMBLE,
        {"members": members},
        choice.macro_f1,
        sum(r.trials for r in ranked),
        sum(r.pruned for r in ranked),
        sum(r.seconds for r in ranked),
        cv_folds=ranked[0].cv_folds,
        selection=f"ensemble of {len(members)} ({names}): {built}{check}",
        oof_probabilities=encode_probabilities(np.asarray(mixed)),
    )


def _single(result: StudyResult, trial: TrialPredictions, why: str) -> StudyResult:
    return replace(
        result,
        best_params=trial.params,
        cv_macro_f1=trial.cv_macro_f1,
        cv_std_error=trial.cv_std_error,
        selection=why,
        oof_probabilities=trial.probabilities,
    )


def _bias_corrected_winner(
    ranked: list[StudyResult], truth: np.ndarray, seed: int
) -> StudyResult | None:
    """BBC-CV's choice, or None when a study kept no out-of-fold predictions (one restored from
    a cache written before they existed) or no linear default completed."""
    if any(not r.trial_predictions for r in ranked):
        return None
    candidates: list[tuple[StudyResult, TrialPredictions, Candidate]] = []
    for result in ranked:
        linear = REGISTRY[result.family].linear
        for trial in result.trial_predictions:
            baseline = linear and trial.params == result.default_params
            candidate = Candidate(
                result.family,
                trial.params,
                trial.cv_macro_f1,
                np.asarray(trial.predictions, dtype=np.int64),
                baseline,
            )
            candidates.append((result, trial, candidate))
    if not any(c.baseline for _, _, c in candidates):
        return None
    outcome = bootstrap_bias_corrected([c for _, _, c in candidates], truth, seed)
    pool = [item for item in candidates if outcome.prefer_search or item[2].baseline]
    result, trial, _ = max(pool, key=lambda item: item[1].cv_macro_f1)
    default = trial.params == result.default_params
    what = f"{result.family} {'default' if default else 'tuned'} configuration"
    evidence = (
        f"bias-corrected CV ({outcome.rounds} bootstrap rounds over out-of-fold predictions): "
        f"the search's choice {outcome.search_macro_f1:.4f}, the best linear default "
        f"{outcome.baseline_macro_f1:.4f}, gain {outcome.gain:+.4f} "
        f"(won {outcome.search_wins:.0%} of rounds)"
    )
    verdict = "the search's choice" if outcome.prefer_search else "the linear default is kept"
    why = f"{what}, CV macro-F1 {trial.cv_macro_f1:.4f}: {verdict}; {evidence}"
    return replace(
        result,
        best_params=trial.params,
        cv_macro_f1=trial.cv_macro_f1,
        cv_std_error=trial.cv_std_error,
        selection=why,
    )


def leaderboard_rows(results: list[StudyResult]) -> list[dict[str, Any]]:
    """Every study, best first, failed ones last with their error."""
    ordered = leaderboard(results) + [r for r in results if not r.ok]
    return [
        {
            "family": r.family,
            "cv_macro_f1": round(r.cv_macro_f1, 4) if r.ok else None,
            "cv_std_error": _rounded(r.cv_std_error) if r.ok else None,
            "cv_folds": r.cv_folds,
            "default_cv_macro_f1": _rounded(r.default_cv_macro_f1) if r.ok else None,
            "trials": r.trials,
            "pruned": r.pruned,
            "fit_seconds": round(r.seconds, 1),
            "error": r.error,
        }
        for r in ordered
    ]


def _rounded(value: float) -> float | None:
    return round(value, 4) if np.isfinite(value) else None


def markdown_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = ["" if row[c] is None else str(row[c]).replace("|", "/") for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
