"""The service's handlers in process (Litestar's TestClient) with a holder that serves a golden
bundle or nothing: error paths and answers without a real server."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from litestar.testing import TestClient

from core.io.store import LocalStore
from core.predlog import PredictionLog
from core.release.bundle import load_bundle
from core.setting_groups import ServingSettings
from core.settings import Settings
from serving.app import create_app
from serving.model_holder import ServedModel, WatchStatus

GOLDEN = Path(__file__).resolve().parents[2] / "fixtures" / "golden"
ADMIN_KEY = "a-long-admin-key-for-tests"
LABEL_KEY = "a-long-label-key-for-tests"


class FakeHolder:
    """What the app needs from a holder: the current model, the watch's status, a refresh."""

    def __init__(self, served: ServedModel | None) -> None:
        self.current = served
        self.status = WatchStatus()
        self.challenger: ServedModel | None = None
        self.rollout = None
        self.challenger_status = WatchStatus()

    def refresh(self) -> bool:
        return False

    def next_delay(self) -> float:
        return 3600.0


@pytest.fixture(scope="module")
def golden_model() -> ServedModel:
    model, manifest = load_bundle(LocalStore(GOLDEN), "golden-logistic-regression")
    return ServedModel(
        "golden-logistic-regression", model, manifest, np.asarray(model.classes_), "now"
    )


def _client(tmp_path: Path, served: ServedModel | None, **overrides: Any) -> TestClient:
    # explain_isolation: the fake holder's model is in no store a helper process could load.
    limits = ServingSettings(max_text_chars=200, max_batch=5, explain_isolation="thread")
    settings = Settings(home=tmp_path / "home", serving=limits, **overrides)
    return TestClient(create_app(settings, holder=FakeHolder(served)))  # type: ignore[arg-type]


@pytest.fixture
def serving(tmp_path: Path, golden_model: ServedModel) -> Iterator[TestClient]:
    with _client(
        tmp_path, golden_model, admin_api_key=ADMIN_KEY, label_api_keys=(LABEL_KEY,)
    ) as client:
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


def test_a_model_with_the_sentence_encoder_is_served_and_says_so(tmp_path: Path) -> None:
    model, manifest = load_bundle(LocalStore(GOLDEN), "golden-logistic-regression-encoder")
    served = ServedModel("with-encoder", model, manifest, np.asarray(model.classes_), "now")
    with _client(tmp_path, served) as client:
        answers = [
            client.post("/predict", json={"short_description": text})
            for text in ("no puedo entrar a mi cuenta", "la impresora no imprime")
        ]
        batch = client.post(
            "/predict/batch", json={"tickets": [{"short_description": "vpn caída"}] * 3}
        )
        health = client.get("/health").json()
    assert [a.status_code for a in answers] == [200, 200] and batch.status_code == 200
    assert all(a.json()["prediction"] in manifest.labels for a in answers)
    assert health["model"]["encoder"] == manifest.encoder["name"]  # type: ignore[index]


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


LABELLED = {"X-API-Key": LABEL_KEY}


def test_feedback_errors(serving: TestClient) -> None:
    assert "feedback list is empty" in serving.post("/feedback", json=[], headers=LABELLED).text
    blank = serving.post(
        "/feedback", json={"request_id": "r", "true_label": "  "}, headers=LABELLED
    )
    assert blank.status_code == 400 and "true_label is empty" in blank.text
    unknown = serving.post(
        "/feedback", json={"request_id": "nope", "true_label": "x"}, headers=LABELLED
    )
    assert unknown.status_code == 404 and "nope" in unknown.text
    limit = 5  # the fixture's max_batch
    too_many = [{"request_id": f"r{i}", "true_label": "x"} for i in range(limit + 1)]
    refused = serving.post("/feedback", json=too_many, headers=LABELLED)
    assert refused.status_code == 400 and f"maximum is {limit}" in refused.text


def test_labels_need_a_label_key(serving: TestClient, tmp_path: Path) -> None:
    labelled = {"short_description": "clave", "true_label": "acceso_contrasenas"}
    for headers in ({}, {"X-API-Key": "a-wrong-key-of-enough-length"}, {"X-API-Key": ADMIN_KEY}):
        assert serving.post("/predict", json=labelled, headers=headers).status_code == 401
        batch = serving.post("/predict/batch", json={"tickets": [labelled]}, headers=headers)
        assert batch.status_code == 401
        response = serving.post(
            "/feedback", json={"request_id": "r", "true_label": "x"}, headers=headers
        )
        assert response.status_code == 401 and "X-API-Key" in response.text
    assert serving.post("/predict", json=labelled, headers=LABELLED).status_code == 200
    assert serving.post("/predict", json={"short_description": "clave"}).status_code == 200
    log = PredictionLog(tmp_path / "home" / "predictions.db")
    assert log.window()["true_label"].dropna().tolist() == ["acceso_contrasenas"]
    log.close()


