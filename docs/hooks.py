"""MkDocs hooks: before every build, the settings reference is written from the code and the
changelog copied from the repository's CHANGELOG.md (neither is kept under docs/)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def on_pre_build(config: Any) -> None:
    from deployments.settings_reference import render

    docs = Path(config["docs_dir"])
    changelog = (docs.parent / "CHANGELOG.md").read_text(encoding="utf-8")
    for target, text in (
        (docs / "reference" / "settings.md", render()),
        (docs / "changelog.md", changelog),
    ):
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
