"""Errors to HTTP answers, in one place: the app registers ``EXCEPTION_HANDLERS`` once, so
handlers raise the project's own errors and never pick status codes for them.

- bad input (``InputError``, a body that is not UTF-8 or nests deeper than a parser recurses):
  400 with a message naming the field or the body;
- a webhook whose signature, timestamp or id does not verify (``WebhookError``): 401;
- a model without a reference profile to compare against: 409;
- our own faults (``LogUnavailableError``; ``unavailable(...)``): 503 with ``Retry-After``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException
from litestar.status_codes import (
    HTTP_400_BAD_REQUEST,
    HTTP_401_UNAUTHORIZED,
    HTTP_409_CONFLICT,
    HTTP_503_SERVICE_UNAVAILABLE,
)

from core.auth.signing import WebhookError
from core.errors import InputError, LogUnavailableError
from core.monitoring.check import NoReferenceProfile

logger = logging.getLogger("tickets.serving")
Handler = Callable[[Request[Any, Any, Any], Any], Response[Any]]

#: Seconds a client should wait before retrying a 503 of ours.
RETRY_AFTER_S = 5


def bad_request(message: str) -> HTTPException:
    return HTTPException(status_code=HTTP_400_BAD_REQUEST, detail=message)


def unavailable(detail: str, retry_after_s: int = RETRY_AFTER_S) -> HTTPException:
    """503 for our own faults, with ``Retry-After`` so clients and proxies back off."""
    return HTTPException(
        status_code=HTTP_503_SERVICE_UNAVAILABLE,
        detail=detail,
        headers={"Retry-After": str(retry_after_s)},
    )


def _answer(status: int, detail: str, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response({"status_code": status, "detail": detail}, status_code=status, headers=headers)


def _input_error(request: Request[Any, Any, Any], exc: InputError) -> Response[Any]:
    return _answer(HTTP_400_BAD_REQUEST, str(exc))


def _invalid_utf8(request: Request[Any, Any, Any], exc: UnicodeDecodeError) -> Response[Any]:
    return _answer(HTTP_400_BAD_REQUEST, "request body is not valid UTF-8")


def _too_deep(request: Request[Any, Any, Any], exc: RecursionError) -> Response[Any]:
    """The JSON decoders recurse once per level of nesting: a 2 KB body of nested arrays made
    them give up with RecursionError, answered 500 before. No handler of ours recurses over
    request data, so here it is the body's doing; it is logged, in case that ever changes."""
    logger.warning(
        "%s %s: refused a body nested too deeply (%s)", request.method, request.url.path, exc
    )
    return _answer(HTTP_400_BAD_REQUEST, "request body: JSON nested too deeply")


def _bad_signature(request: Request[Any, Any, Any], exc: WebhookError) -> Response[Any]:
    return _answer(HTTP_401_UNAUTHORIZED, str(exc))


def _no_reference(request: Request[Any, Any, Any], exc: NoReferenceProfile) -> Response[Any]:
    return _answer(HTTP_409_CONFLICT, str(exc))


def _log_unavailable(request: Request[Any, Any, Any], exc: LogUnavailableError) -> Response[Any]:
    logger.warning("prediction log unavailable: %s", exc)
    return _answer(
        HTTP_503_SERVICE_UNAVAILABLE,
        "the prediction log is unavailable; retry later",
        {"Retry-After": str(RETRY_AFTER_S)},
    )


EXCEPTION_HANDLERS: dict[int | type[Exception], Handler] = {
    InputError: _input_error,
    WebhookError: _bad_signature,
    UnicodeDecodeError: _invalid_utf8,
    RecursionError: _too_deep,
    NoReferenceProfile: _no_reference,
    LogUnavailableError: _log_unavailable,
}
