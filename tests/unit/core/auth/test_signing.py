from __future__ import annotations

import base64

import pytest

from core.auth.signing import WebhookError, sign, verify

OLD = "whsec_" + base64.b64encode(b"o" * 32).decode()
NEW = "whsec_" + base64.b64encode(b"n" * 32).decode()
BODY = b'{"reason": "new product"}'
NOW = 1_800_000_000


def test_a_signed_request_verifies_and_any_current_key_matches() -> None:
    headers = sign([OLD], BODY, "msg_1", NOW)
    assert verify([NEW, OLD], headers, BODY, 300, now=NOW + 10) == "msg_1"
    rotated = sign([OLD, NEW], BODY, "msg_2", NOW)
    assert len(rotated["webhook-signature"].split()) == 2
    assert verify([NEW], rotated, BODY, 300, now=NOW) == "msg_2"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda h: {**h, "webhook-signature": "v1,AAAA"}, "no webhook-signature matches"),
        (lambda h: {k: v for k, v in h.items() if k != "webhook-id"}, "missing"),
        (lambda h: {**h, "webhook-id": "msg_other"}, "no webhook-signature matches"),
        (lambda h: {**h, "webhook-timestamp": str(NOW - 301)}, "tolerance"),
        (lambda h: {**h, "webhook-timestamp": "soon"}, "Unix time"),
        (lambda h: {**h, "webhook-timestamp": "9" * 400}, "1-12 ASCII digits"),
        (lambda h: {**h, "webhook-timestamp": "\u0661\u0668\u0660\u0660"}, "1-12 ASCII digits"),
        (lambda h: {**h, "webhook-signature": h["webhook-signature"].replace("v1,", "v2,")}, "no"),
    ],
)
def test_tampered_stale_or_incomplete_requests_are_refused(change, message: str) -> None:
    headers = change(sign([OLD], BODY, "msg_1", NOW))
    with pytest.raises(WebhookError, match=message):
        verify([OLD], headers, BODY, 300, now=NOW)


def test_a_changed_body_or_an_unknown_key_is_refused() -> None:
    headers = sign([OLD], BODY, "msg_1", NOW)
    with pytest.raises(WebhookError):
        verify([OLD], headers, BODY + b" ", 300, now=NOW)
    with pytest.raises(WebhookError):
        verify([NEW], headers, BODY, 300, now=NOW)


def test_the_signature_matches_the_published_test_vector() -> None:
    """The example of the Standard Webhooks specification."""
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    headers = {
        "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "webhook-timestamp": "1614265330",
        "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    }
    assert verify([secret], headers, body, 300, now=1614265330) == headers["webhook-id"]


def test_prefect_gets_the_configured_credentials() -> None:
    from core.settings import Settings
    from serving.webhooks import prefect_headers

    assert "authorization" not in prefect_headers(Settings())
    bearer = prefect_headers(Settings(prefect_api_key="pnu_secret", prefect_api_auth_string="u:p"))
    assert bearer["authorization"] == "Bearer pnu_secret"
    basic = prefect_headers(Settings(prefect_api_auth_string="admin:pass"))
    assert basic["authorization"] == "Basic " + base64.b64encode(b"admin:pass").decode()
