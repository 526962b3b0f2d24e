"""The service over real HTTP (uvicorn on loopback), with its model pulled from the S3 server."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from core.data.simulate import generate_tickets
from core.io.store import CHAMPION_KEY, open_store
from core.predlog import PredictionLog
from core.release.bundle import (
    bundle_key,
    champion_pointer,
    read_champion,
    serialize_model,
    swap_champion,
    write_bundle,
)
from core.release.manifest import Manifest, MlflowRef
from core.setting_groups import ServingSettings
from core.settings import Settings
from core.training.families import build_pipeline, default_params
from core.training.refit import reference_profile
from serving.app import create_app
from tests.integration.conftest import BUCKET, running

pytestmark = pytest.mark.integration
TEXT = ["short_description", "close_notes"]
ADMIN_KEY = "admin-s3cret-of-16-chars"
LABEL_KEY = "label-s3cret-of-16-chars"
LABELLED = {"X-API-Key": LABEL_KEY}
#: The module's service app (``service``), for tests that look at its state.
SERVICE_APP: dict[str, Any] = {}


def _publish(
    settings: Settings, frame: pd.DataFrame, bundle_id: str, version: str, c: float
) -> Manifest:
    params = {**default_params("linear_svm"), "C": c}
    model = build_pipeline("linear_svm", params, "spanish", seed=0)
    model.fit(frame[TEXT], frame["label"].to_numpy(dtype=object))
    probabilities = model.predict_proba(frame[TEXT])
    manifest = Manifest(
        bundle_id=bundle_id,
        family="linear_svm",
        metrics={"test_macro_f1": 0.8},
        mlflow=MlflowRef(model_version=version),
        reference_profile=reference_profile(model, frame, frame, probabilities, settings),
    )
    return write_bundle(open_store(settings), serialize_model(model), manifest)


def _promote(settings: Settings, manifest: Manifest) -> None:
    store = open_store(settings)
    _, token = read_champion(store)
    assert swap_champion(store, manifest, token)


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory, demo_frame: pd.DataFrame, s3_endpoint: str
) -> Iterator[tuple[str, Settings]]:
    home = tmp_path_factory.mktemp("serving")
    settings = Settings(
        home=home,
        store_url=f"s3://{BUCKET}/serving",
        s3_endpoint_url=s3_endpoint,
        serving=ServingSettings(
            model_poll_s=0.2, max_batch=50, max_text_chars=200, max_body_bytes=64 * 1024
        ),
        admin_api_key=ADMIN_KEY,
        label_api_keys=(LABEL_KEY,),
    )
    _promote(settings, _publish(settings, demo_frame, "v1", "1", 0.5))
    app = create_app(settings)
    SERVICE_APP["app"] = app
    with running(app) as url:
        yield url, settings


def test_ready_health_and_prediction(service) -> None:
    url, settings = service
    assert httpx.get(f"{url}/ready").status_code == 200
    health = httpx.get(f"{url}/health").json()
    assert health["model"]["model_version"] == "1" and health["model"]["family"] == "linear_svm"
    assert len(health["model"]["labels"]) == 9
    response = httpx.post(
        f"{url}/predict",
        json={
            "short_description": "Olvidé mi contraseña del portal",
            "close_notes": "se desbloquea usuario",
        },
    )
    assert response.status_code == 200
    body = response.json()
    assert body["prediction"] == "acceso_contrasenas"
    assert 0 < body["probability"] <= 1 and len(body["probabilities"]) == settings.serving.top_k
    assert body["probabilities"][0]["label"] == body["prediction"]
    assert body["model_version"] == "1" and body["request_id"]


def test_batch_keeps_order_and_feedback_is_logged(service) -> None:
    url, settings = service
    tickets = [
        {"short_description": "certificado tributario para declarar renta"},
        {"short_description": "no puedo ingresar, clave bloqueada"},
        {
            "short_description": "la transferencia no se ve reflejada",
            "true_label": "pagos_transferencias",
        },
    ]
    assert httpx.post(f"{url}/predict/batch", json={"tickets": tickets}).status_code == 401
    response = httpx.post(f"{url}/predict/batch", json={"tickets": tickets}, headers=LABELLED)
    assert response.status_code == 200
    predictions = response.json()["predictions"]
    assert [p["prediction"] for p in predictions] == [
        "documentos_tributarios",
        "acceso_contrasenas",
        "pagos_transferencias",
    ]
    ids = [p["request_id"] for p in predictions]
    feedback = httpx.post(
        f"{url}/feedback",
        json=[
            {"request_id": ids[0], "true_label": "certificados"},
            {"request_id": "nope", "true_label": "x"},
        ],
        headers=LABELLED,
    )
    assert feedback.status_code == 200 and feedback.json() == {
        "updated": 1,
        "unknown_request_ids": ["nope"],
    }
    unknown = {"request_id": "nope", "true_label": "x"}
    assert httpx.post(f"{url}/feedback", json=unknown, headers=LABELLED).status_code == 404
    assert httpx.post(f"{url}/feedback", json=unknown).status_code == 401
    log = PredictionLog(settings.predictions_path()).window().set_index("request_id")
    assert log.loc[ids[0], "true_label"] == "certificados"
    assert log.loc[ids[2], "true_label"] == "pagos_transferencias"
    assert log.loc[ids[1], "prediction"] == "acceso_contrasenas"


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (b'{"short_description": ""}', 400, "short_description"),
        (b'{"short_description": "   \\t\\n"}', 400, "short_description"),
        ('{"short_description": "\u200b\u200b\ufeff"}'.encode(), 400, "short_description"),
        (('{"short_description": "' + "a" * 201 + '"}').encode(), 400, "short_description"),
        (
            b'{"short_description": "ok", "close_notes": ' + b'"' + b"b" * 201 + b'"}',
            400,
            "close_notes",
        ),
        (b'{"short_description": "ok", "extra": 1}', 400, "extra"),
        (b'{"short_description": 5}', 400, "short_description"),
        (b'{"short_description": null}', 400, "short_description"),
        (b"{}", 400, "short_description"),
        (b'{"short_description": "\xff\xfe"}', 400, "UTF-8"),
        (b'{"short_description": ', 400, ""),
        (b"[1, 2]", 400, ""),
    ],
)
def test_bad_single_requests_get_a_400_naming_the_problem(
    service, body: bytes, status: int, field: str
) -> None:
    url, _ = service
    response = httpx.post(
        f"{url}/predict", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == status, response.text
    assert field in response.text


@pytest.mark.parametrize("path", ["/predict", "/predict/batch", "/explain"])
@pytest.mark.parametrize(
    "body",
    [
        b"[" * 1000 + b"]" * 1000,
        b'{"short_description": ' + b"[" * 1000 + b"]" * 1000 + b"}",
        b'{"tickets": ' + b"[" * 1000 + b"]" * 1000 + b"}",
    ],
)
def test_a_body_nested_too_deeply_gets_a_400_not_a_500(service, path: str, body: bytes) -> None:
    """2 KB of nested arrays made the JSON decoder give up with RecursionError: 500, unlogged."""
    url, _ = service
    response = httpx.post(
        f"{url}{path}", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert "nested too deeply" in response.json()["detail"]


def test_batch_limits_and_body_size(service) -> None:
    url, settings = service
    too_many = {"tickets": [{"short_description": "hola"}] * (settings.serving.max_batch + 1)}
    response = httpx.post(f"{url}/predict/batch", json=too_many)
    assert response.status_code == 400 and "maximum is 50" in response.text
    response = httpx.post(
        f"{url}/predict/batch",
        json={"tickets": [{"short_description": "ok"}, {"short_description": " "}]},
    )
    assert response.status_code == 400 and "tickets[1].short_description is empty" in response.text
    huge = b'{"short_description": "' + b"a" * (settings.serving.max_body_bytes + 10) + b'"}'
    assert (
        httpx.post(
            f"{url}/predict", content=huge, headers={"content-type": "application/json"}
        ).status_code
        == 413
    )


def test_hot_swap_without_failed_requests_and_corrupt_bundle_refused(
    service, demo_frame: pd.DataFrame
) -> None:
    url, settings = service
    failures: list[int] = []
    versions: set[str] = set()
    stop = threading.Event()

    def client() -> None:
        with httpx.Client() as http:
            while not stop.is_set():
                response = http.post(
                    f"{url}/predict", json={"short_description": "error en el portal"}
                )
                if response.status_code != 200:
                    failures.append(response.status_code)
                else:
                    versions.add(response.json()["model_version"])

    workers = [threading.Thread(target=client) for _ in range(4)]
    for worker in workers:
        worker.start()
    time.sleep(0.5)
    _promote(settings, _publish(settings, demo_frame, "v2", "2", 1.0))
    deadline = time.monotonic() + 30
    while (
        httpx.get(f"{url}/health").json()["model"]["model_version"] != "2"
        and time.monotonic() < deadline
    ):
        time.sleep(0.1)
    time.sleep(0.5)
    stop.set()
    for worker in workers:
        worker.join()
    assert failures == []
    assert versions == {"1", "2"}

    store = open_store(settings)
    _publish(settings, demo_frame, "v3", "3", 2.0)
    pointer = champion_pointer(store, "v3")  # the swap checks the model file: it is sound
    tampered = bytearray(store.get(bundle_key("v3", "model.skops")))
    tampered[len(tampered) // 2] ^= 0xFF
    store.put(bundle_key("v3", "model.skops"), bytes(tampered))  # then it rots
    _, token = read_champion(store)
    assert store.compare_and_put(CHAMPION_KEY, pointer.to_json(), token)
    admin = {"X-API-Key": ADMIN_KEY}
    deadline = time.monotonic() + 30
    while (
        httpx.get(f"{url}/health", headers=admin).json()["model_watch"]["failed_bundle_id"] is None
        and time.monotonic() < deadline
    ):
        time.sleep(0.1)
    health = httpx.get(f"{url}/health", headers=admin).json()
    assert health["model_watch"]["failed_bundle_id"] == "v3"
    assert health["model_watch"]["last_error_kind"] == "BundleError"
    assert "does not match its manifest" in health["model_watch"]["last_error"]
    assert health["model"]["model_version"] == "2"
    public = httpx.get(f"{url}/health").json()["model_watch"]
    assert public["last_error_kind"] == "BundleError" and "last_error" not in public
    assert (
        httpx.post(f"{url}/predict", json={"short_description": "clave bloqueada"}).json()[
            "model_version"
        ]
        == "2"
    )


def test_monitoring_metrics_reflect_predictions_and_feedback(service) -> None:
    url, _ = service
    before = httpx.get(f"{url}/monitoring/metrics", params={"window": "1h"}).json()
    tickets = [{"short_description": "clave bloqueada, no puedo ingresar"}] * 5
    ids = [
        p["request_id"]
        for p in httpx.post(f"{url}/predict/batch", json={"tickets": tickets}).json()["predictions"]
    ]
    httpx.post(
        f"{url}/feedback",
        json=[{"request_id": i, "true_label": "acceso_contrasenas"} for i in ids],
        headers=LABELLED,
    )
    after = httpx.get(f"{url}/monitoring/metrics", params={"window": "1h"}).json()
    assert after["count"] == before["count"] + 5
    assert after["feedback_count"] == before["feedback_count"] + 5
    assert after["label_distribution"]["acceso_contrasenas"] >= 5
    assert 0 < after["mean_confidence"] <= 1 and after["accuracy"] is not None
    response = httpx.get(f"{url}/monitoring/metrics", params={"window": "5 years"})
    assert response.status_code == 400 and "window" in response.text


def test_save_metrics_needs_the_admin_key(service) -> None:
    url, _ = service
    assert httpx.post(f"{url}/monitoring/save-metrics").status_code == 401
    wrong = httpx.post(f"{url}/monitoring/save-metrics", headers={"X-API-Key": "nope"})
    assert wrong.status_code == 401 and "X-API-Key" in wrong.text
    saved = httpx.post(f"{url}/monitoring/save-metrics", headers={"X-API-Key": ADMIN_KEY})
    assert saved.status_code == 200, saved.text
    body = saved.json()
    assert body["metrics"]["count"] > 0
    assert httpx.get(f"{url}/monitoring/saved-metrics").json()[body["day"]] == body["metrics"]
    bad_day = httpx.post(
        f"{url}/monitoring/save-metrics",
        params={"day": "yesterday"},
        headers={"X-API-Key": ADMIN_KEY},
    )
    assert bad_day.status_code == 400 and "day" in bad_day.text


def test_concurrent_single_predictions_are_micro_batched_and_all_logged(service) -> None:
    url, settings = service
    log = PredictionLog(settings.predictions_path())
    before = log.count()
    texts = [f"no me llega el codigo de verificacion {i}" for i in range(64)]

    def ask(text: str) -> dict:
        return httpx.post(f"{url}/predict", json={"short_description": text}).json()

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(ask, texts))
    assert all(answer["prediction"] == "acceso_contrasenas" for answer in answers)
    assert len({answer["request_id"] for answer in answers}) == 64
    stored = log.window().set_index("request_id")
    assert log.count() == before + 64
    assert set(stored.loc[[a["request_id"] for a in answers], "short_description"]) == set(texts)
    log.close()


def test_drift_report_of_the_served_model(service) -> None:
    from serving.lane_process import LANE_NICE

    url, _ = service
    tickets = generate_tickets(150, "short_texts", seed=11)
    for start in range(0, 150, 50):
        chunk = tickets.iloc[start : start + 50][TEXT].to_dict("records")
        assert httpx.post(f"{url}/predict/batch", json={"tickets": chunk}).status_code == 200
    # Forty at once: by default reports run in the lane's process, at a lower priority, and
    # concurrent calls share one computation. The first report starts that process (imports
    # included): more than httpx's 5 s default on a busy machine.
    lane = SERVICE_APP["app"].state["monitoring_lane"]
    computed = lane.computed
    with ThreadPoolExecutor(max_workers=40) as pool:
        answers = list(
            pool.map(
                lambda _: httpx.get(f"{url}/monitoring/drift?window=1h", timeout=120), range(40)
            )
        )
    response = answers[0]
    assert response.status_code == 200, response.text
    assert {a.status_code for a in answers} == {200} and len({a.text for a in answers}) == 1
    assert lane.computed == computed + 1
    (pid,) = lane.process_ids()
    expected = os.getpriority(os.PRIO_PROCESS, 0) + LANE_NICE
    assert pid != os.getpid() and os.getpriority(os.PRIO_PROCESS, pid) == expected
    report = response.json()
    assert report["n_predictions"] >= 150
    assert report["drift_detected"] and "text_length_ks" in report["fired"]
    names = {test["name"] for test in report["tests"]}
    assert {"text_length_ks", "predicted_class_psi", "vocabulary_js", "oov_rate"} <= names
    assert httpx.get(f"{url}/monitoring/drift", params={"window": "x"}).status_code == 400


def test_monitoring_calls_never_starve_predictions(tmp_path: Path) -> None:
    """40 drift reports requested at once while their computation cannot finish (the log's read
    side held): predictions still answer, because monitoring has its own lane; the 40 identical
    calls are computed once; reports of distinct windows beyond the lane's queue get 503 with
    Retry-After instead of piling up."""
    from tests.integration.conftest import publish_profiled_model

    # Threads: the lane's fallback, and the one where the log's read side can be held from here.
    settings = Settings(
        home=tmp_path / "home", serving=ServingSettings(monitoring_isolation="thread")
    )
    publish_profiled_model(settings)
    app = create_app(settings)
    with running(app) as url:
        tickets = generate_tickets(150, "baseline", seed=9)
        rows = [{"short_description": t, "close_notes": ""} for t in tickets["short_description"]]
        assert httpx.post(f"{url}/predict/batch", json={"tickets": rows}).status_code == 200
        lane = app.state["monitoring_lane"]
        log = app.state["log"]
        with ThreadPoolExecutor(max_workers=60) as pool, log.dialect.read():
            same = [pool.submit(httpx.get, f"{url}/monitoring/drift?window=1h", timeout=120)]
            same += [
                pool.submit(httpx.get, f"{url}/monitoring/drift?window=60m", timeout=120)
                for _ in range(39)
            ]
            deadline = time.monotonic() + 30
            while lane.busy < 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert lane.busy == 1, "one computation for forty identical calls"
            windows = [f"{minutes}m" for minutes in range(120, 140)]
            distinct = [
                pool.submit(httpx.get, f"{url}/monitoring/drift?window={w}", timeout=120)
                for w in windows
            ]
            deadline = time.monotonic() + 30
            while lane.busy < lane.threads + lane.queue and time.monotonic() < deadline:
                time.sleep(0.05)
            for i in range(20):  # all while the reports are stuck
                answer = httpx.post(
                    f"{url}/predict", json={"short_description": f"clave {i}"}, timeout=10
                )
                assert answer.status_code == 200, answer.text
            refused = [f.result() for f in distinct if f.done()]
            assert refused and all(r.status_code == 503 for r in refused)
            assert all(r.headers["Retry-After"] for r in refused)
        reports = [future.result() for future in same]
        assert {r.status_code for r in reports} == {200}
        assert len({r.json()["since"] for r in reports}) == 1, "one shared report"
        later = [f.result() for f in distinct]
        assert sum(r.status_code == 200 for r in later) == lane.queue
        assert lane.computed == 1 + lane.queue
