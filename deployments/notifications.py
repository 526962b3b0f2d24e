"""Notifications as Prefect automations, made from ``deployments/automations.yaml``.

Each entry of the file becomes one automation (created, or updated in place by name, so running
this again after an edit or a settings change is safe) whose actions send its message through
every channel the settings configure:

- ``TICKETS_NOTIFY_SLACK_URL``: a Slack-compatible incoming webhook, through Prefect's custom
  webhook notification block (``{"text": ...}``; Mattermost and Rocket.Chat take it too);
- ``TICKETS_NOTIFY_EMAIL_TO`` with ``TICKETS_SMTP_*``: e-mail, through ``TicketsEmail``
  (deployments/blocks.py);
- ``TICKETS_NOTIFY_WEBHOOK_URL``: a generic JSON webhook, through Prefect's webhook block: one
  object with ``event``, ``subject``, ``text``, the entry's ``fields`` and the links.

``python -m deployments.notifications`` (run by ``make deploy`` and ``make run``) needs
``PREFECT_API_URL``; with no channel configured it says so and changes nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any
from uuid import UUID

import yaml

from core.errors import ConfigurationError
from core.settings import Settings, get_settings

AUTOMATIONS_FILE = Path(__file__).resolve().parent / "automations.yaml"
SLACK_BLOCK = "tickets-slack"
EMAIL_BLOCK = "tickets-email"
WEBHOOK_BLOCK = "tickets-webhook"
DEFAULT_DASHBOARD = "http://127.0.0.1:8000/dashboard"
DEFAULT_PREFECT_UI = "http://127.0.0.1:4200"
_UNSAFE_IN_URL = set("{}%'\"<>\\ \n")


@dataclass(frozen=True)
class Notice:
    """One automation from the file, its templates with the links filled in."""

    name: str
    description: str
    trigger: dict[str, Any]
    subject: str
    body: str
    fields: dict[str, str]
    links: dict[str, str]

    def text(self) -> str:
        """The body with the links every message ends with."""
        return Template(f"{self.body.rstrip()}\n{LINKS}").substitute(self.links)

    def slack_subject(self) -> str:
        return _slack_escaped(self.subject)

    def slack_text(self) -> str:
        """The body for Slack: rendered, then escaped, so that a class name or a reason holding
        ``<!channel>`` or ``<https://x|Dashboard>`` shows as text instead of pinging everyone or
        drawing a link Slack would trust."""
        return _slack_escaped(self.text())

    def json_payload(self) -> str:
        """A Jinja template that renders one JSON object (values escaped by ``tojson``)."""
        parts = [
            '"event": {{ event.event | tojson }}',
            '"automation": {{ automation.name | tojson }}',
            '"subject": {{ notice_subject | trim | tojson }}',
            '"text": {{ notice_text | trim | tojson }}',
            '"prefect_run_url": {{ (notice_run_url | trim or none) | tojson }}',
            '"dashboard_url": {{ notice_dashboard | trim | tojson }}',
            *(
                f'"{key}": {{{{ ({expression}) | tojson }}}}'
                for key, expression in self.fields.items()
            ),
        ]
        template = (
            f"{{% set notice_subject %}}{self.subject}{{% endset %}}"
            f"{{% set notice_text %}}{self.text()}{{% endset %}}"
            f"{{% set notice_run_url %}}{RUN_URL}{{% endset %}}"
            f"{{% set notice_dashboard %}}{DASHBOARD}{{% endset %}}"
            "{" + ", ".join(parts) + "}"
        )
        return Template(template).substitute(self.links)


def _slack_escaped(template: str) -> str:
    """A template whose rendered output has Slack's control characters escaped (``&``, ``<``,
    ``>``: https://api.slack.com/reference/surfaces/formatting#escaping)."""
    escape = " | replace('&', '&amp;') | replace('<', '&lt;') | replace('>', '&gt;')"
    return f"{{% set slack_text %}}{template}{{% endset %}}{{{{ slack_text{escape} }}}}"


RUN_URL = (
    "{% if flow_run and flow_run.id %}${prefect_ui_url}/runs/flow-run/{{ flow_run.id }}{% endif %}"
)
DASHBOARD = "${dashboard_url}"
LINKS = f"Prefect run: {RUN_URL}\nDashboard: {DASHBOARD}"


def dashboard_url(settings: Settings) -> str:
    return (settings.notify.dashboard_url or DEFAULT_DASHBOARD).rstrip("/")


def prefect_ui_url(settings: Settings, api_url: str | None) -> str:
    """Where run links point: the setting, else the API's address without ``/api``."""
    if settings.notify.prefect_ui_url:
        return settings.notify.prefect_ui_url.rstrip("/")
    if api_url:
        return api_url.rstrip("/").removesuffix("/api")
    return DEFAULT_PREFECT_UI


def load_notices(dashboard: str, prefect_ui: str, path: Path = AUTOMATIONS_FILE) -> list[Notice]:
    """The file's automations with ``${dashboard_url}`` and ``${prefect_ui_url}`` filled in."""
    for url in (dashboard, prefect_ui):
        if not url.startswith(("http://", "https://")) or _UNSAFE_IN_URL & set(url):
            raise ConfigurationError(f"{url!r} is not a plain http(s) URL for links")
    links = {"dashboard_url": dashboard, "prefect_ui_url": prefect_ui}
    entries = yaml.safe_load(path.read_text(encoding="utf-8"))["automations"]
    notices = []
    for entry in entries:
        trigger = {"posture": "Reactive", "threshold": 1, "within": 0, **entry["trigger"]}
        notices.append(
            Notice(
                name=entry["name"],
                description=entry.get("description", ""),
                trigger=trigger,
                subject=Template(entry["subject"]).substitute(links),
                body=Template(entry["body"]).substitute(links),
                fields=dict(entry.get("fields") or {}),
                links=links,
            )
        )
    return notices


