"""MLflow: a parent run per training, a child run per family, the model registered under
``settings.registered_model_name`` (skops format), and the ``champion`` alias."""

from __future__ import annotations

import logging
from importlib import metadata
from typing import Any

import pandas as pd

from core.io.store import ArtifactStore
from core.metrics import Evaluation
from core.release.bundle import ALLOWED_TYPES, read_champion
from core.release.manifest import MlflowRef, library_versions
from core.release.retention import ARCHIVED_TAG
from core.settings import Settings
from core.training.tuning import StudyResult, leaderboard_rows, markdown_table

CHAMPION_ALIAS = "champion"
#: Tag that ties a run to the work that made it (a flow run), so a retry finds it.
KEY_TAG = "tickets.key"


def _client(settings: Settings) -> Any:
    import mlflow

    settings.home.mkdir(parents=True, exist_ok=True)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    mlflow.set_tracking_uri(settings.tracking_uri())
    return mlflow.MlflowClient(settings.tracking_uri())


def experiment_id(settings: Settings, name: str | None = None) -> str:
    """The id of experiment ``name`` (the training experiment by default), created on first use
    with artifacts where ``Settings.mlflow_artifact_location`` says."""
    client = _client(settings)
    name = name or settings.mlflow_experiment
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    location = settings.mlflow_artifact_location()
    return str(client.create_experiment(name, artifact_location=location))


def _find_run(client: Any, exp_id: str, key: str) -> str | None:
    """The run that an earlier attempt of the same work created, if any."""
    runs = client.search_runs([exp_id], f"tags.`{KEY_TAG}` = '{key}'", max_results=1)
    return str(runs[0].info.run_id) if runs else None


def _run_for(client: Any, exp_id: str, key: str, name: str, tags: dict[str, str]) -> str:
    """The run keyed ``key``: the existing one on a retry, else a new one. Keys make logging
    idempotent, so a retried task never leaves two runs for one training or check."""
    existing = _find_run(client, exp_id, key)
    if existing is not None:
        return existing
    return str(client.create_run(exp_id, run_name=name, tags={**tags, KEY_TAG: key}).info.run_id)


def _log_child(client: Any, exp_id: str, parent_id: str, result: StudyResult, key: str) -> None:
    child_key = f"{key}/{result.family}"
    if _find_run(client, exp_id, child_key) is not None:
        return
    tags = {"mlflow.parentRunId": parent_id, "family": result.family}
    run = client.create_run(exp_id, run_name=result.family, tags={**tags, KEY_TAG: child_key})
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
    key: str,
) -> MlflowRef:
    """Log everything about one training and register the winning model, once per ``key``
    (the flow run): a retry after a failure part-way reuses the run and the registered version
    the failed attempt made."""
    import mlflow
    import mlflow.sklearn

    client = _client(settings)
    exp_id = experiment_id(settings)
    run_id = _run_for(client, exp_id, key, f"train-{winner.family}", {})
    with mlflow.start_run(run_id=run_id):
        for result in results:
            _log_child(client, exp_id, run_id, result, key)
        mlflow.log_params({"champion_family": winner.family, **winner.best_params})
        if winner.selection:
            mlflow.set_tag("selection", winner.selection)
        mlflow.log_metrics({**evaluation.metrics(), **extra_metrics})
        mlflow.log_dict(evaluation.report, "classification_report.json")
        mlflow.log_dict(data_summary, "data_report.json")
        rows = leaderboard_rows(results)
        mlflow.log_text(markdown_table(rows), "leaderboard.md")
        mlflow.log_table(pd.DataFrame(rows), "leaderboard.json")
        client.log_image(run_id, _png_image(confusion_png), "confusion_matrix.png")
        model_uri = _logged_model_uri(client, exp_id, run_id)
        if model_uri is None:
            info = mlflow.sklearn.log_model(
                model,
                name="model",
                serialization_format="skops",
                skops_trusted_types=sorted(ALLOWED_TYPES),
                input_example=input_example,
                pip_requirements=pip_requirements(),
            )
            model_uri = str(info.model_uri)
        version = _register_once(client, settings.registered_model_name, run_id, model_uri)
    return MlflowRef(
        run_id=run_id, experiment_id=exp_id, model_version=version, model_uri=model_uri
    )


def _logged_model_uri(client: Any, exp_id: str, run_id: str) -> str | None:
    """The model an earlier attempt logged in this run, if any."""
    models = client.search_logged_models(
        experiment_ids=[exp_id], filter_string=f"source_run_id = '{run_id}'", max_results=1
    )
    return f"models:/{models[0].model_id}" if models else None


