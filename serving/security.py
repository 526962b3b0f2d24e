"""The admin API key: once configured, admin endpoints need it in the ``X-API-Key`` header."""

from __future__ import annotations

import hmac

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler

from core.settings import Settings

API_KEY_HEADER = "X-API-Key"


def admin_guard(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    """401 unless the configured key was sent; open when no key is configured."""
    settings: Settings = connection.app.state.settings
    if settings.admin_api_key is None:
        return
    expected = settings.admin_api_key.get_secret_value().encode()
    sent = connection.headers.get(API_KEY_HEADER, "").encode()
    if not hmac.compare_digest(sent, expected):
        raise NotAuthorizedException(detail=f"admin endpoint: send a valid {API_KEY_HEADER} header")
