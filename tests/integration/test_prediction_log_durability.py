"""Every prediction acknowledged to a client survives the server being killed with SIGKILL, on
either HTTP server."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pandas as pd
import pytest

from core.predlog import PredictionLog
from core.settings import Settings
from tests.integration.conftest import publish_model, serve_process

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("server_name", ["granian", "uvicorn"])
def test_acknowledged_predictions_survive_sigkill(
    tmp_path: Path, demo_frame: pd.DataFrame, server_name: str
) -> None:
    settings = Settings(home=tmp_path / "home")
    publish_model(settings, demo_frame)
    with serve_process(settings.home, extra_env={"TICKETS_SERVER": server_name}) as (url, server):
        acknowledged: list[str] = []

        def send(i: int) -> None:
            try:
                response = httpx.post(
                    f"{url}/predict", json={"short_description": f"clave bloqueada {i}"}, timeout=10
                )
            except httpx.TransportError:
                return
            if response.status_code == 200:
                acknowledged.append(response.json()["request_id"])

        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(send, i) for i in range(400)]
            while len(acknowledged) < 150:
                time.sleep(0.01)
            # The whole server: under granian `tickets serve` is a supervisor and the worker
            # that writes the log is its child.
            os.killpg(server.pid, signal.SIGKILL)
            for future in futures:
                future.result()
    logged = set(PredictionLog(settings.predictions_path()).window()["request_id"])
    assert 150 <= len(acknowledged) < 400  # the kill landed while requests were in flight
    assert set(acknowledged) <= logged
