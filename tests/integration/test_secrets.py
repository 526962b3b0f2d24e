"""Every secret setting, planted with a marker, stays out of what others can read: the Prefect
database (flow and task runs, their logs and artifacts), MLflow's database and artifacts, the
process's own logs and output, and the service's HTTP answers. The list of secrets is read from
``Settings`` itself, so a secret setting added later is planted too."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import uuid
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from pydantic import BaseModel

from core.settings import Settings
from serving.app import create_app
from tests.integration.conftest import running

pytestmark = pytest.mark.integration


def secret_fields() -> list[tuple[str | None, str]]:
    """(group or None, field) of every setting typed as a secret, groups included."""
    found: list[tuple[str | None, str]] = []
    for name, field in Settings.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found += [
                (name, inner)
                for inner, sub in annotation.model_fields.items()
                if "SecretStr" in str(sub.annotation)
            ]
        elif "SecretStr" in str(annotation):
            found.append((None, name))
    return found


def planted(
    tmp_path: Path, postgres_url: str
) -> tuple[dict[str, Any], dict[str, dict[str, Any]], list[str]]:
    """Top-level values, group values and the markers to look for (a webhook secret's in the
    base64 form it is written in)."""
    run = uuid.uuid4().hex[:10]
    top: dict[str, Any] = {}
    groups: dict[str, dict[str, Any]] = {}
    markers: list[str] = []
    for index, (group, name) in enumerate(secret_fields()):
        marker = f"mk{index:02d}{run}"
        if name == "prediction_log_url":  # a real server (trust auth: any password works)
            value: Any = postgres_url.replace(
                "postgresql://postgres@", f"postgresql://postgres:{marker}@"
            )
        elif name == "mlflow_tracking_uri":
            value = f"sqlite:///{tmp_path / marker}.db"
        elif name == "webhook_secrets":
            raw = (marker * 3).encode()[:30]
            value = (f"whsec_{base64.b64encode(raw).decode()}",)
            marker = base64.b64encode(raw).decode()[:20]
        elif name == "label_api_keys":
            value = (f"{marker}-label-key",)
        elif name == "optuna_storage":
            value = f"journal:{tmp_path / marker}.log"
        elif name in ("slack_url", "webhook_url"):
            value = f"https://hooks.example/{marker}"
        elif name == "prefect_api_auth_string":
            value = f"someone:{marker}"
        else:
            value = f"{marker}-long-enough-secret"
        markers.append(marker)
        if group is None:
            top[name] = value
        else:
            groups.setdefault(group, {})[name] = value
    return top, groups, markers


def _prefect_records(flow_run_ids: list[str]) -> str:
    """Flow runs, their task runs, logs and artifacts as the Prefect API holds them."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterFlowRunId,
    )

    async def read() -> list[Any]:
        async with get_client() as client:
            ids = [uuid.UUID(run_id) for run_id in flow_run_ids]
            runs = [await client.read_flow_run(run_id) for run_id in ids]
            runs_filter = FlowRunFilter(id=FlowRunFilterId(any_=ids))
            tasks = await client.read_task_runs(flow_run_filter=runs_filter)
            logs = await client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=ids))
            )
            artifacts = await client.read_artifacts(flow_run_filter=runs_filter)
            return [*runs, *tasks, *logs, *artifacts]

    return json.dumps([r.model_dump(mode="json") for r in asyncio.run(read())])


def _files(root: Path) -> str:
    return "\n".join(
        p.read_bytes().decode("utf-8", "replace") for p in root.rglob("*") if p.is_file()
    )


def test_no_secret_setting_leaks_into_prefect_mlflow_logs_or_http_answers(
    tmp_path: Path,
    demo_frame: pd.DataFrame,
    prefect_api: str,
    postgres_url: str,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from flows.monitor import monitor
    from flows.train import train

    top, groups, markers = planted(tmp_path, postgres_url)
    assert {"optuna_storage", "study_cache_key", "canary_key", "prediction_log_url"} <= {
        name for _, name in secret_fields()
    }
    base = Settings()
    settings = Settings(
        home=tmp_path / "home",
        families=("logistic_regression",),
        trials=1,
        timeout_s=60,
        profile="fast",
        label_audit=False,
        **top,
        **{
            group: getattr(base, group).model_copy(update=values)
            for group, values in groups.items()
        },
    )
    data = tmp_path / "tickets.csv"
    demo_frame.to_csv(data, index=False)
    caplog.set_level(logging.INFO)
    trained = train(settings=settings, data_path=str(data), return_state=True)
    assert trained.result().promoted
    checked = monitor(window="1h", settings=settings, return_state=True)
    checked.result()
    runs = [str(s.state_details.flow_run_id) for s in (trained, checked)]

    admin = {"X-API-Key": top["admin_api_key"]}
    answers = []
    with running(create_app(settings)) as url, httpx.Client(base_url=url, timeout=30) as http:
        for headers in ({}, admin):
            for path in ("/health", "/ready", "/metrics", "/schema/openapi.json", "/dashboard"):
                answers.append(http.get(path, headers=headers).text)
        answers.append(http.post("/predict", json={"short_description": "clave"}).text)
        answers.append(http.post("/predict", json={}).text)
        answers.append(http.post("/feedback", json={"request_id": "x", "true_label": "y"}).text)
        answers.append(http.get("/monitoring/drift", headers=admin).text)

    places = {
        "Prefect": _prefect_records(runs),
        "MLflow": _files(settings.home / "mlartifacts"),
        "logs": caplog.text,
        "output": "".join(capsys.readouterr()),
        "HTTP answers": "\n".join(answers),
    }
    mlflow_db = Path(top["mlflow_tracking_uri"].removeprefix("sqlite:///"))
    places["MLflow"] += mlflow_db.read_bytes().decode("utf-8", "replace")
    assert "logistic_regression" in places["MLflow"], "the MLflow files were read"
    assert "settings" in places["Prefect"], "the flow runs' parameters were read"
    for place, text in places.items():
        leaked = [marker for marker in markers if marker in text]
        assert not leaked, f"{place} holds {leaked}"
