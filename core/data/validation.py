"""One rule for text that arrives from outside (the service's endpoints and webhooks, the files
``tickets feedback`` reads): what a ticket's text and a true label may be. A text that breaks it
raises InputError naming the field; the service answers that with 400, the CLI with one line."""

from __future__ import annotations

import re
import unicodedata

from core.errors import InputError

#: Whitespace, zero-width characters and soft hyphens: a text made only of these is empty.
INVISIBLE = re.compile(r"[\s\u200b-\u200f\u2060\ufeff\u00ad]+")
#: Characters no backend can store: NUL (PostgreSQL text refuses it) and lone surrogates (not
#: encodable as UTF-8, so neither SQLite nor PostgreSQL can take them). Refused, never stripped:
#: a ticket is stored as it was sent or not at all.
UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")
MAX_LABEL_CHARS = 100


def require_text(value: str | None, field: str, max_chars: int, required: bool = True) -> str:
    """``value`` if it fits ``max_chars``, holds only storable characters and, when
    ``required``, has a visible character; "" for an optional field left out. Otherwise
    InputError naming the field."""
    if value is None:
        if required:
            raise InputError(f"{field} is required")
        return ""
    if len(value) > max_chars:
        raise InputError(f"{field} is longer than {max_chars} characters")
    bad = UNSTORABLE.search(value)
    if bad is not None:
        raise InputError(
            f"{field} holds a character that cannot be stored (U+{ord(bad.group()):04X} at "
            f"position {bad.start()})"
        )
    if required and not INVISIBLE.sub("", value):
        raise InputError(f"{field} is empty")
    return value


def require_label(value: str, field: str) -> str:
    """A true label as it will be stored: NFC-normalised, stripped, 1-100 characters, with a
    visible character; otherwise InputError naming the field."""
    require_text(value, field, max_chars=10 * MAX_LABEL_CHARS)
    label = unicodedata.normalize("NFC", value).strip()
    if not INVISIBLE.sub("", label):
        raise InputError(f"{field} is empty")
    if len(label) > MAX_LABEL_CHARS:
        raise InputError(f"{field} is longer than {MAX_LABEL_CHARS} characters")
    return label
