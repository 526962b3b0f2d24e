"""Secrets for a one-machine setup (``make run``): generated once, kept in a file
under ``TICKETS_HOME`` that only its owner can read, and reused on the next start."""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import tempfile
from pathlib import Path

from core.errors import ConfigurationError
from core.setting_groups import check_api_key


def new_api_key() -> str:
    return secrets.token_urlsafe(24)


def new_webhook_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def local_secret(home: Path, name: str, variable: str, configured: str | None = None) -> str:
    """``configured`` (a setting's value) when given, else environment ``variable`` when set,
    else the value kept in ``<home>/<name>``, created with ``new_api_key`` (or
    ``new_webhook_secret`` for webhook secrets) on first use. A configured value that is short
    or a placeholder (CHANGE-ME) is refused with ConfigurationError: a key anyone can guess
    would let them forge what it signs."""
    configured = (configured or os.environ.get(variable, "")).strip()
    if configured:
        try:
            check_api_key(configured)
        except ValueError as exc:
            raise ConfigurationError(f"{variable}: {exc}") from exc
        return configured
    path = home / name
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        value = new_webhook_secret() if "webhook" in name else new_api_key()
        # Written whole under a temporary name, then linked into place: of two processes or
        # threads creating it at once, one wins and both read the same complete value.
        fd, temporary = tempfile.mkstemp(dir=home, prefix=f".{name}.")
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(value)
            with contextlib.suppress(FileExistsError):
                os.link(temporary, path)
        finally:
            os.unlink(temporary)
    return path.read_text().strip()


def label_key_help(service_url: str, key_file: Path) -> str:
    """How to send a true label, printed where a person starts the service."""
    return (
        f"labels need the key in {key_file} (TICKETS_LABEL_API_KEYS), for example:\n"
        f"  curl -X POST {service_url}/feedback -H 'content-type: application/json' "
        f'-H "X-API-Key: $(cat {key_file})" '
        """-d '{"request_id": "<from /predict>", "true_label": "acceso_contrasenas"}'"""
    )
