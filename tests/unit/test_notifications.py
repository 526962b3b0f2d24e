"""The notification automations as made from deployments/automations.yaml: which channels the
settings configure, what each trigger matches, and what each message says once Prefect's own
template engine renders it (the one its server uses) for events shaped as the project emits them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest
from prefect.server.events.schemas.events import ReceivedEvent
from prefect.server.utilities.user_templates import render_user_template_sync
from pydantic import SecretStr

from core import events
from core.errors import ConfigurationError
from core.setting_groups import NotifySettings, SmtpSettings
from core.settings import Settings
from deployments.notifications import (
    EMAIL_BLOCK,
    SLACK_BLOCK,
    WEBHOOK_BLOCK,
    Notice,
    automation_spec,
    configured_channels,
    load_notices,
    prefect_ui_url,
)

DASHBOARD = "http://tickets.example/dashboard"
PREFECT_UI = "http://prefect.example"
RUN = {"id": "3f0b2c1e-0000-4000-8000-000000000001", "name": "calm-otter"}


def _notices() -> dict[str, Notice]:
    return {notice.name: notice for notice in load_notices(DASHBOARD, PREFECT_UI)}


def _event(name: str, resource: dict[str, str], payload: dict[str, Any]) -> ReceivedEvent:
    return ReceivedEvent(
        occurred=datetime.now(UTC),
        event=name,
        resource=resource,
        payload=payload,
        id=uuid4(),
    )


def _render(template: str, event: ReceivedEvent, **objects: Any) -> str:
    context = {"event": event, "automation": {"name": "tickets"}, "flow_run": RUN, **objects}
    return render_user_template_sync(template, context)


DRIFT = {
    "window": "24h",
    "drift_score": 0.6667,
    "fired": ["vocabulary_js", "predicted_class_psi"],
    "reasons": ["vocabulary_js: «cripto» <nuevo>", "predicted_class_psi: 0.42 > 0.25"],
    "decision_id": "d-1",
    "retrain": "requested",
}
PROMOTION = {
    "challenger_version": "8",
    "champion_version": "7",
    "family": "linear_svm",
    "challenger_macro_f1": 0.912,
    "champion_macro_f1": 0.881,
    "gain": 0.031,
    "gain_ci": [0.012, 0.05],
    "promoted": True,
    "reason": 'gain meets the margin; "quoted"',
}


def test_channels_come_from_settings() -> None:
    assert configured_channels(Settings()) == []
    everything = Settings(
        notify=NotifySettings(
            slack_url=SecretStr("https://hooks.slack.com/services/T/B/C"),
            email_to="ops@example.org, ml@example.org",
            webhook_url=SecretStr("https://hooks.example.org/tickets"),
        ),
        smtp=SmtpSettings(host="smtp.example.org"),
    )
    assert everything.notify.email_to == ("ops@example.org", "ml@example.org")
    assert [c.block for c in configured_channels(everything)] == [
        SLACK_BLOCK,
        EMAIL_BLOCK,
        WEBHOOK_BLOCK,
    ]
    with pytest.raises(ConfigurationError, match="TICKETS_SMTP_HOST"):
        configured_channels(Settings(notify=NotifySettings(email_to=("ops@example.org",))))
    with pytest.raises(ValueError, match="not an e-mail address"):
        NotifySettings(email_to=("ops at example.org",))


def test_run_links_default_to_the_api_address() -> None:
    assert prefect_ui_url(Settings(), "http://127.0.0.1:4200/api") == "http://127.0.0.1:4200"
    assert (
        prefect_ui_url(Settings(notify=NotifySettings(prefect_ui_url="https://p.example/")), None)
        == "https://p.example"
    )


def test_links_that_would_break_a_template_are_refused() -> None:
    for url in ("javascript:alert(1)", "http://x/{{ secrets }}", "http://x/a b"):
        with pytest.raises(ConfigurationError, match="plain http"):
            load_notices(url, PREFECT_UI)


def test_the_triggers_match_what_the_project_emits() -> None:
    notices = _notices()
    assert set(notices) == {
        "tickets-drift-detected",
        "tickets-model-promoted",
        "tickets-model-rejected",
        "tickets-model-rolled-back",
        "tickets-canary-rolled-back",
        "tickets-flow-run-failed",
    }
    expected = set().union(*(set(n.trigger["expect"]) for n in notices.values()))
    assert set(events.NOTIFIED_EVENTS) <= expected
    assert expected - set(events.NOTIFIED_EVENTS) == {
        "prefect.flow-run.Failed",
        "prefect.flow-run.Crashed",
    }
    failed = notices["tickets-flow-run-failed"].trigger
    assert sorted(failed["match_related"]["prefect.resource.name"]) == sorted(events.FLOW_NAMES)
    drift = notices["tickets-drift-detected"].trigger["match"]
    allowed = drift[events.RETRAIN_LABEL]
    for label, told in (
        (events.RETRAIN_PENDING, True),
        (events.RETRAIN_IN_FLOW, True),
        (events.RETRAIN_SUPPRESSED, False),
    ):
        resource = events.model_resource("7", label)
        assert (resource[events.RETRAIN_LABEL] in allowed) is told


def test_the_drift_message_names_the_model_the_tests_and_the_links() -> None:
    notice = _notices()["tickets-drift-detected"]
    event = _event(events.DRIFT_DETECTED, events.model_resource("7", "pending"), DRIFT)
    subject = _render(notice.subject, event)
    assert subject == "Drift on model 7: vocabulary_js, predicted_class_psi"
    text = _render(notice.text(), event)
    assert "version 7 (window 24h, drift score 0.667)" in text
    assert "- vocabulary_js: «cripto» <nuevo>" in text, "plain text, as written"
    assert f"Prefect run: {PREFECT_UI}/runs/flow-run/{RUN['id']}" in text
    assert f"Dashboard: {DASHBOARD}" in text
    payload = json.loads(_render(notice.json_payload(), event))
    assert payload["event"] == events.DRIFT_DETECTED
    assert payload["fired"] == DRIFT["fired"] and payload["reasons"] == DRIFT["reasons"]
    assert payload["subject"] == subject and payload["text"] == text.strip()
    assert payload["dashboard_url"] == DASHBOARD


def test_promotion_messages_give_the_gain_and_its_interval() -> None:
    notices = _notices()
    resource = {"prefect.resource.id": "tickets.model.8", "model_version": "8"}
    promoted = _event(events.MODEL_PROMOTED, resource, PROMOTION)
    notice = notices["tickets-model-promoted"]
    assert _render(notice.subject, promoted) == (
        "Model 8 (linear_svm) promoted: macro-F1 gain +0.0310"
    )
    text = _render(notice.text(), promoted)
    assert "is now the champion, replacing version 7" in text
    assert "0.9120 against 0.8810" in text
    assert "Gain: +0.0310 (95% interval +0.0120 to +0.0500)" in text
    payload = json.loads(_render(notice.json_payload(), promoted))
    assert payload["gain_ci"] == [0.012, 0.05] and payload["reason"] == PROMOTION["reason"]

    first = {**PROMOTION, "champion_version": None, "champion_macro_f1": None, "gain": None}
    first_text = _render(notice.text(), _event(events.MODEL_PROMOTED, resource, first))
    assert "replacing" not in first_text and "Gain" not in first_text

    rejected = notices["tickets-model-rejected"]
    lower = {**PROMOTION, "gain": -0.004, "gain_ci": [-0.02, 0.01], "promoted": False}
    event = _event(events.MODEL_REJECTED, resource, lower)
    assert _render(rejected.subject, event).endswith("not promoted: macro-F1 gain -0.0040")
    assert "version 7 stays the champion" in _render(rejected.text(), event)


def test_rollback_messages_name_both_versions_and_why() -> None:
    notices = _notices()
    resource = {"prefect.resource.id": "tickets.model.6", "model_version": "6"}
    payload = {"champion_version": "7", "reason": "operator: answers about VPN went wrong"}
    event = _event(events.MODEL_ROLLED_BACK, resource, payload)
    notice = notices["tickets-model-rolled-back"]
    assert _render(notice.subject, event) == "Rolled back to model 6 from 7"
    assert "answers about VPN went wrong" in _render(notice.text(), event)
    canary = {
        "champion_version": "7",
        "canary_rows": 812,
        "reasons": ["canary low-confidence share 0.610 vs champion 0.120 (margin 0.1)"],
    }
    event = _event(events.CANARY_ROLLED_BACK, {**resource, "model_version": "8"}, canary)
    notice = notices["tickets-canary-rolled-back"]
    assert _render(notice.subject, event) == (
        "Canary 8 rolled back: canary low-confidence share 0.610 vs champion 0.120 (margin 0.1)"
    )
    text = _render(notice.text(), event)
    assert "answered 812 tickets" in text and "- canary low-confidence share 0.610" in text
    assert json.loads(_render(notice.json_payload(), event))["reasons"] == canary["reasons"]


def test_the_failure_message_names_the_flow_the_state_and_why() -> None:
    notice = _notices()["tickets-flow-run-failed"]
    run = {**RUN, "state": {"name": "Failed", "message": "Flow run encountered an exception."}}
    event = _event(
        "prefect.flow-run.Failed", {"prefect.resource.id": f"prefect.flow-run.{RUN['id']}"}, {}
    )
    objects = {"flow_run": run, "flow": {"name": "monitor"}, "deployment": {"name": "hourly"}}
    assert _render(notice.subject, event, **objects) == "Flow run calm-otter (monitor) Failed"
    text = _render(notice.text(), event, **objects)
    assert "entered Failed (deployment hourly)" in text
    assert "Flow run encountered an exception." in text
    payload = json.loads(_render(notice.json_payload(), event, **objects))
    assert (payload["flow"], payload["state"]) == ("monitor", "Failed")


def test_every_channel_gets_an_action_in_the_automation() -> None:
    notice = _notices()["tickets-drift-detected"]
    channels = configured_channels(
        Settings(
            notify=NotifySettings(
                slack_url=SecretStr("https://hooks.slack.com/services/T/B/C"),
                webhook_url=SecretStr("https://hooks.example.org/tickets"),
            )
        )
    )
    ids = {SLACK_BLOCK: uuid4(), WEBHOOK_BLOCK: uuid4()}
    spec = automation_spec(notice, channels, ids)
    assert [a["type"] for a in spec["actions"]] == ["send-notification", "call-webhook"]
    assert spec["trigger"]["type"] == "event" and spec["trigger"]["posture"] == "Reactive"
    assert spec["actions"][0]["block_document_id"] == str(ids[SLACK_BLOCK])
    from prefect.events.schemas.automations import AutomationCore

    assert AutomationCore.model_validate(spec).name == "tickets-drift-detected"


def test_slack_gets_class_names_and_reasons_escaped_and_e_mail_gets_them_as_written() -> None:
    notice = _notices()["tickets-drift-detected"]
    hostile = "<!channel> <https://x|Dashboard> & co"
    payload = {**DRIFT, "fired": [hostile], "reasons": [f"class share moved: {hostile}"]}
    event = _event(events.DRIFT_DETECTED, events.model_resource("7", "pending"), payload)
    channels = configured_channels(
        Settings(
            notify=NotifySettings(
                slack_url=SecretStr("https://hooks.slack.com/services/T/B/C"),
                email_to=("ml@example.org",),
            ),
            smtp=SmtpSettings(host="127.0.0.1"),
        )
    )
    spec = automation_spec(notice, channels, {SLACK_BLOCK: uuid4(), EMAIL_BLOCK: uuid4()})
    slack, email = spec["actions"]
    for rendered in (_render(slack["subject"], event), _render(slack["body"], event)):
        assert "<!channel>" not in rendered and "<https://x" not in rendered
        assert "&lt;!channel&gt; &lt;https://x|Dashboard&gt; &amp; co" in rendered
    assert f"Dashboard: {DASHBOARD}" in _render(slack["body"], event), "links stay usable"
    assert hostile in _render(email["body"], event) and hostile in _render(email["subject"], event)
