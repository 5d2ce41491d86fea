"""The hot path: a repeated first page of `GET /api/tokens` answered from bytes, before any routing.

Dashboards and bots poll the same few views. Once the handler has built a first page for the current
version, the same raw query string is answered here with those bytes (or a 304) without parsing,
routing or encoding anything. An entry lives for one version and at most `MAX_AGE_S`, so the
`next_cursor` it carries is always far from its expiry. The pages of a version take at most `max_bytes`
(distinct queries are the client's choice: past it, new ones are simply not kept).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Receive, Scope, Send

MAX_AGE_S = 30.0
MAX_ENTRIES = 2048
DEFAULT_MAX_BYTES = 16 << 20


@dataclass
class HotPages:
    """Cached first pages of the current version, keyed by the raw query string."""

    max_bytes: int = DEFAULT_MAX_BYTES
    seq: int = -1
    epoch: str = ""
    bytes: int = 0
    pages: dict[bytes, tuple[float, bytes, bytes]] = field(default_factory=dict)  # query -> (made, body, etag)

    def put(self, epoch: str, seq: int, query_string: bytes, body: bytes, etag: str) -> None:
        if seq != self.seq or epoch != self.epoch:
            self.seq, self.epoch, self.pages, self.bytes = seq, epoch, {}, 0
        old = self.pages.pop(query_string, None)
        if old is not None:
            self.bytes -= len(old[1]) + len(query_string) + 200
        size = len(body) + len(query_string) + 200
        if len(self.pages) < MAX_ENTRIES and self.bytes + size <= self.max_bytes:
            self.pages[query_string] = (time.monotonic(), body, etag.encode())
            self.bytes += size

    def retire(self, epoch: str, seq: int) -> int:
        """A new version: the pages of another are useless now; returns the bytes let go."""
        if (seq, epoch) == (self.seq, self.epoch) or not self.pages:
            return 0
        released, self.pages, self.bytes = self.bytes, {}, 0
        return released

    def get(self, epoch: str, seq: int, query_string: bytes) -> tuple[bytes, bytes] | None:
        if seq != self.seq or epoch != self.epoch:
            return None
        hit = self.pages.get(query_string)
        if hit is None or time.monotonic() - hit[0] > MAX_AGE_S:
            return None
        return hit[1], hit[2]


class HotPathMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/api/tokens" and scope["method"] == "GET":
            service = getattr(scope["app"].state, "service", None)
            if service is not None:
                latest = service.store.latest()
                hit = service.hot.get(latest.epoch, latest.seq, scope["query_string"])
                if hit is not None:
                    body, etag = hit
                    for name, value in scope["headers"]:
                        if name == b"if-none-match" and value == etag:
                            await send({"type": "http.response.start", "status": 304,
                                        "headers": [(b"etag", etag)]})
                            await send({"type": "http.response.body", "body": b""})
                            return
                    await send({"type": "http.response.start", "status": 200, "headers": [
                        (b"content-type", b"application/json"), (b"content-length", b"%d" % len(body)),
                        (b"etag", etag), (b"cache-control", b"no-cache")]})
                    await send({"type": "http.response.body", "body": body})
                    return
        await self.app(scope, receive, send)
