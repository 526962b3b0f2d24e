"""Standard Webhooks (https://www.standardwebhooks.com): HMAC-SHA256 over ``id.timestamp.body``
with a ``whsec_`` key, ``v1,<base64>`` signatures (several, space-separated, for key rotation),
a timestamp tolerance, and constant-time comparison. Pure: no web framework here."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Mapping, Sequence

from core.errors import InputError
from core.settings import decode_webhook_secret

_TIMESTAMP = re.compile(r"[0-9]{1,12}")


class WebhookError(InputError):
    """The request is not a valid signed webhook; the message says why."""


def signature(secret: str, webhook_id: str, timestamp: str, body: bytes) -> str:
    key = decode_webhook_secret(secret)
    if key is None:
        raise ValueError("secret must look like whsec_<base64 of 24+ bytes>")
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def sign(
    secrets: Sequence[str], body: bytes, webhook_id: str, timestamp: int | None = None
) -> dict[str, str]:
    """Headers for ``body`` signed with every secret (what a sender does)."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    signatures = " ".join(signature(secret, webhook_id, stamp, body) for secret in secrets)
    return {"webhook-id": webhook_id, "webhook-timestamp": stamp, "webhook-signature": signatures}


def verify(
    secrets: Sequence[str],
    headers: Mapping[str, str],
    body: bytes,
    tolerance_s: int,
    now: float | None = None,
) -> str:
    """The webhook id when some signature matches some secret within the tolerance."""
    webhook_id = headers.get("webhook-id", "").strip()
    stamp = headers.get("webhook-timestamp", "").strip()
    sent = headers.get("webhook-signature", "").split()
    if not webhook_id or not stamp or not sent:
        raise WebhookError("missing webhook-id, webhook-timestamp or webhook-signature header")
    if len(webhook_id) > 256:
        raise WebhookError("webhook-id is longer than 256 characters")
    if not _TIMESTAMP.fullmatch(stamp):
        raise WebhookError("webhook-timestamp is not a Unix time in seconds (1-12 ASCII digits)")
    skew = abs((time.time() if now is None else now) - int(stamp))
    if skew > tolerance_s:
        raise WebhookError(
            f"webhook-timestamp is {skew:.0f}s away; the tolerance is {tolerance_s}s"
        )
    expected = [signature(secret, webhook_id, stamp, body).encode() for secret in secrets]
    for candidate in sent:
        if not candidate.startswith("v1,"):
            continue
        if any(hmac.compare_digest(candidate.encode(), wanted) for wanted in expected):
            return webhook_id
    raise WebhookError("no webhook-signature matches")
