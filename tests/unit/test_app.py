"""The service's handlers in process (Litestar's TestClient) with a holder that serves a golden
bundle or nothing: error paths and answers without a real server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from litestar.testing import TestClient

from core.bundle import load_bundle
from core.predictions import PredictionLog
from core.settings import Settings
from core.store import LocalStore
from serving.app import create_app
from serving.model_holder import ServedModel

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "golden"
ADMIN_KEY = "a-long-admin-key-for-tests"


class FakeHolder:
    """What the app needs from a holder: the current model, the last failure, a refresh."""

    def __init__(self, served: ServedModel | None) -> None:
        self.current = served
        self.last_failure: dict[str, str] | None = None

    def refresh(self) -> bool:
        return False


@pytest.fixture(scope="module")
def golden_model() -> ServedModel:
    model, manifest = load_bundle(LocalStore(GOLDEN), "golden-logistic-regression")
    return ServedModel(
        "golden-logistic-regression", model, manifest, np.asarray(model.classes_), "now"
    )


def _client(tmp_path: Path, served: ServedModel | None, **overrides: Any) -> TestClient:
    settings = Settings(home=tmp_path / "home", max_text_chars=200, max_batch=5, **overrides)
    return TestClient(create_app(settings, holder=FakeHolder(served)))  # type: ignore[arg-type]


@pytest.fixture
def serving(tmp_path: Path, golden_model: ServedModel) -> Iterator[TestClient]:
    with _client(tmp_path, golden_model, admin_api_key=ADMIN_KEY) as client:
        yield client


def test_without_a_model_the_service_is_live_but_not_ready(tmp_path: Path) -> None:
    with _client(tmp_path, None) as client:
        assert client.get("/health").json()["model"] is None
        for response in (
            client.get("/ready"),
            client.post("/predict", json={"short_description": "clave"}),
            client.get("/monitoring/drift"),
        ):
            assert response.status_code == 503
            assert int(response.headers["retry-after"]) > 0
        assert (
            "no model loaded yet" in client.post("/predict", json={"short_description": "x"}).text
        )


def test_a_prediction_is_answered_and_logged(serving: TestClient, tmp_path: Path) -> None:
    response = serving.post("/predict", json={"short_description": "olvidé mi contraseña"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == "golden-logistic-regression"
    log = PredictionLog(tmp_path / "home" / "predictions.db")
    assert list(log.window()["request_id"]) == [body["request_id"]]
    log.close()


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"short_description": ""}, "short_description is empty"),
        ({"short_description": "\u200b \ufeff"}, "short_description is empty"),
        ({"short_description": "a" * 201}, "short_description is longer than 200"),
        ({"short_description": "ok", "close_notes": "b" * 201}, "close_notes is longer"),
        ({"short_description": "ok", "true_label": "c" * 201}, "true_label is longer"),
        ({"short_description": "ok", "extra": 1}, "extra"),
        ({"short_description": None}, "short_description"),
        ({}, "short_description"),
    ],
)
def test_bad_tickets_get_a_400_naming_the_field(
    serving: TestClient, body: dict, needle: str
) -> None:
    response = serving.post("/predict", json=body)
    assert response.status_code == 400 and needle in response.text


def test_batch_errors_name_the_ticket(serving: TestClient) -> None:
    too_many = {"tickets": [{"short_description": "hola"}] * 6}
    assert "maximum is 5" in serving.post("/predict/batch", json=too_many).text
    assert "tickets is empty" in serving.post("/predict/batch", json={"tickets": []}).text
    response = serving.post(
        "/predict/batch", json={"tickets": [{"short_description": "ok"}, {"short_description": ""}]}
    )
    assert response.status_code == 400 and "tickets[1].short_description" in response.text


def test_invalid_utf8_is_a_400(serving: TestClient) -> None:
    response = serving.post(
        "/predict",
        content=b'{"short_description": "\xff"}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400 and "UTF-8" in response.text


def test_feedback_errors(serving: TestClient) -> None:
    assert "feedback list is empty" in serving.post("/feedback", json=[]).text
    blank = serving.post("/feedback", json={"request_id": "r", "true_label": "  "})
    assert blank.status_code == 400 and "true_label is empty" in blank.text
    unknown = serving.post("/feedback", json={"request_id": "nope", "true_label": "x"})
    assert unknown.status_code == 404 and "nope" in unknown.text


def test_monitoring_windows_and_admin_key(serving: TestClient) -> None:
    response = serving.get("/monitoring/metrics", params={"window": "5 years"})
    assert response.status_code == 400 and "window" in response.text
    assert serving.get("/monitoring/metrics", params={"window": "1h"}).json()["count"] == 0
    assert serving.post("/monitoring/save-metrics").status_code == 401
    saved = serving.post("/monitoring/save-metrics", headers={"X-API-Key": ADMIN_KEY})
    assert saved.status_code == 200 and saved.json()["metrics"]["count"] == 0


def test_webhooks_without_a_secret_answer_503_with_retry_after(serving: TestClient) -> None:
    body = json.dumps({"reason": "because"})
    response = serving.post("/webhooks/retrain", content=body)
    assert response.status_code == 503 and "no secret" in response.text
    assert response.headers["retry-after"]
