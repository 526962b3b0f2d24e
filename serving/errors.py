"""Client errors with a message that names the problem."""

from __future__ import annotations

from litestar.exceptions import HTTPException
from litestar.status_codes import HTTP_400_BAD_REQUEST


def bad_request(message: str) -> HTTPException:
    return HTTPException(status_code=HTTP_400_BAD_REQUEST, detail=message)
