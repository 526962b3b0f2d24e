"""The project's Prefect events and the resource labels their triggers match on, in one place.

prefect.yaml's triggers name the same strings; tests/unit/core/test_events.py keeps the two in step.
Serving posts events over HTTP and the flows emit them with Prefect, so this module imports
neither.
"""

from __future__ import annotations

import uuid

DRIFT_DETECTED = "tickets.drift.detected"
RETRAIN_REQUESTED = "tickets.retrain.requested"
MODEL_PROMOTED = "tickets.model.promoted"
MODEL_REJECTED = "tickets.model.rejected"
#: The champion pointer went back to an earlier champion (``tickets rollback``).
MODEL_ROLLED_BACK = "tickets.model.rolled_back"
#: The monitor stopped a canary that did worse than the champion.
CANARY_ROLLED_BACK = "tickets.canary.rolled_back"

#: Resource label that says who retrains after an event: the retrain deployment's trigger matches
#: ``pending``; a monitor run that retrains in its own flow says ``in-flow`` so nothing else does.
RETRAIN_LABEL = "tickets.retrain"
RETRAIN_PENDING = "pending"
RETRAIN_IN_FLOW = "in-flow"
#: Drift that the retrain decision held back (cooldown, back-off): told, not acted on.
RETRAIN_SUPPRESSED = "suppressed"

#: Events that ask the retrain deployment for a run (when their resource is ``pending``).
RETRAIN_TRIGGERS = (RETRAIN_REQUESTED, DRIFT_DETECTED)
ALL_EVENTS = frozenset(
    {
        DRIFT_DETECTED,
        RETRAIN_REQUESTED,
        MODEL_PROMOTED,
        MODEL_REJECTED,
        MODEL_ROLLED_BACK,
        CANARY_ROLLED_BACK,
    }
)
#: Events operators are told about (deployments/automations.yaml).
NOTIFIED_EVENTS = (
    DRIFT_DETECTED,
    MODEL_PROMOTED,
    MODEL_REJECTED,
    MODEL_ROLLED_BACK,
    CANARY_ROLLED_BACK,
)
#: The project's flows, by name: a run of any of them that fails or crashes is announced.
FLOW_NAMES = ("train", "monitor", "retrain", "maintenance", "rollback", "promote-shadow")


def model_resource(model_version: str, retrain: str) -> dict[str, str]:
    """The resource of an event about a served model."""
    return {
        "prefect.resource.id": f"tickets.model.{model_version}",
        RETRAIN_LABEL: retrain,
        "model_version": model_version,
    }


def webhook_resource(webhook_id: str, retrain: str) -> dict[str, str]:
    """The resource of an event that arrived through a signed webhook."""
    return {"prefect.resource.id": f"tickets.webhook.{webhook_id}", RETRAIN_LABEL: retrain}


#: Namespaces of the event ids (uuid5): an event's id comes from what caused it (the flow run and
#: step, or the webhook id), so a retry emits the same event and Prefect keeps one.
FLOW_EVENT_NAMESPACE = uuid.UUID("6f1c2a4e-8d3b-5e7f-a9c1-2b4d6f8a0c3e")
WEBHOOK_EVENT_NAMESPACE = uuid.UUID("0b8a7c1e-3f4d-5a6b-9c8d-7e6f5a4b3c2d")


def flow_event_id(key: str) -> uuid.UUID:
    """The id of the event a flow emits for ``key`` (its run id and what happened)."""
    return uuid.uuid5(FLOW_EVENT_NAMESPACE, key)


def webhook_event_id(webhook_id: str) -> str:
    """The id of the event a webhook delivery becomes."""
    return str(uuid.uuid5(WEBHOOK_EVENT_NAMESPACE, webhook_id))