def test_without_a_label_key_configured_labels_are_refused_with_how_to_enable(
    tmp_path: Path, golden_model: ServedModel
) -> None:
    with _client(tmp_path, golden_model) as client:
        labelled = {"short_description": "clave", "true_label": "acceso_contrasenas"}
        response = client.post("/predict", json=labelled, headers={"X-API-Key": "x" * 20})
        assert response.status_code == 403 and "TICKETS_LABEL_API_KEYS" in response.text
        feedback = client.post("/feedback", json={"request_id": "r", "true_label": "x"})
        assert feedback.status_code == 403 and "TICKETS_LABEL_API_KEYS" in feedback.text
        assert client.post("/monitoring/save-metrics").status_code == 403


@pytest.mark.parametrize(
    ("label", "status", "stored"),
    [
        ("  pagos_transferencias \n", 200, "pagos_transferencias"),
        ("cafe\u0301", 200, "caf\u00e9"),  # NFC: the combining accent joins its letter
        ("\u200b\u200b", 400, None),
        (" \t ", 400, None),
        ("x" * 101, 400, None),
        ("mala\x00etiqueta", 400, None),
    ],
)
def test_labels_are_normalised_and_checked(
    serving: TestClient, tmp_path: Path, label: str, status: int, stored: str | None
) -> None:
    answer = serving.post("/predict", json={"short_description": "clave"}).json()
    response = serving.post(
        "/feedback",
        json={"request_id": answer["request_id"], "true_label": label},
        headers=LABELLED,
    )
    assert response.status_code == status, response.text
    if status == 400:
        assert "true_label" in response.text
    log = PredictionLog(tmp_path / "home" / "predictions.db")
    row = log.window().set_index("request_id").loc[answer["request_id"]]
    assert (row["true_label"] if stored else None) == stored
    log.close()


@pytest.mark.parametrize("field", ["short_description", "close_notes"])
def test_characters_no_backend_can_store_are_refused(serving: TestClient, field: str) -> None:
    """NUL: PostgreSQL refuses it in text, so both backends refuse it up front, naming the field.
    A lone surrogate is not valid JSON text: the decoder refuses the body."""
    for bad, needle in (("\x00", "cannot be stored"), ("\ud800", "surrogate")):
        raw = json.dumps({"short_description": "clave", field: f"hola{bad}mundo"}).encode()
        response = serving.post(
            "/predict", content=raw, headers={"content-type": "application/json"}
        )
        assert response.status_code == 400 and needle in response.text
        if bad == "\x00":
            assert field in response.text


def test_labels_outside_the_served_model_are_counted(serving: TestClient) -> None:
    ids = [
        serving.post("/predict", json={"short_description": f"clave {i}"}).json()["request_id"]
        for i in range(3)
    ]
    labels = ["acceso_contrasenas", "fraude_nuevo", "fraude_nuevo"]
    serving.post(
        "/feedback",
        json=[{"request_id": i, "true_label": label} for i, label in zip(ids, labels, strict=True)],
        headers=LABELLED,
    )
    metrics = serving.get("/monitoring/metrics", params={"window": "1h"}).json()
    assert metrics["feedback_count"] == 3 and metrics["feedback_labels_outside_model"] == 2


def test_health_shows_kinds_to_everyone_and_texts_to_admins(
    tmp_path: Path, golden_model: ServedModel
) -> None:
    holder = FakeHolder(golden_model)
    holder.status.consecutive_failures = 2
    holder.status.last_error_kind = "TransientStoreError"
    holder.status.last_error = "cannot read s3://secret-bucket/models/champion.json: timeout"
    settings = Settings(home=tmp_path / "home", admin_api_key=ADMIN_KEY)
    with TestClient(create_app(settings, holder=holder)) as client:  # type: ignore[arg-type]
        public = client.get("/health")
        assert public.json()["model_watch"]["last_error_kind"] == "TransientStoreError"
        assert public.json()["model_watch"]["consecutive_failures"] == 2
        assert "secret-bucket" not in public.text and str(tmp_path) not in public.text
        admin = client.get("/health", headers={"X-API-Key": ADMIN_KEY}).json()
        assert "secret-bucket" in admin["model_watch"]["last_error"]


