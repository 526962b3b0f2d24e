"""MLflow: a parent run per training, a child run per family, the model registered under
``settings.registered_model_name`` (skops format), and the ``champion`` alias."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import pandas as pd

from core.bundle import ALLOWED_TYPES
from core.evaluation import Evaluation
from core.settings import Settings
from core.tuning import StudyResult, leaderboard_rows, markdown_table

CHAMPION_ALIAS = "champion"


@dataclass(frozen=True)
class MlflowIds:
    experiment_id: str
    run_id: str
    model_version: str | None
    model_uri: str | None


def _client(settings: Settings) -> Any:
    import mlflow

    settings.home.mkdir(parents=True, exist_ok=True)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    mlflow.set_tracking_uri(settings.tracking_uri())
    return mlflow.MlflowClient(settings.tracking_uri())


def experiment_id(settings: Settings) -> str:
    """The experiment's id, creating it with artifacts under ``home`` on first use."""
    client = _client(settings)
    experiment = client.get_experiment_by_name(settings.mlflow_experiment)
    if experiment is not None:
        return str(experiment.experiment_id)
    location = (settings.home / "mlartifacts").resolve().as_uri()
    return str(client.create_experiment(settings.mlflow_experiment, artifact_location=location))


def _log_child(client: Any, exp_id: str, parent_id: str, result: StudyResult) -> None:
    run = client.create_run(
        exp_id,
        run_name=result.family,
        tags={"mlflow.parentRunId": parent_id, "family": result.family},
    )
    for key, value in result.best_params.items():
        client.log_param(run.info.run_id, key, value)
    if result.ok:
        client.log_metric(run.info.run_id, "cv_macro_f1", result.cv_macro_f1)
    client.log_metric(run.info.run_id, "trials", result.trials)
    client.log_metric(run.info.run_id, "pruned_trials", result.pruned)
    client.log_metric(run.info.run_id, "fit_seconds", result.seconds)
    status = "FINISHED" if result.ok else "FAILED"
    if result.error:
        client.set_tag(run.info.run_id, "error", result.error[:500])
    client.set_terminated(run.info.run_id, status=status)


def log_training(
    settings: Settings,
    results: list[StudyResult],
    winner: StudyResult,
    model: Any,
    evaluation: Evaluation,
    confusion_png: bytes,
    extra_metrics: dict[str, float],
    data_summary: dict[str, Any],
    input_example: pd.DataFrame,
) -> MlflowIds:
    """Log everything about one training and register the winning model."""
    import mlflow
    import mlflow.sklearn

    client = _client(settings)
    exp_id = experiment_id(settings)
    with mlflow.start_run(experiment_id=exp_id, run_name=f"train-{winner.family}") as parent:
        run_id = parent.info.run_id
        for result in results:
            _log_child(client, exp_id, run_id, result)
        mlflow.log_params({"champion_family": winner.family, **winner.best_params})
        mlflow.log_metrics({**evaluation.metrics(), **extra_metrics})
        mlflow.log_dict(evaluation.report, "classification_report.json")
        mlflow.log_dict(data_summary, "data_report.json")
        rows = leaderboard_rows(results)
        mlflow.log_text(markdown_table(rows), "leaderboard.md")
        mlflow.log_table(pd.DataFrame(rows), "leaderboard.json")
        client.log_image(run_id, _png_image(confusion_png), "confusion_matrix.png")
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            serialization_format="skops",
            skops_trusted_types=sorted(ALLOWED_TYPES),
            registered_model_name=settings.registered_model_name,
            input_example=input_example,
        )
    version = getattr(info, "registered_model_version", None)
    return MlflowIds(exp_id, run_id, str(version) if version else None, info.model_uri)


def _png_image(png: bytes) -> Any:
    import io

    from PIL import Image

    return Image.open(io.BytesIO(png))


def set_champion_alias(settings: Settings, version: str) -> None:
    _client(settings).set_registered_model_alias(
        settings.registered_model_name, CHAMPION_ALIAS, version
    )
