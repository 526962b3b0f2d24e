"""API keys: admin endpoints need ``TICKETS_ADMIN_API_KEY`` and true labels need one of
``TICKETS_LABEL_API_KEYS``, sent in the ``X-API-Key`` header. Without a configured key those
doors are closed (403 saying how to open them), with a wrong or missing key 401."""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from litestar.connection import ASGIConnection
from litestar.datastructures import Headers
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from pydantic import SecretStr

from core.settings import Settings

API_KEY_HEADER = "X-API-Key"


def key_matches(sent: str | None, keys: Sequence[SecretStr]) -> bool:
    """Whether ``sent`` is one of ``keys``, comparing in constant time."""
    if not sent:
        return False
    given = sent.encode()
    return any(hmac.compare_digest(given, key.get_secret_value().encode()) for key in keys)


def is_admin(headers: Headers, settings: Settings) -> bool:
    return settings.admin_api_key is not None and key_matches(
        headers.get(API_KEY_HEADER), [settings.admin_api_key]
    )


def admin_guard(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    settings: Settings = connection.app.state.settings
    if settings.admin_api_key is None:
        raise PermissionDeniedException(
            detail="admin endpoints are disabled: set TICKETS_ADMIN_API_KEY (16+ characters) "
            f"and send it in the {API_KEY_HEADER} header"
        )
    if not is_admin(connection.headers, settings):
        raise NotAuthorizedException(detail=f"admin endpoint: send a valid {API_KEY_HEADER} header")


def require_label_key(headers: Headers, settings: Settings) -> None:
    """Labels become training and evaluation data, so only trusted senders may write them."""
    if not settings.label_api_keys:
        raise PermissionDeniedException(
            detail="labels are disabled: set TICKETS_LABEL_API_KEYS (16+ characters each) and "
            f"send one in the {API_KEY_HEADER} header, or close tickets through the signed "
            "/webhooks/tickets"
        )
    if not key_matches(headers.get(API_KEY_HEADER), settings.label_api_keys):
        raise NotAuthorizedException(detail=f"labels need a valid {API_KEY_HEADER} header")


def label_guard(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    require_label_key(connection.headers, connection.app.state.settings)
