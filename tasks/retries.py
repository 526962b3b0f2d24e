"""When a task may try again: only for transient faults (a store, database, tracking server or
Prefect API that timed out, refused the connection, throttled or failed with a 5xx), with backoff
and jitter. A mistake in the data, a bug or a refused promotion fails at once: trying again would
fail the same way and only delay the alert."""

from __future__ import annotations

import socket
from typing import Any

from core.errors import LogUnavailableError, TransientStoreError

#: Seconds before each retry; Prefect adds up to half again at random (jitter), so workers that
#: failed together do not retry together.
RETRY_DELAYS = [2, 10, 30]
RETRY_JITTER = 0.5


def is_transient(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) is a fault that may pass."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _transient_kind(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def _transient_kind(error: BaseException) -> bool:
    if isinstance(error, TransientStoreError | LogUnavailableError):
        return True
    if isinstance(error, ConnectionError | TimeoutError | socket.timeout):
        return True
    status = _http_status(error)
    if status is not None:
        return status >= 500 or status == 429
    name = type(error).__module__ + "." + type(error).__name__
    return name.startswith(("httpx.", "httpcore.", "urllib3.exceptions.", "requests.exceptions."))


def _http_status(error: BaseException) -> int | None:
    """The HTTP status an MLflow or HTTP client error carries, if any."""
    code = getattr(error, "get_http_status_code", None)
    if callable(code):  # MlflowException
        try:
            return int(code())
        except (TypeError, ValueError):
            return None
    response = getattr(error, "response", None)
    status = getattr(response, "status_code", None)
    return int(status) if isinstance(status, int) else None


def retry_if_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry the failed run only for a transient fault."""
    try:
        state.result(raise_on_failure=True)
    except BaseException as error:
        return is_transient(error)
    return False


#: The retry options of a task that is safe to repeat.
RETRY_TRANSIENT: dict[str, Any] = {
    "retries": len(RETRY_DELAYS),
    "retry_delay_seconds": RETRY_DELAYS,
    "retry_jitter_factor": RETRY_JITTER,
    "retry_condition_fn": retry_if_transient,
}
