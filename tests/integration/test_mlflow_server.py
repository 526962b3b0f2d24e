"""Tracking against a real MLflow server whose artifacts go to S3 (the at-scale setup of
infra/): runs land in the server, artifacts in the bucket, nothing in the local home."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest

from core.monitoring.tracking import log_drift_report
from core.settings import Settings
from deployments.stack import free_port
from tests.integration.conftest import BUCKET, wait_for_http

MLFLOW = str(Path(sys.executable).with_name("mlflow"))


ADMIN = ("admin", "an-admin-password-for-the-test")


@pytest.fixture
def mlflow_server(
    tmp_path: Path, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """The server as infra/docker-compose.yml runs it: behind MLflow's basic auth, its admin
    created from MLFLOW_AUTH_ADMIN_*; clients sign in with MLFLOW_TRACKING_USERNAME/PASSWORD."""
    port = free_port()
    command = [MLFLOW, "server", "--app-name", "basic-auth", "--host", "127.0.0.1"]
    command += ["--port", str(port)]
    command += ["--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}"]
    command += ["--artifacts-destination", f"s3://{BUCKET}/mlflow-artifacts", "--workers", "1"]
    env = {
        **os.environ,
        "MLFLOW_S3_ENDPOINT_URL": s3_endpoint,
        "MLFLOW_AUTH_ADMIN_USERNAME": ADMIN[0],
        "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN[1],
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "a-secret-key-for-the-test",
        "MLFLOW_AUTH_CONFIG_PATH": str(_auth_config(tmp_path)),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    log = tmp_path / "mlflow-server.log"
    with log.open("wb") as output:
        server = subprocess.Popen(
            command, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/health", server, "mlflow server", log)
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN[0])
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN[1])
        yield url
    finally:  # a throw-away server: no need to wait for its graceful shutdown (about 5 s)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=30)


def _auth_config(folder: Path) -> Path:
    """MLflow's own basic_auth.ini with its user store in the test's folder (the default is a
    SQLite file in the working directory)."""
    import mlflow.server.auth

    source = Path(mlflow.server.auth.__file__).with_name("basic_auth.ini").read_text()
    path = folder / "basic_auth.ini"
    path.write_text(
        source.replace("sqlite:///basic_auth.db", f"sqlite:///{folder / 'basic_auth.db'}")
    )
    return path


def test_runs_go_to_the_server_and_artifacts_to_s3(
    tmp_path: Path, mlflow_server: str, s3_endpoint: str
) -> None:
    home = tmp_path / "home"
    settings = Settings(home=home, mlflow_tracking_uri=mlflow_server)
    report = {
        "drift_score": 0.2,
        "drift_detected": False,
        "n_predictions": 150,
        "n_feedback": 0,
        "tests": [{"name": "text_length_ks", "statistic": 0.03}],
        "fired": [],
        "model_version": "1",
    }
    run_id = log_drift_report(settings, report, "# drift report", key="check-1")
    assert log_drift_report(settings, report, "# drift report", key="check-1") == run_id

    runs = f"{mlflow_server}/api/2.0/mlflow/runs/get"
    assert httpx.get(runs, params={"run_id": run_id}).status_code == 401, "no anonymous reads"
    run = httpx.get(runs, params={"run_id": run_id}, auth=ADMIN).json()
    assert run["run"]["info"]["artifact_uri"].startswith("mlflow-artifacts:")
    objects = boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(
        Bucket=BUCKET, Prefix="mlflow-artifacts/"
    )
    keys = [item["Key"] for item in objects.get("Contents", [])]
    assert any(key.endswith(f"{run_id}/artifacts/drift_report.md") for key in keys), keys
    assert not (home / "mlartifacts").exists()
