"""GET /api/tokens/{address}/history: a token's recorded price and volume, one point per interval.

The points come from the service's own history (a sample a minute for the last two hours, then one per
half hour for seven days; app.history), the daily candles where that is all there is, and the record's
latest figures as the newest point (app.history_series). An answer is encoded once per version, history
revision and query, and served as bytes (or a 304) to every request that repeats it.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.api import compression
from app.api.responses import error
from app.history_series import INTERVALS, VOLUME_WINDOW, points
from app.sources.values import is_mint

DEFAULT_INTERVAL = "5m"
DEFAULT_LIMIT = 120
MAX_LIMIT = 1000
MAX_CACHED = 1024
PARAMS = ("interval", "limit")


@dataclass
class HistoryAnswers:
    """Encoded answers of one (epoch, seq, history revision): any other state starts afresh."""

    state: tuple[str, int, int] = ("", -1, -1)
    answers: dict[tuple[str, str, int], tuple[bytes, str]] = field(default_factory=dict)
    gzipped: dict[tuple[str, str, int], bytes] = field(default_factory=dict)  # made when first asked for

    def get(self, state: tuple[str, int, int], key: tuple[str, str, int]) -> tuple[bytes, str] | None:
        return self.answers.get(key) if state == self.state else None

    def put(self, state: tuple[str, int, int], key: tuple[str, str, int], body: bytes, etag: str) -> None:
        if state != self.state:
            self.state, self.answers, self.gzipped = state, {}, {}
        if len(self.answers) < MAX_CACHED:
            self.answers[key] = (body, etag)

    def gzip(self, state: tuple[str, int, int], key: tuple[str, str, int], body: bytes) -> bytes:
        """The answer's gzip bytes, made once per state and query."""
        hit = self.gzipped.get(key) if state == self.state else None
        if hit is None:
            hit = compression.gzip_body(body)
            if state == self.state and key in self.answers:
                self.gzipped[key] = hit
        return hit


def _params(request: Request) -> tuple[str, int] | Response:
    seen: set[str] = set()
    for name, _ in request.query_params.multi_items():
        if name not in PARAMS:
            return error(400, "invalid_param", f"unknown parameter {name!r}", name)
        if name in seen:
            return error(400, "invalid_param", f"{name} given more than once", name)
        seen.add(name)
    interval = request.query_params.get("interval", DEFAULT_INTERVAL)
    if interval not in INTERVALS:
        return error(400, "invalid_param", f"interval must be one of {', '.join(INTERVALS)}", "interval")
    raw = request.query_params.get("limit", str(DEFAULT_LIMIT))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        return error(400, "invalid_param", f"limit must be an integer from 1 to {MAX_LIMIT}", "limit")
    return interval, int(raw)


async def token_history(request: Request) -> Response:
    address = request.path_params["address"]
    if not is_mint(address):
        return error(400, "invalid_address", "address must be base58 of 32 to 44 characters", "address")
    parsed = _params(request)
    if isinstance(parsed, Response):
        return parsed
    interval, limit = parsed
    svc = request.app.state.service
    version = svc.store.latest()
    record = version.records.get(address)
    if record is None:
        return error(404, "not_found", f"token {address} is not tracked", "address")
    history = getattr(svc.ingest, "history", None)
    state = (version.epoch, version.seq, history.revision if history is not None else 0)
    key = (address, interval, limit)
    answers = svc.history_answers
    hit = answers.get(state, key)
    if hit is None:
        series = await history.series(address) if history is not None else None
        candles = history.day_candles(address) if history is not None and interval == "1d" else []
        body = orjson.dumps({
            "token_address": address, "interval": interval, "volume_window": VOLUME_WINDOW[interval],
            "epoch": version.epoch, "seq": version.seq,
            "points": points(series, candles, record, interval, limit, time.time()),
        })
        digest = hashlib.blake2s(f"{address}:{interval}:{limit}".encode(), digest_size=6).hexdigest()
        hit = (body, f'"{version.epoch}:{version.seq}:h{state[2]}:{digest}"')
        answers.put(state, key, *hit)
    body, etag = hit
    return compression.answer(request, body, etag, lambda: answers.gzip(state, key, body),
                              headers={"Cache-Control": "no-cache"})


def openapi_path() -> dict[str, Any]:
    """This route's OpenAPI operation (app.api.openapi adds it to the document)."""
    error_ref = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    number = {"type": ["number", "null"]}
    point = {"type": "object", "required": ["at", "price_usd", "volume_usd", "source"], "properties": {
        "at": {"type": "string", "format": "date-time", "description": "when this price was seen"},
        "price_usd": number,
        "volume_usd": {**number, "description": "USD traded in the volume_window ending at `at`"},
        "source": {"type": "string", "enum": ["history", "candles", "live"],
                   "description": "the service's own samples, daily OHLCV candles, or the record now"}}}
    body = {"type": "object", "required": ["token_address", "interval", "volume_window", "epoch", "seq", "points"],
            "properties": {
                "token_address": {"type": "string"},
                "interval": {"type": "string", "enum": list(INTERVALS)},
                "volume_window": {"type": "string", "enum": sorted(set(VOLUME_WINDOW.values()))},
                "epoch": {"type": "string"}, "seq": {"type": "integer"},
                "points": {"type": "array", "items": point, "description": "oldest first, one per interval"}}}
    return {"get": {
        "summary": "A token's recorded price and volume, one point per interval",
        "operationId": "getTokenHistory",
        "parameters": [
            {"name": "address", "in": "path", "required": True,
             "schema": {"type": "string", "pattern": "^[1-9A-HJ-NP-Za-km-z]{32,44}$"}},
            {"name": "interval", "in": "query",
             "schema": {"type": "string", "enum": list(INTERVALS), "default": DEFAULT_INTERVAL}},
            {"name": "limit", "in": "query",
             "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
             "description": "the newest this many points"},
            {"name": "If-None-Match", "in": "header", "schema": {"type": "string"}}],
        "responses": {
            "200": {"description": "the series", "content": {"application/json": {"schema": body}},
                    "headers": {"ETag": {"schema": {"type": "string"}}}},
            "304": {"description": "unchanged since the ETag given"},
            "400": {"description": "a bad or unknown parameter (invalid_param), or a malformed address "
                                   "(invalid_address)", **error_ref},
            "404": {"description": "well-formed but not tracked (not_found)", **error_ref}},
    }}


routes = [Route("/api/tokens/{address}/history", token_history, methods=["GET"])]
