"""Every prediction acknowledged to a client survives the server being killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pandas as pd
import pytest

from core.bundle import read_champion, serialize_model, swap_champion, write_bundle
from core.models import build_pipeline, default_params
from core.predictions import PredictionLog
from core.settings import Settings
from core.store import open_store

pytestmark = pytest.mark.integration
TICKETS = str(Path(sys.executable).with_name("tickets"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_acknowledged_predictions_survive_sigkill(tmp_path: Path, demo_frame: pd.DataFrame) -> None:
    settings = Settings(home=tmp_path / "home")
    model = build_pipeline(
        "logistic_regression", default_params("logistic_regression"), "spanish", 0
    )
    model.fit(
        demo_frame[["short_description", "close_notes"]], demo_frame["label"].to_numpy(dtype=object)
    )
    store = open_store(settings)
    manifest = {
        "bundle_id": "b1",
        "family": "logistic_regression",
        "metrics": {"test_macro_f1": 0.8},
        "mlflow": {},
    }
    write_bundle(store, "b1", serialize_model(model), manifest)
    assert swap_champion(store, manifest, read_champion(store)[1])

    port = _free_port()
    env = {**os.environ, "TICKETS_HOME": str(settings.home)}
    server = subprocess.Popen(
        [TICKETS, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
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
    finally:
        server.kill()
        server.wait()
    logged = set(PredictionLog(settings.predictions_path()).window()["request_id"])
    assert 150 <= len(acknowledged) < 400  # the kill landed while requests were in flight
    assert set(acknowledged) <= logged
