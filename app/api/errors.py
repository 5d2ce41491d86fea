"""Every error in the one JSON shape of CONTRACT §4, on every path; and the checks every endpoint shares.

Starlette answers an unknown path or a wrong method with plain text; clients parse one shape, so the
router's own 404 and 405 go through `http_error` too. `unknown_param` and `etag_matches` are the checks
each endpoint makes the same way (an unknown query parameter is a 400 everywhere; `If-None-Match` is a
list of tags, weak or strong, or `*`).
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from app.api.responses import error

_CODES = {404: "not_found", 405: "method_not_allowed"}


async def http_error(request: Request, exc: Exception) -> Response:
    """The router's 404 and 405 (and any other HTTPException) as the §4 error shape."""
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    if status == 404:
        message = f"no such path: {request.url.path}"
    elif status == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
    else:
        message = str(exc.detail)
    return error(status, _CODES.get(status, "http_error"), message, headers=exc.headers)


EXCEPTION_HANDLERS = {HTTPException: http_error}


def unknown_param(request: Request, allowed: Iterable[str] = ()) -> Response | None:
    """A 400 naming the first query parameter the endpoint does not take, or None."""
    allowed = set(allowed)
    for name in request.query_params:
        if name not in allowed:
            return error(400, "invalid_param", f"unknown parameter {name!r}", name)
    return None


def etag_matches(if_none_match: str | bytes | None, etag: str | bytes) -> bool:
    """Whether an `If-None-Match` header names `etag`: a comma list, weak (`W/`) tags compared weakly, `*`."""
    if not if_none_match:
        return False
    header = if_none_match.decode("latin-1") if isinstance(if_none_match, bytes) else if_none_match
    tag = etag.decode("latin-1") if isinstance(etag, bytes) else etag
    tag = tag.removeprefix("W/")
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == tag:
            return True
    return False
