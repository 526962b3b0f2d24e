"""The train flow against real components: data and bundle on an S3 server, MLflow on SQLite,
Prefect's server."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import os
import pickle
from pathlib import Path

import boto3
import mlflow
import pandas as pd
import pytest

from core.errors import BundleError
from core.io.store import open_store
from core.progress import StudyProgress, listening
from core.release.bundle import champion_bundle_id, load_bundle
from core.release.snapshots import read_snapshot
from core.settings import Settings
from core.training.refit import TrainingSummary
from tests.integration.conftest import BUCKET

pytestmark = pytest.mark.integration


def _leaderboard_artifacts(flow_run_id: str) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterKey,
        FlowRunFilter,
        FlowRunFilterId,
    )

    async def read() -> list:
        async with get_client() as client:
            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["leaderboard"])),
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
            )

    return asyncio.run(read())


@pytest.mark.slow
def test_train_flow_end_to_end_on_s3(
    tmp_path: Path, demo_frame: pd.DataFrame, s3_endpoint: str, prefect_api: str
) -> None:
    from prefect import get_client  # noqa: F401  (the harness is active)

    from flows.train import train

    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.put_object(Bucket=BUCKET, Key="data/train.csv", Body=demo_frame.to_csv(index=False).encode())
    settings = Settings(
        home=tmp_path / "home",
        store_url=f"s3://{BUCKET}/models",
        s3_endpoint_url=s3_endpoint,
        families=("logistic_regression", "lightgbm"),
        trials=2,
        timeout_s=60,
        profile="fast",
    )
    progress: list[StudyProgress] = []
    with listening(progress.append):
        state = train(
            settings=settings, data_path=f"s3://{BUCKET}/data/train.csv", return_state=True
        )
    summary = state.result()
    assert summary.promoted and summary.promotion_reason == "no champion yet"
    finished = {p.family: p for p in progress if p.finished}
    assert set(finished) == {"logistic_regression", "lightgbm"}
    assert all(p.trials_done >= 1 and p.best is not None for p in finished.values())
    assert {row.family for row in summary.leaderboard} == {"logistic_regression", "lightgbm"}
    assert all(row.trials >= 1 for row in summary.leaderboard)
    assert summary.test_macro_f1 > 0.6
    assert summary.bundle_uri == f"s3://{BUCKET}/models/bundles/{summary.bundle_id}"

    store = open_store(settings)
    model, manifest = load_bundle(store, summary.bundle_id)
    assert manifest.test_macro_f1 == pytest.approx(summary.test_macro_f1)
    assert sorted(manifest.labels) == sorted(demo_frame["label"].unique())
    assert manifest.reference_profile and manifest.reference_profile.vocabulary.token_shares
    assert champion_bundle_id(store) == summary.bundle_id
    assert len(model.predict(demo_frame[["short_description", "close_notes"]].head(5))) == 5

    client = mlflow.MlflowClient(settings.tracking_uri())
    run = client.get_run(str(summary.mlflow_run_id))
    assert run.data.metrics["test_macro_f1"] == pytest.approx(summary.test_macro_f1)
    children = client.search_runs(
        [run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'"
    )
    assert {child.data.tags["family"] for child in children} == {"logistic_regression", "lightgbm"}
    assert all("cv_macro_f1" in child.data.metrics for child in children)
    champion = client.get_model_version_by_alias(settings.registered_model_name, "champion")
    assert str(champion.version) == summary.model_version
    mlflow.set_tracking_uri(settings.tracking_uri())
    requirements_file = mlflow.pyfunc.get_model_dependencies(str(manifest.mlflow.model_uri))
    requirements = Path(requirements_file).read_text().split()
    assert {"scikit-learn", "skops", "tickets"} <= {line.split("==")[0] for line in requirements}
    assert not any(line.startswith("pytest") for line in requirements)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"confusion_matrix.png", "leaderboard.md", "classification_report.json"} <= artifacts

    leaderboard = _leaderboard_artifacts(str(state.state_details.flow_run_id))
    assert leaderboard and "logistic_regression" in leaderboard[0].data

    # The exact table it used: on S3, content-addressed, named by the manifest and the run.
    snapshot = manifest.data_snapshot
    assert snapshot is not None and snapshot.uri.startswith(f"s3://{BUCKET}/models/datasets/")
    stored = s3.get_object(Bucket=BUCKET, Key=f"models/{snapshot.key}")["Body"].read()
    assert hashlib.sha256(stored).hexdigest() == snapshot.sha256
    table = pd.read_parquet(io.BytesIO(stored))
    assert (snapshot.train_rows, snapshot.test_rows) == (
        int((table["split"] == "train").sum()),
        int((table["split"] == "test").sum()),
    )
    assert snapshot.test_rows == summary.test_rows
    assert snapshot.train_rows + snapshot.test_rows == summary.data["rows_kept"]
    assert manifest.training_settings and manifest.training_settings["trials"] == 2
    assert run.inputs is not None
    inputs = {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}
    assert set(inputs) == {"training", "testing"}
    assert {d.digest for d in inputs.values()} == {snapshot.short_digest}
    assert all(snapshot.uri in d.source for d in inputs.values())
    assert "short_description" in str(inputs["training"].schema)
    assert run.data.tags["data_snapshot_sha256"] == snapshot.sha256

    # Reproduced from the snapshot alone (the table on S3 is gone), with today's settings
    # differing: the recorded ones are used, the studies search again, and every test
    # prediction comes out the same. A reproduction is never promoted.
    s3.delete_object(Bucket=BUCKET, Key="data/train.csv")
    today = settings.model_copy(update={"families": ("linear_svm",), "trials": 1, "seed": 3})
    again = train(settings=today, reproduce=str(summary.model_version))
    rows = snapshot.test_rows
    assert again.promotion_reason == (
        f"reproduction of model {summary.model_version}: reproduced (exactly): {rows} of "
        f"{rows} test predictions identical, probabilities differ by at most 0"
    )
    assert not again.promoted and champion_bundle_id(store) == summary.bundle_id
    assert {row.family for row in again.leaderboard} == {"logistic_regression", "lightgbm"}

    def cv_scores(result: TrainingSummary) -> dict[str, float | None]:
        return {row.family: row.cv_macro_f1 for row in result.leaderboard}

    assert cv_scores(again) == cv_scores(summary)
    assert (again.champion_family, again.champion_params) == (
        summary.champion_family,
        summary.champion_params,
    )
    assert again.test_macro_f1 == summary.test_macro_f1
    rebuilt, rebuilt_manifest = load_bundle(store, again.bundle_id)
    assert rebuilt_manifest.data_snapshot == snapshot, "the same table is the same snapshot"
    assert rebuilt_manifest.data["reproduced_from"] == summary.model_version
    _, test = read_snapshot(store, snapshot)
    texts = test[["short_description", "close_notes"]]
    assert (rebuilt.predict_proba(texts) == model.predict_proba(texts)).all()
    assert (
        str(client.get_model_version_by_alias(settings.registered_model_name, "champion").version)
        == summary.model_version
    )

    # A manifest edited in the store (other training settings) is not reproduced: its digest,
    # recorded on the registry version when it was written, no longer matches.
    key = f"models/bundles/{summary.bundle_id}/manifest.json"
    edited = json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    edited["training_settings"]["trials"] = 7
    s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(edited).encode())
    with pytest.raises(BundleError, match="does not match the digest recorded for it"):
        train(settings=today, reproduce=str(summary.model_version))


class _RunsCode:
    """Unpickling this creates a folder: proof that code from the cache ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.makedirs, (str(self.marker),))