def test_ready_needs_a_log_that_takes_writes(tmp_path: Path, golden_model: ServedModel) -> None:
    with _client(tmp_path, golden_model, ready_cache_s=0, prediction_log_wait_s=0.5) as client:
        assert client.get("/ready").status_code == 200
        log_path = tmp_path / "home" / "predictions.db"
        blocker = sqlite3.connect(log_path, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")  # another process holding the write lock
        try:
            response = client.get("/ready")
            assert response.status_code == 503 and response.headers["retry-after"]
            assert response.json()["prediction_log"]["error_kind"] == "LogUnavailableError"
            predict = client.post("/predict", json={"short_description": "clave"})
            assert predict.status_code == 503 and predict.headers["retry-after"]
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert client.get("/ready").status_code == 200
        assert client.post("/predict", json={"short_description": "clave"}).status_code == 200


def test_monitoring_windows_and_admin_key(serving: TestClient) -> None:
    response = serving.get("/monitoring/metrics", params={"window": "5 years"})
    assert response.status_code == 400 and "window" in response.text
    assert serving.get("/monitoring/metrics", params={"window": "1h"}).json()["count"] == 0
    assert serving.post("/monitoring/save-metrics").status_code == 401
    saved = serving.post("/monitoring/save-metrics", headers={"X-API-Key": ADMIN_KEY})
    too_long = serving.get("/monitoring/metrics", params={"window": "32d"})
    assert too_long.status_code == 400 and "31d" in too_long.text
    assert saved.status_code == 200 and saved.json()["metrics"]["count"] == 0


def test_webhooks_without_a_secret_answer_503_with_retry_after(serving: TestClient) -> None:
    body = json.dumps({"reason": "because"})
    response = serving.post("/webhooks/retrain", content=body)
    assert response.status_code == 503 and "no secret" in response.text
    assert response.headers["retry-after"]


def test_metrics_show_the_latest_drift_report(serving: TestClient, tmp_path: Path) -> None:
    before = serving.get("/metrics")
    assert before.status_code == 200 and "tickets_drift_detected" not in before.text
    log = PredictionLog(Settings(home=tmp_path / "home").predictions_path())
    tests = [
        {"name": "label_shift", "statistic": 0.31, "threshold": 0.2, "verdict": "drift"},
        {"name": "confidence_ks", "statistic": 0.05, "threshold": 0.1, "verdict": "ok"},
    ]
    for at, fired in (("2026-11-30T09:00:00+00:00", False), ("2026-11-30T10:00:00+00:00", True)):
        report = {"drift_detected": fired, "drift_score": 0.5 if fired else 0.0, "tests": tests}
        log.record_drift_report(at, "3", None, report, None)
    log.close()
    text = serving.get("/metrics").text
    assert 'tickets_drift_test_statistic{test="label_shift"} 0.31' in text
    assert 'tickets_drift_test_threshold{test="confidence_ks"} 0.1' in text
    assert 'tickets_drift_test_fired{test="label_shift"} 1.0' in text
    assert 'tickets_drift_test_fired{test="confidence_ks"} 0.0' in text
    assert "tickets_drift_detected 1.0" in text and "tickets_drift_score 0.5" in text
    assert "tickets_drift_checked_timestamp_seconds 1.7960328e+09" in text


def test_explanations_beyond_the_queue_are_refused_at_once_with_retry_after(
    serving: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One explanation runs, ``EXPLAIN_QUEUE`` wait; the next is refused (503, Retry-After)
    instead of piling up work and memory, and /predict answers throughout."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    import serving.explain as explain_module
    from serving import metrics

    release = threading.Event()
    real = explain_module.explain

    def slow(*args: Any, **kwargs: Any) -> Any:
        release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(explain_module, "explain", slow)
    body = {"short_description": "no puedo entrar al portal"}
    limiter = explain_module.EXPLAIN_LIMITER
    refusals = metrics.EXPLAIN_REFUSED._value.get()
    with ThreadPoolExecutor(explain_module.EXPLAIN_QUEUE + 1) as pool:
        admitted = [
            pool.submit(serving.post, "/explain", json=body)
            for _ in range(explain_module.EXPLAIN_QUEUE + 1)
        ]
        deadline = time.monotonic() + 20
        while limiter.statistics().tasks_waiting < explain_module.EXPLAIN_QUEUE:
            assert time.monotonic() < deadline, "the explanations never queued"
            time.sleep(0.02)
        refused = serving.post("/explain", json=body)
        assert refused.status_code == 503 and int(refused.headers["retry-after"]) > 0
        assert "too many explanations" in refused.text
        assert serving.post("/predict", json=body).status_code == 200
        release.set()
        assert [f.result().status_code for f in admitted] == [200] * len(admitted)
    assert metrics.EXPLAIN_REFUSED._value.get() == refusals + 1


def test_a_process_serves_only_the_routes_it_is_for(
    tmp_path: Path, golden_model: ServedModel
) -> None:
    """The public prediction service holds no Prefect credential: the webhooks, which send
    Prefect events, are served by a process of their own (TICKETS_SERVE_ROUTES)."""
    body = {"short_description": "no puedo entrar"}

    def client(routes: str) -> TestClient:
        settings = Settings(home=tmp_path / routes, serving=ServingSettings(serve_routes=routes))
        return TestClient(create_app(settings, holder=FakeHolder(golden_model)))  # type: ignore[arg-type]

    with client("api") as api:
        assert api.post("/predict", json=body).status_code == 200
        assert api.post("/webhooks/retrain", json={}).status_code == 404
        assert api.get("/ready").status_code == 200
    with client("webhooks") as hooks:
        assert hooks.post("/predict", json=body).status_code == 404  # the fast path too
        assert hooks.post("/predict/batch", json={"tickets": [body]}).status_code == 404
        assert hooks.post("/webhooks/retrain", json={}).status_code != 404
        assert hooks.get("/livez").status_code == 200
