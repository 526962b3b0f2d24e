"""The ``tickets`` command as a person runs it: a subprocess, real files, a real Prefect server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.integration
TICKETS = str(Path(sys.executable).with_name("tickets"))


def _run(
    args: list[str], home: Path, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "TICKETS_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        **(extra_env or {}),
    }
    return subprocess.run([TICKETS, *args], capture_output=True, text=True, env=env, timeout=600)


def test_bad_data_gets_one_line_and_exit_code_2_from_the_real_command(tmp_path: Path) -> None:
    """The whole matrix of bad tables runs in process (tests/unit/test_cli.py); this is the
    command as a person runs it: one line on stderr, no traceback, exit code 2."""
    path = tmp_path / "latin1.csv"
    path.write_bytes("short_description,close_notes,label\nsesión,,a\n".encode("latin-1"))
    result = _run(["train", "--data", str(path), "--encoding", "utf-8"], tmp_path / "home")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(path) in lines[0]
    assert "not utf-8 text" in lines[0]


@pytest.mark.slow
def test_train_on_a_spanish_spreadsheet_export_with_json(
    tmp_path: Path, demo_frame: pd.DataFrame, prefect_api: str
) -> None:
    """What a Spanish-locale spreadsheet saves as CSV: ';'-separated, Windows-1252, accented
    column names."""
    data = tmp_path / "incidencias.csv"
    export = demo_frame.rename(
        columns={
            "short_description": "Tipología",
            "close_notes": "Observaciones",
            "label": "Categoría",
        }
    )
    data.write_bytes(export.to_csv(index=False, sep=";").encode("cp1252"))
    result = _run(
        [
            "train",
            "--data",
            str(data),
            "--text-columns",
            "Tipología,Observaciones",
            "--label-column",
            "Categoría",
            "--families",
            "linear_svm",
            "--profile",
            "fast",
            "--trials",
            "2",
            "--timeout-s",
            "60",
            "--json",
        ],
        tmp_path / "home",
        {"PREFECT_API_URL": prefect_api},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    for key in (
        "champion_family",
        "test_macro_f1",
        "test_weighted_f1",
        "test_accuracy",
        "model_version",
        "promoted",
        "bundle_uri",
        "leaderboard",
    ):
        assert key in summary
    assert summary["champion_family"] == "linear_svm" and summary["promoted"] is True
    assert summary["test_macro_f1"] > 0.6
    assert (summary["data"]["encoding"], summary["data"]["delimiter"]) == ("windows-1252", ";")
    assert (
        summary["leaderboard"][0]["trials"] == 2 and summary["leaderboard"][0]["cv_macro_f1"] > 0.5
    )
    assert Path(summary["bundle_uri"].removeprefix("file://"), "manifest.json").exists()
    assert "Leaderboard" in result.stdout and "linear_svm trial" in result.stderr


def test_simulate_writes_a_table(tmp_path: Path) -> None:
    out = tmp_path / "drift.parquet"
    result = _run(
        ["simulate", "--n", "300", "--scenario", "new_category", "--out", str(out)], tmp_path
    )
    assert result.returncode == 0
    assert len(pd.read_parquet(out)) == 300
    bad = _run(["simulate", "--n", "10", "--scenario", "nope", "--out", str(out)], tmp_path)
    assert bad.returncode == 2 and "unknown scenario" in bad.stderr


@pytest.mark.slow
def test_a_full_training_interrupted_by_ctrl_c_is_resumed_by_the_next_run(
    tmp_path: Path, demo_frame: pd.DataFrame
) -> None:
    """`tickets run` was stopped during its background full training (the marker it leaves says
    the training is owed); the next `tickets run` finds a champion, resumes that training, and
    the marker goes once it succeeds."""
    import signal
    import time

    from core.settings import Settings
    from deployments.stack import free_port
    from tests.integration.conftest import publish_model

    home = tmp_path / "home"
    data = tmp_path / "tickets.csv"
    demo_frame.to_csv(data, index=False)
    publish_model(Settings(home=home), demo_frame)  # the quick model phase 1 made
    marker = home / "full-training.pending"
    marker.write_text(json.dumps({"data": str(data)}))  # what the interrupted run left
    env = {
        **os.environ,
        "TICKETS_HOME": str(home),
        "TICKETS_FAMILIES": "linear_svm",
        "TICKETS_PROFILE": "fast",
        "TICKETS_TRIALS": "1",
        "TICKETS_TIMEOUT_S": "60",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    ports = ["--port", str(free_port()), "--prefect-port", str(free_port()), "--mlflow-port", "0"]
    command = [TICKETS, "run", *ports]
    run = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 300
        while marker.exists() and time.monotonic() < deadline and run.poll() is None:
            time.sleep(0.5)
        assert not marker.exists(), "the resumed training finished and cleared its marker"
    finally:
        run.send_signal(signal.SIGTERM)
        output, _ = run.communicate(timeout=60)
    assert "resuming it" in output, output[-3000:]
    log = (home / "logs" / "full-training.log").read_text()
    assert "linear_svm" in log