def test_a_failed_training_reruns_only_the_studies_it_had_not_finished(
    tmp_path: Path, demo_frame: pd.DataFrame, prefect_api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first run dies in its third study; the rerun takes the second finished study from its
    cache (signed JSON under TICKETS_HOME) and runs the third, and the first again because its
    record was rewritten to name pickle (which no reader runs)."""
    import tasks.training as training_tasks
    from flows.train import train

    data = tmp_path / "tickets.csv"
    demo_frame.to_csv(data, index=False)
    settings = Settings(
        home=tmp_path / "home",
        families=("logistic_regression", "linear_svm", "lightgbm"),
        trials=1,
        timeout_s=60,
        profile="fast",
        max_concurrent_studies=1,
    )
    real_study = training_tasks.run_study
    studied: list[str] = []

    def study(family: str, *args: object, **kwargs: object) -> object:
        studied.append(family)
        if family == "lightgbm" and crash:
            raise RuntimeError("the worker running this study was lost")
        return real_study(family, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(training_tasks, "run_study", study)
    crash = True
    with pytest.raises(RuntimeError, match="worker running this study was lost"):
        train(settings=settings, data_path=str(data))
    assert studied == ["logistic_regression", "linear_svm", "lightgbm"]
    records = sorted((settings.home / "study-results").glob("*.json"))
    assert len(records) == 2, "the two finished studies persisted under home"
    # Someone who can write the cache rewrites logistic_regression's record to name pickle.
    tampered = next(p for p in records if "logistic_regression" in json.loads(p.read_text())["key"])
    marker = tmp_path / "code-ran"
    payload = base64.b64encode(pickle.dumps(_RunsCode(marker))).decode()
    tampered.write_text(
        json.dumps({"metadata": {"serializer": {"type": "pickle"}}, "result": payload})
    )
    crash, studied[:] = False, []
    summary = train(settings=settings, data_path=str(data))
    assert not marker.exists(), "nothing in the cache ran"
    assert studied == ["logistic_regression", "lightgbm"], "untouched studies come from the cache"
    assert {row.family for row in summary.leaderboard} == set(settings.families)


def test_with_the_standard_profile_a_retrain_embeds_only_the_new_tickets(
    tmp_path: Path, demo_frame: pd.DataFrame, prefect_api: str
) -> None:
    from core import encoder
    from flows.train import train

    first, later = demo_frame.head(150), demo_frame.head(190)
    for name, frame in (("first", first), ("later", later)):
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
    settings = Settings(home=tmp_path / "home", families=("linear_svm",), trials=2, timeout_s=60)
    encoder.CACHE.clear_memory()  # as a new process would start
    before = encoder.COUNTS.embedded
    summary = train(settings=settings, data_path=str(tmp_path / "first.csv"))
    first_pass = encoder.COUNTS.embedded - before
    assert summary.leaderboard[0].trials == 2
    assert settings.encoder_cache_path().is_file()
    assert first_pass >= 100  # the training rows (and the test rows the model scored)

    encoder.CACHE.clear_memory()
    before = encoder.COUNTS.embedded
    train(settings=settings, data_path=str(tmp_path / "later.csv"))
    second_pass = encoder.COUNTS.embedded - before
    # Only tickets it had never embedded: the 40 new ones and the first test rows the TF-IDF
    # gate answered without the encoder; no text is embedded twice across the two trainings.
    assert second_pass >= 40 * 0.8  # at least the new training rows
    assert first_pass + second_pass <= len(
        later[["short_description", "close_notes"]].drop_duplicates()
    )


def test_a_retrain_on_a_changed_table_is_compared_on_rows_neither_model_trained_on(
    tmp_path: Path, demo_frame: pd.DataFrame, prefect_api: str
) -> None:
    """Adding rows changes the split: some of the new test rows were the champion's training
    rows, where it would look better than it is. Both models are scored on the rest."""
    from core.release.promotion import row_keys
    from flows.train import train

    first, later = demo_frame.head(400), demo_frame.head(500)
    for name, frame in (("first", first), ("later", later)):
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
    settings = Settings(
        home=tmp_path / "home",
        families=("logistic_regression",),
        trials=1,
        timeout_s=60,
        profile="fast",
        label_audit=False,
    )
    champion = train(settings=settings, data_path=str(tmp_path / "first.csv"))
    assert champion.promoted
    challenger = train(settings=settings, data_path=str(tmp_path / "later.csv"))

    store = open_store(settings)
    snapshots = [
        load_bundle(store, summary.bundle_id)[1].data_snapshot for summary in (champion, challenger)
    ]
    assert snapshots[0] is not None and snapshots[1] is not None
    champion_train, _ = read_snapshot(store, snapshots[0])
    challenger_train, challenger_test = read_snapshot(store, snapshots[1])
    seen = set(row_keys(champion_train))
    unseen = [key for key in row_keys(challenger_test) if key not in seen]
    assert 0 < len(unseen) < len(challenger_test), "the new split holds some of its rows"
    assert not set(row_keys(challenger_train)) & set(row_keys(challenger_test))
    outcome = challenger.promotion
    assert outcome.evaluation_rows == len(unseen)
    left_out = len(challenger_test) - len(unseen)
    assert f"{left_out} evaluation rows left out: the champion trained on them" in outcome.reason
    assert outcome.champion_bundle_id == champion.bundle_id
