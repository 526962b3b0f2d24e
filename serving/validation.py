"""One rule for text that arrives over HTTP, shared by every endpoint and webhook."""

from __future__ import annotations

import re

from serving.errors import bad_request

#: Whitespace, zero-width characters and soft hyphens: a text made only of these is empty.
INVISIBLE = re.compile(r"[\s\u200b-\u200f\u2060\ufeff\u00ad]+")


def require_text(value: str | None, field: str, max_chars: int, required: bool = True) -> str:
    """``value`` if it fits ``max_chars`` and, when ``required``, has a visible character;
    "" for an optional field left out. Otherwise a 400 that names the field."""
    if value is None:
        if required:
            raise bad_request(f"{field} is required")
        return ""
    if len(value) > max_chars:
        raise bad_request(f"{field} is longer than {max_chars} characters")
    if required and not INVISIBLE.sub("", value):
        raise bad_request(f"{field} is empty")
    return value
