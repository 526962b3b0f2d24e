"""The daily maintenance against real components (a Prefect server, MLflow on SQLite, the log,
a local store): every action counted, retention respected, the champion never touched."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from core.io.store import open_store
from core.predlog import PredictionLog, PredictionRecord
from core.release.bundle import (
    MODEL_FILE,
    bundle_key,
    load_bundle,
    new_bundle_id,
    read_champion,
    serialize_model,
    stored_bundles,
    swap_champion,
    write_bundle,
)
from core.release.manifest import Manifest, SnapshotRef
from core.release.registry import experiment_id, set_champion_alias
from core.release.retention import ARCHIVED_TAG
from core.release.snapshots import description_key, stored_snapshots, write_snapshot
from core.settings import Settings
from core.training.study_cache import open_study_cache
from core.training.tuning import StudyResult
from tests.integration.conftest import artifact_keys

pytestmark = pytest.mark.integration


def _record(request_id: str, days_ago: float, label: str | None = None) -> PredictionRecord:
    created = (datetime.now(UTC) - timedelta(days=days_ago)).isoformat()
    return PredictionRecord(request_id, "1", "clave", "", "a", 0.9, {}, label, created)


def _register(settings: Settings, promoted: bool) -> str:
    client = mlflow.MlflowClient(settings.tracking_uri())
    run = client.create_run(experiment_id(settings), tags={"promoted": str(promoted).lower()})
    if not client.search_registered_models(f"name = '{settings.registered_model_name}'"):
        client.create_registered_model(settings.registered_model_name)
    version = client.create_model_version(
        settings.registered_model_name, "file:///nowhere", run_id=run.info.run_id
    )
    return str(version.version)


def test_maintenance_counts_what_it_does_and_keeps_what_it_must(
    tmp_path: Path, prefect_api: str
) -> None:
    from flows.maintenance import maintenance

    # The versions registered below are seconds old: a grace period shorter than that.
    settings = Settings(home=tmp_path / "home", keep_bundles=2, retention_grace_hours=1e-6)
    log = PredictionLog(settings.predictions_path())
    log.record(
        [
            _record("recent", 0.01),
            _record("yesterday", 1.0),
            _record("old", 100),
            _record("old-labelled", 100, "b"),
            _record("ancient-labelled", 400, "b"),
        ]
    )
    log.record_drift_report("2020-01-01T00:00:00+00:00", "1", None, {"drift": 0}, None)
    log.save_daily("2020-01-01", {"count": 1})
    log.close()
    cache = open_study_cache(settings)
    stale = cache.save("an old study", _study())
    os.utime(stale, (0, 0))
    cache.save("a recent study", _study())
    store = open_store(settings)

    def snapshot(rows: int, created: str) -> SnapshotRef:
        frame = pd.DataFrame(
            {"short_description": [f"t{i}" for i in range(rows)], "close_notes": "", "label": "a"}
        )
        ref = write_snapshot(store, frame, frame.head(1))
        dated = ref.model_copy(update={"created_at": created})
        store.put(description_key(ref.sha256), dated.model_dump_json().encode())
        return dated

    long_ago = "2026-01-01T00:00:00+00:00"
    data = {2: snapshot(3, long_ago), 3: snapshot(4, long_ago)}  # b2 is pruned, b3 kept
    orphan = snapshot(5, long_ago)  # (young ones wait out the grace period: a unit test)
    for number in range(1, 5):
        created = (datetime(2026, 1, number, tzinfo=UTC)).isoformat()
        manifest = Manifest(
            bundle_id=f"b{number}", family="svm", created_at=created, data_snapshot=data.get(number)
        )
        stored = write_bundle(store, b"model", manifest)
        if number == 1:
            assert swap_champion(store, stored, read_champion(store)[1])
    promoted, tried, champion = (_register(settings, p) for p in (True, False, False))
    set_champion_alias(settings, champion)

    state = maintenance(settings=settings, return_state=True)
    report = state.result()

    assert report["predictions_deleted"] == 2 and report["feedback_rows_deleted"] == 1
    assert report["drift_reports_deleted"] == 1 and report["daily_metrics_deleted"] == 1
    assert report["study_results_deleted"] == 1 and not stale.exists()
    assert cache.load("a recent study") is not None
    log = PredictionLog(settings.predictions_path())
    assert set(log.window()["request_id"]) == {"recent", "yesterday", "old-labelled"}
    assert "old-labelled" in set(log.window()["request_id"]), "labelled rows are training data"
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    assert report["day_saved"] == yesterday and log.daily()[yesterday]["count"] >= 1
    log.close()
    assert report["bundles_deleted"] == ["b2"] and report["bundles_kept"] == 3
    assert {bundle_id for bundle_id, _ in stored_bundles(store)} == {"b1", "b3", "b4"}
    assert report["mlflow_versions_archived"] == [tried]
    # Training data goes with the last bundle that names it.
    assert report["snapshots_deleted"] == 2
    assert {ref.sha256 for ref in stored_snapshots(store)} == {data[3].sha256}
    assert orphan.sha256 != data[3].sha256
    client = mlflow.MlflowClient(settings.tracking_uri())
    name = settings.registered_model_name
    assert client.get_model_version(name, tried).tags.get(ARCHIVED_TAG) == "true"
    for kept in (promoted, champion):
        assert ARCHIVED_TAG not in client.get_model_version(name, kept).tags
    assert "maintenance" in artifact_keys(str(state.state_details.flow_run_id))
    assert maintenance(settings=settings)["mlflow_versions_archived"] == [], "idempotent"


def test_maintenance_between_a_trainings_model_file_and_its_manifest_leaves_the_bundle_alone(
    tmp_path: Path, prefect_api: str
) -> None:
    """A training has written its model file, not yet its manifest, when the maintenance runs:
    the bundle survives (it is younger than the grace period), and the promotion that follows
    names a bundle whose model loads."""
    from flows.maintenance import maintenance

    settings = Settings(home=tmp_path / "home", keep_bundles=1)
    store = open_store(settings)
    for number in range(1, 4):
        created = datetime(2026, 1, number, tzinfo=UTC).isoformat()
        manifest = Manifest(bundle_id=f"b{number}", family="svm", created_at=created)
        stored = write_bundle(store, b"old model", manifest)
        if number == 1:
            assert swap_champion(store, stored, read_champion(store)[1])
    training = Manifest(bundle_id=new_bundle_id("svm"), family="svm")
    model_bytes = serialize_model(_tiny_model())
    store.put(bundle_key(training.bundle_id, MODEL_FILE), model_bytes)  # the manifest comes next
    registered = _register(settings, promoted=False)  # that training's version, not yet promoted

    report = maintenance(settings=settings)

    assert report["bundles_deleted"] == ["b2", "b3"], "old bundles still go"
    assert report["mlflow_versions_archived"] == [], "a version being promoted is not archived"
    client = mlflow.MlflowClient(settings.tracking_uri())
    assert (
        ARCHIVED_TAG
        not in client.get_model_version(settings.registered_model_name, registered).tags
    )
    assert store.exists(bundle_key(training.bundle_id, MODEL_FILE))
    stored = write_bundle(store, model_bytes, training)
    assert swap_champion(store, stored, read_champion(store)[1])
    pointer, _ = read_champion(store)
    assert pointer is not None and pointer.bundle_id == training.bundle_id
    model, _ = load_bundle(store, pointer.bundle_id, pointer.manifest_file_sha256)
    assert list(model.classes_) == ["a", "b"]


def _tiny_model() -> object:
    from sklearn.dummy import DummyClassifier

    return DummyClassifier().fit([[0], [1]], ["a", "b"])


def _study() -> StudyResult:
    return StudyResult("svm", {"C": 1.0}, 0.8, trials=1, pruned=0, seconds=1.0)
