"""The acceptance story of the loop, run exactly as ``make demo`` runs it: ``tickets run`` (what
``make run`` runs) on an S3 server over loopback starts a real Prefect server with the
deployments, a process worker, the service and the MLflow UI as processes of their own; the
story is driven against it over HTTP and the Prefect CLI, and ends with Ctrl-C (SIGINT)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import free_port

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_make_run_runs_the_loop_and_ctrl_c_leaves_nothing_behind(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "deployments.demo",
        "--home",
        str(tmp_path / "demo"),
        "--prefect-port",
        str(free_port()),
        "--api-port",
        str(free_port()),
        "--mlflow-port",
        str(free_port()),
        "--families",
        "linear_svm",
        "--trials",
        "2",
    ]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=1200, check=False
    )
    logs = "\n".join(
        f"--- {log.name}\n{log.read_text()[-3000:]}"
        for log in (tmp_path / "demo" / "logs").glob("*")
    )
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}\n{logs}"
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"first /predict {result['first_prediction_s']}s after tickets run started")
    schedules = result["deployments"]
    assert schedules["monitor/hourly"] == ["0 * * * *"]
    assert schedules["maintenance/daily"] == ["15 0 * * *"]
    assert schedules["retrain/on-event"] == [] and schedules["train/manual"] == []
    assert result["mlflow_ui"] == 200
    assert result["drift_report_on_dashboard"] is True
    assert result["drift_detected"] is True
    assert result["retrain_flow_run_id"] and result["promoted"] is True
    assert result["old_version"] != result["new_version"] == result["served_version"]
    assert result["webhook_flow_run_id"] not in (None, result["retrain_flow_run_id"])
    assert result["unsigned_status"] == 401 and result["replayed_status"] == 200
    assert result["label_without_key_status"] == 401 and result["label_with_key_status"] == 200
    assert result["retrain_events"] == 1
    assert result["runs_started_by_rejected_webhooks"] == 0
    # Drift that retraining cannot fix: three monitor runs, one retrain.
    first, *later = result["persistent_drift_decisions"]
    assert first == "requested" and all(d.startswith("suppressed") for d in later), later
    assert len(later) == 2 and result["persistent_drift_retrains"] == 1
    # The signed webhook's retrain finished and said whether it promoted, and why.
    assert result["webhook_outcome"] in ("promoted", "not promoted")
    assert len(result["webhook_outcome_reason"] or "") > 10, result["webhook_outcome_reason"]
    # Ctrl-C while a flow run is running: `tickets run` exits cleanly and no process it
    # started (the worker's flow run included) is left.
    assert result["running_at_ctrl_c"] == "RUNNING"
    assert result["ctrl_c_exit"] == 0 and result["processes_left"] == []
