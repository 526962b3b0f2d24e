"""The MLflow model registry: the client, experiments and idempotent runs, the ``champion`` alias
that follows the champion pointer, promotion tags, and archiving versions never promoted.
Tracking a training lives in core/training/tracking.py, a drift check in
core/monitoring/tracking.py."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from core.io.store import ArtifactStore
from core.release.bundle import champion_history, read_champion
from core.release.manifest import Manifest
from core.release.retention import ARCHIVED_TAG
from core.settings import Settings

CHAMPION_ALIAS = "champion"
#: Tag that ties a run to the work that made it (a flow run), so a retry finds it.
KEY_TAG = "tickets.key"


def mlflow_client(settings: Settings) -> Any:
    import mlflow

    settings.home.mkdir(parents=True, exist_ok=True)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    mlflow.set_tracking_uri(settings.tracking_uri())
    return mlflow.MlflowClient(settings.tracking_uri())


def experiment_id(settings: Settings, name: str | None = None) -> str:
    """The id of experiment ``name`` (the training experiment by default), created on first use
    with artifacts where ``Settings.mlflow_artifact_location`` says."""
    client = mlflow_client(settings)
    name = name or settings.mlflow_experiment
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    location = settings.mlflow_artifact_location()
    return str(client.create_experiment(name, artifact_location=location))


def find_run(client: Any, exp_id: str, key: str) -> str | None:
    """The run that an earlier attempt of the same work created, if any."""
    runs = client.search_runs([exp_id], f"tags.`{KEY_TAG}` = '{key}'", max_results=1)
    return str(runs[0].info.run_id) if runs else None


def run_for(client: Any, exp_id: str, key: str, name: str, tags: dict[str, str]) -> str:
    """The run keyed ``key``: the existing one on a retry, else a new one. Keys make logging
    idempotent, so a retried task never leaves two runs for one training or check."""
    existing = find_run(client, exp_id, key)
    if existing is not None:
        return existing
    return str(client.create_run(exp_id, run_name=name, tags={**tags, KEY_TAG: key}).info.run_id)


def set_champion_alias(settings: Settings, version: str) -> None:
    mlflow_client(settings).set_registered_model_alias(
        settings.registered_model_name, CHAMPION_ALIAS, version
    )


def champion_alias(settings: Settings) -> str | None:
    """The registered version the ``champion`` alias names, if any."""
    from mlflow.exceptions import MlflowException

    try:
        version = mlflow_client(settings).get_model_version_by_alias(
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


#: The model version's tag holding its bundle manifest's sha256 (what ``--reproduce`` checks).
MANIFEST_DIGEST_TAG = "manifest_sha256"


def record_manifest_digest(settings: Settings, version: str, digest: str) -> None:
    """Vouch for a bundle's manifest from outside the artifact store: whoever can rewrite the
    manifest in the store cannot rewrite this."""
    mlflow_client(settings).set_model_version_tag(
        settings.registered_model_name, version, MANIFEST_DIGEST_TAG, digest
    )


def manifest_digest(settings: Settings, version: str) -> str | None:
    """The manifest digest recorded for a registered model version, if any."""
    from mlflow.exceptions import MlflowException

    try:
        found = mlflow_client(settings).get_model_version(settings.registered_model_name, version)
    except MlflowException:
        return None
    value = (found.tags or {}).get(MANIFEST_DIGEST_TAG)
    return str(value) if value else None


def manifest_voucher(settings: Settings, store: ArtifactStore) -> Callable[[Manifest], str | None]:
    """A manifest's digest as recorded outside its bundle: on its registry version, else in the
    champion pointer that once named it."""
    named = {
        entry.bundle_id: entry.manifest_file_sha256
        for entry in champion_history(store)
        if entry.manifest_file_sha256
    }

    def digest(manifest: Manifest) -> str | None:
        version = manifest.mlflow.model_version
        return (manifest_digest(settings, version) if version else None) or named.get(
            manifest.bundle_id
        )

    return digest


def log_promotion(settings: Settings, run_id: str, outcome: dict[str, Any]) -> None:
    """The promotion decision and its confidence interval, on the training run."""
    client = mlflow_client(settings)
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


def archive_unpromoted_versions(settings: Settings, older_than_ms: int | None = None) -> list[str]:
    """Tag registered versions that were never promoted (their training run is not tagged
    ``promoted``, and they are not the champion) as archived; returns the versions tagged. With
    ``older_than_ms`` (epoch milliseconds) a younger version is left alone: its training may be
    promoting it right now."""
    client = mlflow_client(settings)
    name = settings.registered_model_name
    champion = champion_alias(settings)
    archived = []
    for version in client.search_model_versions(f"name = '{name}'"):
        number = str(version.version)
        if number == champion or version.tags.get(ARCHIVED_TAG) == "true":
            continue
        created = version.creation_timestamp
        if older_than_ms is not None and (created is None or created >= older_than_ms):
            continue
        if version.run_id and client.get_run(version.run_id).data.tags.get("promoted") == "true":
            continue
        client.set_model_version_tag(name, number, ARCHIVED_TAG, "true")
        archived.append(number)
    return archived
