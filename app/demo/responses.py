"""Small HTTP helpers the simulated market's handlers share."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response


class ORJSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def json_bytes(body: bytes, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type="application/json")


def split_list(raw: str) -> list[str]:
    return [a.strip() for a in raw.split(",") if a.strip()]


def flag(value: str | None) -> bool:
    return value is not None and value.strip().lower() in ("true", "1", "yes")


def bad_request(message: str) -> Response:
    return ORJSONResponse({"error": message}, status_code=400)
