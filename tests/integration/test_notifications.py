"""Notifications end to end: the automations of deployments/automations.yaml on a real Prefect
server, fired by the events the project's own tasks emit and by a real failed flow run, deliver
their messages to a local Slack-compatible HTTP receiver, a local SMTP server (aiosmtpd) and a
local JSON webhook receiver. Slack and the mail relay are the only stand-ins: they are outside
the machine."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from core.monitoring.drift import DriftReport, DriftTest
from core.records import RetrainDecision
from core.release.manifest import Manifest, MlflowRef
from core.release.promotion import PromotionOutcome
from core.setting_groups import NotifySettings, SmtpSettings
from core.settings import Settings
from tests.integration.conftest import free_port

pytestmark = pytest.mark.integration
DASHBOARD = "http://tickets.example:8000/dashboard"
PREFECT_UI = "http://prefect.example:4200"


class Receiver:
    """A local HTTP server that keeps every JSON body POSTed to it, by path."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                received.append((self.path, json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [body for where, body in self.received if where == path]


class Mailbox:
    """aiosmtpd's handler protocol: keeps every message delivered."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiving = Receiver()
    yield receiving
    receiving.server.shutdown()


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    from aiosmtpd.controller import Controller

    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield box, controller.port
    controller.stop()


def _wait(what: str, check: Callable[[], bool], timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _announce(settings: Settings) -> None:
    """Inside a flow run, as in the monitor and retrain flows: drift on model 7 with two fired
    tests and a retrain requested, then model 8 promoted over 7 with a gain and its interval."""
    from prefect import flow

    from tasks.monitoring import emit_drift_event
    from tasks.publishing import announce_promotion

    report = DriftReport(
        tests=[
            DriftTest("vocabulary_js", 0.31, 0.05, "drift", "new words", 0.001),
            DriftTest("predicted_class_psi", 0.42, 0.25, "drift", "mix moved", 0.002),
            DriftTest("text_length_ks", 0.02, 0.1, "no drift", "", 0.6),
        ],
        n_predictions=900,
        n_feedback=0,
        drift_score=0.667,
        drift_score_threshold=0.5,
        drift_detected=True,
        reasons=["vocabulary_js: palabras nuevas «cripto», «billetera»"],
    )
    decision = RetrainDecision(
        "d-1", "2026-11-30T10:00:00+00:00", "7", ("vocabulary_js",), "requested", "drift", "monitor"
    )
    manifest = Manifest(bundle_id="b8", family="linear_svm", mlflow=MlflowRef(model_version="8"))
    outcome = PromotionOutcome(
        promoted=True,
        reason="gain 0.0310 meets the margin and the interval excludes 0",
        champion_bundle_id="b7",
        challenger_macro_f1=0.912,
        champion_macro_f1=0.881,
        gain=0.031,
        gain_ci=(0.012, 0.05),
        champion_version="7",
    )

    @flow(name="notification-check")
    def announce() -> None:
        emit_drift_event(report, "7", "24h", decision, retrain_in_flow=False)
        announce_promotion(settings, manifest, outcome)

    announce()


def test_drift_promotion_and_a_failed_run_reach_slack_email_and_the_webhook(
    prefect_api: str,
    tmp_path: Path,
    receiver: Receiver,
    mailbox: tuple[Mailbox, int],
) -> None:
    from prefect import get_client

    from deployments.notifications import apply
    from flows.train import train

    box, smtp_port = mailbox
    settings = Settings(
        home=tmp_path,
        notify=NotifySettings(
            slack_url=SecretStr(f"{receiver.url}/slack"),
            webhook_url=SecretStr(f"{receiver.url}/hook"),
            email_to=("soporte@example.org", "ml@example.org"),
            email_from="tickets@example.org",
            dashboard_url=DASHBOARD,
            prefect_ui_url=PREFECT_UI,
        ),
        smtp=SmtpSettings(host="127.0.0.1", port=smtp_port, security="none"),
    )
    first = apply(settings)
    again = apply(settings)  # replaces by name: one automation each
    assert first == again and len(first.automations) == 6
    with get_client(sync_client=True) as client:
        for name in first.automations:
            assert len(client.read_automations_by_name(name)) == 1
    time.sleep(2)  # the trigger service picks up new automations

    _announce(settings)
    with pytest.raises(Exception, match="no training data"):
        train(settings=settings)

    def everything_arrived() -> bool:
        return (
            len(receiver.bodies("/slack")) >= 3
            and len(receiver.bodies("/hook")) >= 3
            and len(box.messages) >= 3
        )

    _wait("3 messages on each channel", everything_arrived)
    hooks = {body["event"]: body for body in receiver.bodies("/hook")}
    assert set(hooks) == {
        "tickets.drift.detected",
        "tickets.model.promoted",
        "prefect.flow-run.Failed",
    }

    drift = hooks["tickets.drift.detected"]
    assert drift["model_version"] == "7"
    assert drift["fired"] == ["vocabulary_js", "predicted_class_psi"]
    assert drift["reasons"] == ["vocabulary_js: palabras nuevas «cripto», «billetera»"]
    assert drift["dashboard_url"] == DASHBOARD
    assert drift["prefect_run_url"].startswith(f"{PREFECT_UI}/runs/flow-run/")
    assert "vocabulary_js, predicted_class_psi" in drift["subject"]

    promoted = hooks["tickets.model.promoted"]
    assert (promoted["model_version"], promoted["champion_version"]) == ("8", "7")
    assert promoted["gain"] == pytest.approx(0.031)
    assert promoted["gain_ci"] == pytest.approx([0.012, 0.05])
    assert "+0.0310" in promoted["subject"]
    assert "(95% interval +0.0120 to +0.0500)" in promoted["text"]

    failed = hooks["prefect.flow-run.Failed"]
    assert failed["flow"] == "train" and failed["state"] == "Failed"
    assert "no training data" in failed["text"]
    assert failed["prefect_run_url"].startswith(f"{PREFECT_UI}/runs/flow-run/")

    slack = [body["text"] for body in receiver.bodies("/slack")]
    assert any("Drift on model 7" in text and DASHBOARD in text for text in slack)
    assert any("Model 8 (linear_svm) promoted" in text and "+0.0310" in text for text in slack)
    assert any("(train) Failed" in text for text in slack)

    subjects = {str(message["Subject"]): message for message in box.messages}
    drift_mail = next(m for s, m in subjects.items() if s.startswith("Drift on model 7"))
    assert drift_mail["To"] == "soporte@example.org, ml@example.org"
    text = drift_mail.get_payload(decode=True).decode("utf-8")  # type: ignore[union-attr]
    assert "«cripto», «billetera»" in text, "UTF-8 as it is"
    assert f"Prefect run: {PREFECT_UI}/runs/flow-run/" in text and DASHBOARD in text
    assert any("promoted" in s and "+0.0310" in s for s in subjects)
    assert any("(train) Failed" in s for s in subjects)
