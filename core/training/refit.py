"""The training steps the flow composes: refit, score, manifest, promotion. Pure of Prefect."""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from core.data.tables import LABEL, NOTES, SHORT, TEXT
from core.encoder import manifest_entry
from core.metrics import Evaluation, evaluate
from core.monitoring.reference import build_reference_profile
from core.release.bundle import new_bundle_id
from core.release.manifest import Manifest, MlflowRef, ReferenceProfile, SnapshotRef
from core.release.promotion import PromotionOutcome
from core.release.snapshots import training_settings
from core.settings import Settings
from core.training.families import build_model
from core.training.features import ENCODER_MAX_WORDS, ENCODER_PREFIX, uses_encoder
from core.training.leaderboard import leaderboard_rows
from core.training.tuning import StudyResult


def threads_per_study(settings: Settings) -> int:
    return max(1, (os.cpu_count() or 1) // settings.max_concurrent_studies)


def refit(winner: StudyResult, train: pd.DataFrame, settings: Settings) -> tuple[Any, float]:
    """Fit the winner (one family's best pipeline, or an ensemble of pipelines) on the whole
    training set."""
    started = time.perf_counter()
    model = build_model(
        winner.family,
        winner.best_params,
        settings.language,
        settings.seed,
        os.cpu_count() or 1,
        gate=winner.gate,
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
) -> ReferenceProfile:
    classes = [str(label) for label in model.classes_]
    return build_reference_profile(
        train,
        test[TEXT],
        probabilities,
        classes,
        settings.language,
        settings.seed,
        test[LABEL].astype(str).tolist(),
    )


def build_manifest(
    winner: StudyResult,
    evaluation: Evaluation,
    profile: ReferenceProfile,
    mlflow: MlflowRef,
    data_report: dict[str, Any],
    settings: Settings,
    labels: list[str],
    top_terms: dict[str, list[tuple[str, float]]] | None = None,
    snapshot: SnapshotRef | None = None,
) -> Manifest:
    """The manifest of the winner's bundle, under a new bundle id, naming the table it was
    trained on and the settings that decided the training."""
    return Manifest(
        bundle_id=new_bundle_id(winner.family),
        family=winner.family,
        params=winner.best_params,
        labels=labels,
        language=settings.language,
        input_columns={"short_description": SHORT, "close_notes": NOTES},
        metrics={
            **evaluation.metrics(),
            "cv_macro_f1": winner.cv_macro_f1,
            "cv_std_error": winner.cv_std_error if np.isfinite(winner.cv_std_error) else None,
        },
        mlflow=mlflow,
        data=data_report,
        reference_profile=profile,
        encoder=manifest_entry(ENCODER_PREFIX, ENCODER_MAX_WORDS)
        if uses_encoder(winner.best_params)
        else None,
        top_terms=top_terms,
        cascade=winner.gate,
        data_snapshot=snapshot,
        training_settings=training_settings(settings),
    )


class LeaderboardEntry(BaseModel):
    """One family's line of the leaderboard."""

    model_config = ConfigDict(frozen=True)

    family: str
    cv_macro_f1: float | None
    cv_std_error: float | None = None
    cv_folds: int = 0
    default_cv_macro_f1: float | None = None
    trials: int
    pruned: int = 0
    fit_seconds: float
    error: str | None = None


class TrainingSummary(BaseModel):
    """What a training run returns and prints: the winner's test scores, its bundle and whether it
    was promoted, the leaderboard, and what happened to the data on the way in."""

    model_config = ConfigDict(frozen=True)

    champion_family: str
    #: The refitted configuration (text, features, head).
    champion_params: dict[str, Any] = {}
    test_macro_f1: float
    test_weighted_f1: float
    test_accuracy: float
    model_version: str | None
    promoted: bool
    promotion_reason: str
    previous_champion: str | None
    bundle_id: str
    bundle_uri: str
    mlflow_run_id: str | None
    leaderboard: list[LeaderboardEntry]
    #: Why the refitted configuration won (highest mean, or the one-standard-error rule).
    selection: str = ""
    data: dict[str, Any]
    production: dict[str, Any] | None = None
    promotion: PromotionOutcome
    test_rows: int
    refit_seconds: float

    def as_json(self) -> dict[str, Any]:
        """JSON-ready (non-finite numbers become null)."""
        return self.model_dump(mode="json")


def summarize(
    manifest: Manifest,
    bundle_uri: str,
    evaluation: Evaluation,
    outcome: PromotionOutcome,
    results: list[StudyResult],
    test_rows: int,
    refit_seconds: float,
    selection: str = "",
) -> TrainingSummary:
    return TrainingSummary(
        champion_family=manifest.family,
        champion_params=dict(manifest.params),
        test_macro_f1=evaluation.macro_f1,
        test_weighted_f1=evaluation.weighted_f1,
        test_accuracy=evaluation.accuracy,
        model_version=manifest.mlflow.model_version,
        promoted=outcome.promoted,
        promotion_reason=outcome.reason,
        previous_champion=outcome.champion_bundle_id,
        bundle_id=manifest.bundle_id,
        bundle_uri=bundle_uri,
        mlflow_run_id=manifest.mlflow.run_id,
        leaderboard=[LeaderboardEntry.model_validate(row) for row in leaderboard_rows(results)],
        selection=selection,
        data={key: value for key, value in manifest.data.items() if key != "production"},
        production=manifest.data.get("production"),
        promotion=outcome,
        test_rows=test_rows,
        refit_seconds=refit_seconds,
    )
