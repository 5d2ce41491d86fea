"""Small response helpers: orjson bodies and the one error shape of CONTRACT §4."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.responses import Response


class JSONBytes(Response):
    """A response whose JSON body is already encoded (cached pages), or encoded once with orjson."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        if isinstance(content, bytes):
            return content
        return orjson.dumps(content)


def error(status: int, code: str, message: str, param: str | None = None,
          headers: Mapping[str, str] | None = None) -> JSONBytes:
    body = {"error": {"code": code, "message": message, "param": param}}
    return JSONBytes(body, status_code=status, headers=dict(headers or {}))
