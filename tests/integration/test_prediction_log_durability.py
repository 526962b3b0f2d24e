"""Every prediction acknowledged to a client survives the server being killed with SIGKILL."""

from __future__ import annotations

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


def test_acknowledged_predictions_survive_sigkill(tmp_path: Path, demo_frame: pd.DataFrame) -> None:
    settings = Settings(home=tmp_path / "home")
    publish_model(settings, demo_frame)
    with serve_process(settings.home) as (url, server):
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
            server.send_signal(signal.SIGKILL)
            for future in futures:
                future.result()
    logged = set(PredictionLog(settings.predictions_path()).window()["request_id"])
    assert 150 <= len(acknowledged) < 400  # the kill landed while requests were in flight
    assert set(acknowledged) <= logged