def _register_once(client: Any, name: str, run_id: str, model_uri: str) -> str:
    """The registered version of this run's model, registering it the first time."""
    import mlflow

    existing = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    if existing:
        return str(existing[0].version)
    return str(mlflow.register_model(model_uri, name).version)


def pip_requirements() -> list[str]:
    """What a logged model needs, pinned to what trained it. Given explicitly because MLflow's
    inference loads the model in a subprocess to watch its imports: about 4 s per training, and
    it also picked up whatever the caller had imported (pytest, in the tests)."""
    pinned = {name: version for name, version in library_versions().items() if name != "python"}
    pinned["pandas"] = metadata.version("pandas")
    return [f"{name}=={version}" for name, version in sorted(pinned.items())]


def _png_image(png: bytes) -> Any:
    import io

    from PIL import Image

    return Image.open(io.BytesIO(png))


def set_champion_alias(settings: Settings, version: str) -> None:
    _client(settings).set_registered_model_alias(
        settings.registered_model_name, CHAMPION_ALIAS, version
    )


def champion_alias(settings: Settings) -> str | None:
    """The registered version the ``champion`` alias names, if any."""
    from mlflow.exceptions import MlflowException

    try:
        version = _client(settings).get_model_version_by_alias(
            settings.registered_model_name, CHAMPION_ALIAS
        )
    except MlflowException:
        return None
    return str(version.version)


def align_champion_alias(settings: Settings, store: ArtifactStore) -> str | None:
    """Point the MLflow ``champion`` alias at the version the champion pointer names (the
    pointer is the truth: it is written by compare-and-set); returns the version it set, or None
    when nothing needed to change."""
    pointer, _ = read_champion(store)
    wanted = pointer.model_version if pointer else None
    if not wanted or champion_alias(settings) == wanted:
        return None
    set_champion_alias(settings, wanted)
    return wanted


def log_promotion(settings: Settings, run_id: str, outcome: dict[str, Any]) -> None:
    """The promotion decision and its confidence interval, on the training run."""
    client = _client(settings)
    client.set_tag(run_id, "promoted", str(outcome["promoted"]).lower())
    client.set_tag(run_id, "promotion_reason", str(outcome["reason"])[:5000])
    numbers = {
        "promotion_challenger_macro_f1": outcome.get("challenger_macro_f1"),
        "promotion_champion_macro_f1": outcome.get("champion_macro_f1"),
        "promotion_gain": outcome.get("gain"),
        "promotion_evaluation_rows": outcome.get("evaluation_rows"),
    }
    interval = outcome.get("gain_ci")
    if interval:
        numbers.update(promotion_gain_ci_low=interval[0], promotion_gain_ci_high=interval[1])
    for key, value in numbers.items():
        if value is not None:
            client.log_metric(run_id, key, float(value))


def log_drift_report(
    settings: Settings,
    report: dict[str, Any],
    markdown: str,
    key: str,
    extra_tags: dict[str, str] | None = None,
) -> str:
    """One run per check (``key``, the flow run) in the ``<experiment>-monitoring`` experiment;
    returns its id. A retry logs into the same run."""
    import mlflow

    client = _client(settings)
    exp_id = experiment_id(settings, f"{settings.mlflow_experiment}-monitoring")
    run_id = _run_for(client, exp_id, key, "drift-check", {})
    with mlflow.start_run(run_id=run_id) as run:
        metrics = {
            "drift_score": report["drift_score"],
            "drift_detected": float(report["drift_detected"]),
            "n_predictions": report["n_predictions"],
            "n_feedback": report["n_feedback"],
        }
        for test in report["tests"]:
            if test["statistic"] is not None:
                metrics[test["name"]] = test["statistic"]
        mlflow.log_metrics({key: float(value) for key, value in metrics.items()})
        mlflow.set_tags(
            {
                "model_version": str(report.get("model_version")),
                "fired": ",".join(report["fired"]),
                **(extra_tags or {}),
            }
        )
        mlflow.log_dict(report, "drift_report.json")
        mlflow.log_text(markdown, "drift_report.md")
        return str(run.info.run_id)


def archive_unpromoted_versions(settings: Settings) -> list[str]:
    """Tag registered versions that were never promoted (their training run is not tagged
    ``promoted``, and they are not the champion) as archived; returns the versions tagged."""
    client = _client(settings)
    name = settings.registered_model_name
    champion = champion_alias(settings)
    archived = []
    for version in client.search_model_versions(f"name = '{name}'"):
        number = str(version.version)
        if number == champion or version.tags.get(ARCHIVED_TAG) == "true":
            continue
        if version.run_id and client.get_run(version.run_id).data.tags.get("promoted") == "true":
            continue
        client.set_model_version_tag(name, number, ARCHIVED_TAG, "true")
        archived.append(number)
    return archived
