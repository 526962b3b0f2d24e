"""The settings reference, generated from ``core.settings.Settings`` itself: every ``TICKETS_*``
variable with its default and description, grouped as the settings object groups them. The
documentation build writes it (``docs/hooks.py``), so it cannot fall behind the code;
``python -m deployments.settings_reference`` prints it."""

from __future__ import annotations

import json
import sys
from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from core.setting_groups import FLAT_NAMES
from core.settings import GROUPS, Settings

TITLES = {
    None: "General",
    "notify": "Notifications",
    "smtp": "E-mail (SMTP)",
    "retraining": "Retraining",
    "serving": "Serving",
    "rollout": "Rolling out",
    "scale": "Scaling out",
}


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value: Any = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if value is None or value == () or value == "":
        return "unset"
    if isinstance(value, SecretStr):
        return "(secret)"
    if isinstance(value, tuple):
        return ", ".join(str(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, default=str).strip('"')


def _cell(text: str) -> str:
    text = " ".join(text.split()).replace("|", "\\|")
    return text.replace("<", "&lt;").replace(">", "&gt;")


def rows() -> dict[str | None, list[tuple[str, str, str, bool]]]:
    """Per group: (variable, default, description, secret) of every setting."""
    grouped: dict[str | None, list[tuple[str, str, str, bool]]] = {}
    flat_of = {(group, name): flat for flat, (group, name) in FLAT_NAMES.items()}
    for name, field in Settings.model_fields.items():
        if name in GROUPS:
            model = field.annotation
            assert isinstance(model, type) and issubclass(model, BaseModel)
            for inner, sub in model.model_fields.items():
                variable = f"TICKETS_{flat_of[(name, inner)].upper()}"
                secret = "SecretStr" in str(sub.annotation)
                grouped.setdefault(name, []).append(
                    (variable, _default(sub), sub.description or "", secret)
                )
            continue
        secret = "SecretStr" in str(field.annotation)
        grouped.setdefault(None, []).append(
            (f"TICKETS_{name.upper()}", _default(field), field.description or "", secret)
        )
    return grouped


def render() -> str:
    lines = [
        "# Settings reference",
        "",
        "Generated from `core/settings.py` when the documentation is built. Every setting is",
        "read from its `TICKETS_*` variable at the entry points (`tickets` commands, the",
        "service, flow runs); tests build `Settings(...)` directly. Secrets (marked) are",
        "masked wherever settings are shown, Prefect's flow-run parameters included; an empty",
        "value means unset.",
        "",
    ]
    for group, entries in rows().items():
        lines += [f"## {TITLES.get(group, str(group))}", ""]
        lines += ["| variable | default | meaning |", "| --- | --- | --- |"]
        for variable, default, description, secret in entries:
            mark = " (secret)" if secret else ""
            lines.append(f"| `{variable}`{mark} | `{_cell(default)}` | {_cell(description)} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(render())