@dataclass(frozen=True)
class Channel:
    """A configured channel: its block's name and the action kind that uses it."""

    block: str
    action: str  # "send-notification" or "call-webhook"


def configured_channels(settings: Settings) -> list[Channel]:
    """The channels the settings ask for; a half-configured e-mail is a configuration error."""
    channels = []
    if settings.notify.slack_url:
        channels.append(Channel(SLACK_BLOCK, "send-notification"))
    if settings.notify.email_to:
        if not settings.smtp.host:
            raise ConfigurationError(
                "TICKETS_NOTIFY_EMAIL_TO is set but TICKETS_SMTP_HOST is not: "
                "e-mail needs an SMTP server"
            )
        channels.append(Channel(EMAIL_BLOCK, "send-notification"))
    if settings.notify.webhook_url:
        channels.append(Channel(WEBHOOK_BLOCK, "call-webhook"))
    return channels


def save_blocks(settings: Settings, channels: list[Channel]) -> dict[str, UUID]:
    """Each channel's Prefect block, saved (overwritten) under its fixed name; their ids."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.blocks.webhook import Webhook

    from deployments.blocks import TicketsEmail

    ids: dict[str, UUID] = {}
    for channel in channels:
        block: Any
        if channel.block == SLACK_BLOCK:
            assert settings.notify.slack_url is not None
            block = CustomWebhookNotificationBlock(
                name="tickets",
                url="{{ slack_url }}",
                json_data={"text": "*{{ subject }}*\n{{ body }}"},
                secrets={"slack_url": settings.notify.slack_url.get_secret_value()},
            )
        elif channel.block == EMAIL_BLOCK:
            assert settings.smtp.host is not None
            block = TicketsEmail(
                smtp_host=settings.smtp.host,
                smtp_port=settings.smtp.port,
                security=settings.smtp.security,
                username=settings.smtp.username,
                password=settings.smtp.password,
                sender=settings.notify.email_from,
                to=list(settings.notify.email_to),
            )
        else:
            assert settings.notify.webhook_url is not None
            block = Webhook(
                method="POST",
                url=settings.notify.webhook_url,
                headers={"Content-Type": "application/json"},
            )
        ids[channel.block] = block.save(channel.block, overwrite=True)
    return ids


def automation_spec(
    notice: Notice, channels: list[Channel], block_ids: dict[str, UUID]
) -> dict[str, Any]:
    """The automation as Prefect's API takes it (``AutomationCore`` fields)."""
    actions: list[dict[str, Any]] = []
    for channel in channels:
        block_id = str(block_ids[channel.block])
        if channel.action == "send-notification":
            slack = channel.block == SLACK_BLOCK
            actions.append(
                {
                    "type": "send-notification",
                    "block_document_id": block_id,
                    "subject": notice.slack_subject() if slack else notice.subject,
                    "body": notice.slack_text() if slack else notice.text(),
                }
            )
        else:
            actions.append(
                {
                    "type": "call-webhook",
                    "block_document_id": block_id,
                    "payload": notice.json_payload(),
                }
            )
    return {
        "name": notice.name,
        "description": notice.description,
        "enabled": True,
        "trigger": {"type": "event", **notice.trigger},
        "actions": actions,
    }


@dataclass(frozen=True)
class Applied:
    automations: list[str]
    channels: list[str]


def apply(settings: Settings, path: Path = AUTOMATIONS_FILE) -> Applied:
    """Blocks and automations on the Prefect server the client is configured for."""
    from prefect import get_client
    from prefect.events.schemas.automations import AutomationCore
    from prefect.settings import PREFECT_API_URL

    channels = configured_channels(settings)
    if not channels:
        return Applied([], [])
    dashboard = dashboard_url(settings)
    prefect_ui = prefect_ui_url(settings, PREFECT_API_URL.value())
    notices = load_notices(dashboard, prefect_ui, path)
    block_ids = save_blocks(settings, channels)
    names = []
    with get_client(sync_client=True) as client:
        for notice in notices:
            spec = AutomationCore.model_validate(automation_spec(notice, channels, block_ids))
            existing = client.read_automations_by_name(notice.name)
            if existing:
                client.update_automation(existing[0].id, spec)
                for extra in existing[1:]:
                    client.delete_automation(extra.id)
            else:
                client.create_automation(spec)
            names.append(notice.name)
    return Applied(names, [channel.block for channel in channels])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deployments.notifications", description=__doc__)
    parser.add_argument("--file", type=Path, default=AUTOMATIONS_FILE)
    args = parser.parse_args(argv)
    try:
        applied = apply(get_settings(), args.file)
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not applied.channels:
        print(
            "notifications: no channel configured (TICKETS_NOTIFY_SLACK_URL, "
            "TICKETS_NOTIFY_EMAIL_TO with TICKETS_SMTP_HOST, TICKETS_NOTIFY_WEBHOOK_URL); "
            "no automation created"
        )
        return 0
    print(
        json.dumps({"notifications": applied.automations, "channels": applied.channels}, indent=2)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
