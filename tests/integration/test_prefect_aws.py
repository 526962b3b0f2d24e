"""prefect-aws for real, against an S3 server over HTTP: the artifact store named by an S3Bucket
block (with its AwsCredentials), study results a retried flow on another worker finds there, and
the push/pull steps the kubernetes-* deployments move their code with."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import boto3
import pandas as pd
import pytest

from core.settings import Settings
from tests.integration.conftest import BUCKET

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_store_of_an_s3_bucket_block_holds_bundles_and_study_results_for_other_workers(
    tmp_path: Path,
    demo_frame: pd.DataFrame,
    s3_endpoint: str,
    prefect_api: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefect_aws import AwsClientParameters, AwsCredentials, S3Bucket

    import tasks.training as training_tasks
    from flows.train import train

    credentials = AwsCredentials(
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
        aws_client_parameters=AwsClientParameters(endpoint_url=s3_endpoint),
    )
    S3Bucket(bucket_name=BUCKET, bucket_folder="block-store", credentials=credentials).save(
        "tickets-store", overwrite=True
    )
    monkeypatch.setenv("TICKETS_STUDY_CACHE_KEY", "a key every worker of the team shares")
    data = tmp_path / "tickets.csv"
    demo_frame.to_csv(data, index=False)

    def settings(worker: str) -> Settings:
        return Settings(
            home=tmp_path / worker,
            s3_bucket_block="tickets-store",
            families=("logistic_regression",),
            trials=2,
            timeout_s=60,
            profile="fast",
            label_audit=False,
        )

    first = train(settings=settings("worker-a"), data_path=str(data))
    assert first.promoted and first.bundle_uri.startswith(f"s3://{BUCKET}/block-store/")
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="block-store/")["Contents"]]
    assert "block-store/champion.json" in keys or any("champion" in key for key in keys)
    assert any(key.startswith("block-store/study-results/") for key in keys)

    def no_search(*args: object, **kwargs: object) -> None:
        raise AssertionError("the study ran again instead of coming from the shared store")

    # Another worker (its own home, nothing local) retries the run: the study is in S3.
    monkeypatch.setattr(training_tasks, "run_study", no_search)
    again = train(settings=settings("worker-b"), data_path=str(data))
    assert again.test_macro_f1 == pytest.approx(first.test_macro_f1)
    assert not (tmp_path / "worker-b" / "store").exists(), "nothing went to a local store"


def test_the_kubernetes_deployments_code_goes_to_s3_and_comes_back_without_what_is_ignored(
    tmp_path: Path, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect_aws.deployments.steps import pull_from_s3, push_to_s3

    project = tmp_path / "project"
    for part in ("flows", "core", "tasks"):
        shutil.copytree(ROOT / part, project / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".prefectignore", project / ".prefectignore")
    (project / ".venv" / "lib").mkdir(parents=True)
    (project / ".venv" / "lib" / "big.so").write_bytes(b"\0" * 1000)
    (project / ".tickets").mkdir()
    (project / ".tickets" / "predictions.db").write_bytes(b"rows")
    client = {"endpoint_url": s3_endpoint}
    credentials = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    monkeypatch.chdir(project)
    pushed = push_to_s3(BUCKET, "flow-code", credentials, client)
    assert pushed["folder"] == "flow-code"
    pod = tmp_path / "pod"
    pod.mkdir()
    monkeypatch.chdir(pod)
    pulled = pull_from_s3(BUCKET, "flow-code", credentials, client)
    assert Path(pulled["directory"]) == pod
    assert (pod / "flows" / "train.py").read_bytes() == (ROOT / "flows" / "train.py").read_bytes()
    assert (pod / "core" / "training" / "studies.py").exists()
    assert not (pod / ".venv").exists() and not (pod / ".tickets").exists()
    assert os.listdir(pod / "flows")
