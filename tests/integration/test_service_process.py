"""``tickets serve`` as separate processes: two workers sharing one prediction log and one
webhook-id table, and a schemathesis run against the published OpenAPI schema."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pandas as pd
import pytest

from core.predictions import PredictionLog
from core.settings import Settings
from core.webhooks import sign
from tests.integration.conftest import publish_model, serve_process

pytestmark = pytest.mark.integration
SECRET = "whsec_" + base64.b64encode(b"w" * 32).decode()


def test_two_workers_share_the_log_and_accept_a_webhook_id_once(
    tmp_path: Path, demo_frame: pd.DataFrame
) -> None:
    settings = Settings(home=tmp_path / "home")
    publish_model(settings, demo_frame)
    with serve_process(settings.home, workers=2, extra_env={"TICKETS_WEBHOOK_SECRETS": SECRET}) as (
        url,
        _,
    ):

        def predict(i: int) -> tuple[int, str]:
            with httpx.Client() as client:
                response = client.post(f"{url}/predict", json={"short_description": f"clave {i}"})
                pid = client.get(f"{url}/health").json()["worker_pid"]
            return response.status_code, f"{pid}:{response.json()['request_id']}"

        with ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(predict, range(240)))
        assert {status for status, _ in answers} == {200}
        pids = {tagged.split(":")[0] for _, tagged in answers}
        assert len(pids) == 2, "both workers should have answered"
        ids = {tagged.split(":")[1] for _, tagged in answers}
        assert ids <= set(PredictionLog(settings.predictions_path()).window()["request_id"])

        request_id = next(iter(ids))
        body = json.dumps({"tickets": [{"request_id": request_id, "true_label": "certificados"}]})
        headers = sign([SECRET], body.encode(), "msg-once")

        def deliver(_: int) -> int:
            return httpx.post(f"{url}/webhooks/tickets", content=body, headers=headers).status_code

        with ThreadPoolExecutor(8) as pool:
            statuses = sorted(pool.map(deliver, range(16)))
        assert statuses.count(200) == 1 and statuses.count(409) == 15


def test_schemathesis_finds_no_server_errors(tmp_path: Path, demo_frame: pd.DataFrame) -> None:
    settings = Settings(home=tmp_path / "home")
    publish_model(settings, demo_frame)
    extra = {"TICKETS_WEBHOOK_SECRETS": SECRET, "TICKETS_MAX_BATCH": "20"}
    schemathesis = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert schemathesis, "schemathesis is installed with the dev dependencies"
    with serve_process(settings.home, extra_env=extra) as (url, _):
        done = subprocess.run(
            [
                schemathesis,
                "run",
                f"{url}/schema/openapi.json",
                "--checks",
                "not_a_server_error",
                "--max-examples",
                "40",
                "--seed",
                "1",
                "--no-color",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]
    assert "/predict" in done.stdout
