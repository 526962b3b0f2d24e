"""Signed webhooks over real HTTP, emitting to a real Prefect server; two app instances share one
log (as two workers do), and one of them cannot reach Prefect."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from core.auth.signing import sign
from core.predlog import PredictionLog, PredictionRecord
from core.settings import Settings
from serving.app import create_app
from tests.integration.conftest import free_port, running

pytestmark = pytest.mark.integration
SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
NEXT_SECRET = "whsec_" + base64.b64encode(b"j" * 32).decode()


@pytest.fixture(scope="module")
def services(
    tmp_path_factory: pytest.TempPathFactory, prefect_api: str
) -> Iterator[tuple[str, str, str, Settings]]:
    home: Path = tmp_path_factory.mktemp("webhooks")
    secrets = (SecretStr(SECRET), SecretStr(NEXT_SECRET))
    settings = Settings(home=home, webhook_secrets=secrets, prefect_api_url=prefect_api)
    unreachable = f"http://127.0.0.1:{free_port()}/api"
    cut_off = Settings(home=home, webhook_secrets=secrets, prefect_api_url=unreachable)
    with running(create_app(settings)) as url, running(create_app(cut_off)) as cut_off_url:
        yield url, cut_off_url, prefect_api, settings


def _post(url: str, path: str, body: dict, webhook_id: str, **sign_args) -> httpx.Response:
    raw = json.dumps(body).encode()
    headers = {**sign([SECRET], raw, webhook_id, **sign_args), "content-type": "application/json"}
    return httpx.post(f"{url}{path}", content=raw, headers=headers, timeout=15)


def _retrain_events(api: str) -> list[dict]:
    body = {
        "filter": {
            "event": {"name": ["tickets.retrain.requested"]},
            "occurred": {"since": "2020-01-01T00:00:00Z"},
        }
    }
    return list(httpx.post(f"{api}/events/filter", json=body, timeout=10).json()["events"])


def _wait_for_event(api: str, event_id: str) -> dict | None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = [e for e in _retrain_events(api) if e["id"] == event_id]
        if found:
            return found[0]
        time.sleep(0.5)
    return None


def test_a_signed_retrain_request_emits_the_event_once(services) -> None:
    url, _, api, _ = services
    response = _post(url, "/webhooks/retrain", {"reason": "new product launched"}, "msg_retrain_1")
    assert response.status_code == 202, response.text
    event = _wait_for_event(api, response.json()["event_id"])
    assert event is not None and event["payload"]["reason"] == "new product launched"
    replay = _post(url, "/webhooks/retrain", {"reason": "new product launched"}, "msg_retrain_1")
    assert replay.status_code == 200 and replay.json()["duplicate"] is True
    events = [e for e in _retrain_events(api) if e["payload"].get("webhook_id") == "msg_retrain_1"]
    assert len(events) == 1


def test_unsigned_badly_signed_and_stale_requests_start_nothing(services) -> None:
    url, _, api, _ = services
    before = len(_retrain_events(api))
    raw = json.dumps({"reason": "x"}).encode()
    unsigned = httpx.post(f"{url}/webhooks/retrain", content=raw)
    assert unsigned.status_code == 401 and "missing" in unsigned.text
    forged = sign(["whsec_" + base64.b64encode(b"z" * 32).decode()], raw, "msg_forged")
    assert httpx.post(f"{url}/webhooks/retrain", content=raw, headers=forged).status_code == 401
    stale = _post(url, "/webhooks/retrain", {"reason": "x"}, "msg_stale", timestamp=1)
    assert stale.status_code == 401 and "tolerance" in stale.text
    malformed = _post(url, "/webhooks/retrain", {"why": "x"}, "msg_bad_body")
    assert malformed.status_code == 400 and "why" in malformed.text
    time.sleep(2)
    assert len(_retrain_events(api)) == before


def test_an_unreachable_prefect_api_answers_503_and_the_retry_is_accepted(services) -> None:
    url, cut_off_url, api, _ = services
    body = {"reason": "retry me"}
    failed = _post(cut_off_url, "/webhooks/retrain", body, "msg_retry")
    assert failed.status_code == 503 and "retry" in failed.text
    assert int(failed.headers["retry-after"]) > 0
    retried = _post(url, "/webhooks/retrain", body, "msg_retry")
    assert retried.status_code == 202, retried.text
    assert _wait_for_event(api, retried.json()["event_id"]) is not None
    stamp = {"webhook-timestamp": "1" * 400}
    raw = json.dumps(body).encode()
    oversized = httpx.post(
        f"{url}/webhooks/retrain", content=raw, headers={**sign([SECRET], raw, "m"), **stamp}
    )
    assert oversized.status_code == 401 and "ASCII digits" in oversized.text
    again = _post(cut_off_url, "/webhooks/retrain", body, "msg_retry")
    assert again.status_code == 200 and again.json()["duplicate"] is True


def test_closed_tickets_become_feedback(services) -> None:
    url, _, _, settings = services
    log = PredictionLog(settings.predictions_path())
    log.record(
        [
            PredictionRecord(
                request_id="req-closed-1",
                model_version="1",
                short_description="no puedo entrar",
                close_notes="",
                prediction="acceso_contrasenas",
                confidence=0.9,
                top_probabilities={"acceso_contrasenas": 0.9},
            )
        ]
    )
    body = {
        "tickets": [
            {"request_id": "req-closed-1", "true_label": "errores_portal"},
            {"request_id": "req-unknown", "true_label": "pagos_transferencias"},
        ]
    }
    response = _post(url, "/webhooks/tickets", body, "msg_tickets_1")
    assert response.status_code == 200, response.text
    assert response.json()["updated"] == 1
    assert response.json()["unknown_request_ids"] == ["req-unknown"]
    stored = log.window().set_index("request_id")
    assert stored.loc["req-closed-1", "true_label"] == "errores_portal"
    replay = _post(url, "/webhooks/tickets", body, "msg_tickets_1")
    assert replay.status_code == 200 and replay.json() == {
        "webhook_id": "msg_tickets_1",
        "duplicate": True,
    }
    flood = {"tickets": [{"request_id": f"r{i}", "true_label": "x"} for i in range(1001)]}
    refused = _post(url, "/webhooks/tickets", flood, "msg_tickets_2")
    assert refused.status_code == 400 and "maximum is 1000" in refused.text
    log.close()
