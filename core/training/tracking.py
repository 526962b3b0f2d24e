"""MLflow tracking of a training: a parent run per training, a child run per family, the
leaderboard and reports, and the winning model registered (skops format) under
``settings.registered_model_name``."""

from __future__ import annotations

import io
import warnings
from importlib import metadata
from typing import Any

import pandas as pd

from core.data.tables import LABEL, NOTES, SHORT
from core.metrics import Evaluation
from core.release.bundle import ALLOWED_TYPES
from core.release.manifest import MlflowRef, SnapshotRef, library_versions
from core.release.registry import KEY_TAG, experiment_id, find_run, mlflow_client, run_for
from core.settings import Settings
from core.training.leaderboard import leaderboard_rows, markdown_table
from core.training.tuning import StudyResult


def _log_child(client: Any, exp_id: str, parent_id: str, result: StudyResult, key: str) -> None:
    child_key = f"{key}/{result.family}"
    if find_run(client, exp_id, child_key) is not None:
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
    datasets: tuple[SnapshotRef, pd.DataFrame, pd.DataFrame] | None = None,
) -> MlflowRef:
    """Log everything about one training and register the winning model, once per ``key``
    (the flow run): a retry after a failure part-way reuses the run and the registered version
    the failed attempt made."""
    import mlflow
    import mlflow.sklearn

    client = mlflow_client(settings)
    exp_id = experiment_id(settings)
    run_id = run_for(client, exp_id, key, f"train-{winner.family}", {})
    with mlflow.start_run(run_id=run_id):
        for result in results:
            _log_child(client, exp_id, run_id, result, key)
        mlflow.log_params({"champion_family": winner.family, **champion_params(winner)})
        if "members" in winner.best_params:
            mlflow.log_dict(winner.best_params, "ensemble.json")
        if winner.selection:
            mlflow.set_tag("selection", winner.selection)
        mlflow.log_metrics({**evaluation.metrics(), **extra_metrics})
        mlflow.log_dict(evaluation.report, "classification_report.json")
        mlflow.log_dict(data_summary, "data_report.json")
        if datasets is not None:
            log_datasets(*datasets)
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


def champion_params(winner: StudyResult) -> dict[str, Any]:
    """The winner's parameters as MLflow params: an ensemble's as one line per member's family
    and weight (the members' full parameters go to ``ensemble.json``)."""
    members = winner.best_params.get("members")
    if not isinstance(members, list):
        return dict(winner.best_params)
    return {
        "members": ", ".join(f"{m['family']} {float(m['weight']):.2f}" for m in members),
    }


def log_datasets(snapshot: SnapshotRef, train: pd.DataFrame, test: pd.DataFrame) -> None:
    """The training and test rows as the active run's dataset inputs: MLflow shows their digest,
    source (the stored Parquet snapshot) and schema; the snapshot's URI is also a tag."""
    import mlflow
    from mlflow.data.pandas_dataset import from_pandas

    for context, rows in (("training", train), ("testing", test)):
        with warnings.catch_warnings():
            # A file:// source matches MLflow's local artifact source twice; it picks it anyway.
            warnings.filterwarnings("ignore", "The specified dataset source", UserWarning)
            dataset = from_pandas(
                rows[[SHORT, NOTES, LABEL]].astype(str).reset_index(drop=True),
                source=snapshot.uri,
                name=f"tickets-{context}",
                digest=snapshot.short_digest,
                targets=LABEL,
            )
        mlflow.log_input(dataset, context=context)
    mlflow.set_tags({"data_snapshot": snapshot.uri, "data_snapshot_sha256": snapshot.sha256})


def log_top_terms(
    settings: Settings, run_id: str, terms: dict[str, list[tuple[str, float]]]
) -> None:
    """The model's global view (per class, the terms that weigh most) on its training run."""
    mlflow_client(settings).log_dict(
        run_id,
        {label: [list(term) for term in rows] for label, rows in terms.items()},
        "top_terms.json",
    )


def log_label_audit(settings: Settings, run_id: str, suspects: list[dict[str, Any]]) -> None:
    """The suspected label errors on the training's run: a table and a count."""
    client = mlflow_client(settings)
    columns = ["row", "source", "given", "suggested", "given_probability"]
    columns += ["suggested_probability", "short_description", "close_notes"]
    client.log_table(run_id, pd.DataFrame(suspects, columns=columns), "suspected_labels.json")
    client.log_metric(run_id, "suspected_labels", len(suspects))


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

    from PIL import Image

    return Image.open(io.BytesIO(png))
