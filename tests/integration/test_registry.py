"""MLflow logging is idempotent per key: a retried task reuses its run and registered version."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
import pytest

from core.metrics import confusion_matrix_png, evaluate
from core.release.manifest import MlflowRef
from core.settings import Settings
from core.training.families import build_pipeline, default_params
from core.training.tracking import log_training
from core.training.tuning import StudyResult

pytestmark = pytest.mark.integration
TEXT = ["short_description", "close_notes"]


def test_a_retried_training_log_reuses_its_run_and_version(
    tmp_path: Path, demo_frame: pd.DataFrame
) -> None:
    settings = Settings(home=tmp_path / "home")
    params = default_params("logistic_regression")
    model = build_pipeline("logistic_regression", params, "spanish", 0)
    model.fit(demo_frame[TEXT], demo_frame["label"].to_numpy(dtype=object))
    winner = StudyResult("logistic_regression", params, 0.9, 1, 0, 1.0)
    evaluation = evaluate(demo_frame["label"], model.predict(demo_frame[TEXT]))

    png = confusion_matrix_png(evaluation, "confusion")
    example = demo_frame[TEXT].head(2)

    def log(key: str) -> MlflowRef:
        return log_training(
            settings, [winner], winner, model, evaluation, png, {}, {}, example, key
        )

    first, retried, other = log("flow-run-1"), log("flow-run-1"), log("flow-run-2")
    assert (retried.run_id, retried.model_version) == (first.run_id, first.model_version)
    assert other.run_id != first.run_id and other.model_version != first.model_version
    client = mlflow.MlflowClient(settings.tracking_uri())
    name = settings.registered_model_name
    assert len(client.search_model_versions(f"name = '{name}'")) == 2
    runs = client.search_runs([str(first.experiment_id)], "tags.family = 'logistic_regression'")
    assert len(runs) == 2, "one child run per training, not per attempt"
