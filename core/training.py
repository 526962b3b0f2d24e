"""The training steps the flow composes: refit, score, manifest, promotion. Pure of Prefect."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from core.bundle import BundleError, load_bundle, read_champion, swap_champion
from core.data import LABEL, NOTES, SHORT
from core.drift import build_reference_profile
from core.evaluation import Evaluation, PromotionDecision, decide_promotion, evaluate
from core.models import build_pipeline
from core.settings import Settings
from core.store import ArtifactStore
from core.tuning import StudyResult

TEXT = [SHORT, NOTES]


class TrainingFailed(RuntimeError):
    """No family produced a model."""


def threads_per_study(settings: Settings) -> int:
    return max(1, (os.cpu_count() or 1) // settings.max_concurrent_studies)


def refit(winner: StudyResult, train: pd.DataFrame, settings: Settings) -> tuple[Any, float]:
    """Fit the winning family's best pipeline on the whole training set."""
    started = time.perf_counter()
    model = build_pipeline(
        winner.family, winner.best_params, settings.language, settings.seed, os.cpu_count() or 1
    )
    model.fit(train[TEXT], train[LABEL].to_numpy(dtype=object))
    return model, time.perf_counter() - started


def score(model: Any, test: pd.DataFrame) -> tuple[Evaluation, np.ndarray]:
    """Evaluation on a labelled set, plus the class probabilities behind it."""
    probabilities = np.asarray(model.predict_proba(test[TEXT]))
    classes = np.asarray(model.classes_, dtype=object)
    predicted = classes[probabilities.argmax(axis=1)]
    return evaluate(test[LABEL].to_numpy(dtype=object), predicted), probabilities


def reference_profile(
    model: Any,
    train: pd.DataFrame,
    test: pd.DataFrame,
    probabilities: np.ndarray,
    settings: Settings,
) -> dict[str, Any]:
    classes = [str(label) for label in model.classes_]
    return build_reference_profile(
        train, test[TEXT], probabilities, classes, settings.language, settings.seed
    )


def build_manifest(
    winner: StudyResult,
    evaluation: Evaluation,
    profile: dict[str, Any],
    mlflow_ids: dict[str, Any],
    data_report: dict[str, Any],
    settings: Settings,
    labels: list[str],
) -> dict[str, Any]:
    return {
        "family": winner.family,
        "params": winner.best_params,
        "labels": labels,
        "language": settings.language,
        "input_columns": {"short_description": SHORT, "close_notes": NOTES},
        "metrics": {**evaluation.metrics(), "cv_macro_f1": winner.cv_macro_f1},
        "mlflow": mlflow_ids,
        "data": data_report,
        "reference_profile": profile,
    }


@dataclass(frozen=True)
class PromotionOutcome:
    promoted: bool
    reason: str
    champion_bundle_id: str | None
    challenger_macro_f1: float
    champion_macro_f1: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _champion_score(
    store: ArtifactStore, pointer: dict[str, Any] | None, evaluation_set: pd.DataFrame
) -> tuple[float | None, str]:
    if pointer is None:
        return None, "no champion yet"
    try:
        model, _ = load_bundle(store, pointer["bundle_id"])
    except (BundleError, KeyError) as exc:
        return None, f"current champion unusable ({exc})"
    evaluation, _ = score(model, evaluation_set)
    return evaluation.macro_f1, "scored on the same evaluation set"


def promote_if_better(
    store: ArtifactStore,
    manifest: dict[str, Any],
    challenger_macro_f1: float,
    evaluation_set: pd.DataFrame,
    margin: float,
    attempts: int = 3,
) -> PromotionOutcome:
    """Score the champion on the challenger's evaluation set and swap the pointer if the
    challenger wins by ``margin``; a pointer moved by someone else meanwhile means decide again."""
    for _ in range(attempts):
        pointer, token = read_champion(store)
        if pointer and pointer.get("bundle_id") == manifest["bundle_id"]:
            return PromotionOutcome(
                True, "already champion", pointer["bundle_id"], challenger_macro_f1, None
            )
        champion_f1, note = _champion_score(store, pointer, evaluation_set)
        decision: PromotionDecision = decide_promotion(challenger_macro_f1, champion_f1, margin)
        reason = f"{decision.reason}; {note}" if champion_f1 is not None else note
        current_id = pointer.get("bundle_id") if pointer else None
        if not decision.promote:
            return PromotionOutcome(False, reason, current_id, challenger_macro_f1, champion_f1)
        if swap_champion(store, manifest, token):
            return PromotionOutcome(True, reason, current_id, challenger_macro_f1, champion_f1)
    raise BundleError("the champion pointer kept changing during promotion; try again")
