"""Event names and resource labels in the code match prefect.yaml's triggers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from core import events

ROOT = Path(__file__).resolve().parents[3]


def _triggers() -> list[tuple[str, dict[str, Any]]]:
    prefect = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    return [
        (deployment["name"], trigger)
        for deployment in prefect["deployments"]
        for trigger in deployment.get("triggers") or []
    ]


def test_every_trigger_expects_events_the_code_emits() -> None:
    triggers = _triggers()
    assert triggers, "prefect.yaml has event triggers"
    for name, trigger in triggers:
        unknown = set(trigger["expect"]) - events.ALL_EVENTS
        assert not unknown, f"deployment {name} waits for events nobody emits: {unknown}"


def test_the_retrain_trigger_matches_what_the_code_sends() -> None:
    (trigger,) = [trigger for name, trigger in _triggers() if name == "on-event"]
    assert set(trigger["expect"]) == set(events.RETRAIN_TRIGGERS)
    assert trigger["match"] == {events.RETRAIN_LABEL: events.RETRAIN_PENDING}
    for resource in (
        events.model_resource("3", events.RETRAIN_PENDING),
        events.webhook_resource("msg_1", events.RETRAIN_PENDING),
    ):
        assert all(resource[label] == value for label, value in trigger["match"].items())
    for held_back in (events.RETRAIN_IN_FLOW, events.RETRAIN_SUPPRESSED):
        resource = events.model_resource("3", held_back)
        assert any(resource[label] != value for label, value in trigger["match"].items())


def test_event_ids_are_the_same_for_every_delivery_and_retry() -> None:
    assert events.webhook_event_id("msg_1") == events.webhook_event_id("msg_1")
    assert events.webhook_event_id("msg_1") != events.webhook_event_id("msg_2")
    assert events.flow_event_id("run-1/drift") == events.flow_event_id("run-1/drift")
    assert events.flow_event_id("run-1/drift") != events.flow_event_id("run-2/drift")
