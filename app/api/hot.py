"""The hot path: a repeated first page of `GET /api/tokens` answered from bytes, before any routing.

Dashboards and bots poll the same few views. Once the handler has built a first page for the current
version, the same raw query string is answered here with those bytes (or a 304) without parsing,
routing or encoding anything. An entry lives for one version and at most `MAX_AGE_S`, so the
`next_cursor` it carries is always far from its expiry. The pages of a version take at most `max_bytes`
(distinct queries are the client's choice: past it, new ones are simply not kept). An entry holds the
gzip bytes beside the plain ones once a client that takes gzip has asked (app.api.compression): until
then such a client goes to the handler, which makes them once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Receive, Scope, Send

from app.api import compression
from app.api.errors import etag_matches

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
    # query -> (made, body, etag, gzip body or None, its etag)
    pages: dict[bytes, tuple[float, bytes, bytes, bytes | None, bytes]] = field(default_factory=dict)

    def put(self, epoch: str, seq: int, query_string: bytes, body: bytes, etag: str,
            gzipped: bytes | None = None) -> None:
        if seq != self.seq or epoch != self.epoch:
            self.seq, self.epoch, self.pages, self.bytes = seq, epoch, {}, 0
        old = self.pages.pop(query_string, None)
        if old is not None:
            self.bytes -= len(old[1]) + len(old[3] or b"") + len(query_string) + 200
        size = len(body) + len(gzipped or b"") + len(query_string) + 200
        if len(self.pages) < MAX_ENTRIES and self.bytes + size <= self.max_bytes:
            self.pages[query_string] = (time.monotonic(), body, etag.encode(), gzipped,
                                        compression.gzip_etag(etag).encode())
            self.bytes += size

    def retire(self, epoch: str, seq: int) -> int:
        """A new version: the pages of another are useless now; returns the bytes let go."""
        if (seq, epoch) == (self.seq, self.epoch) or not self.pages:
            return 0
        released, self.pages, self.bytes = self.bytes, {}, 0
        return released

    def get(self, epoch: str, seq: int, query_string: bytes) -> tuple[float, bytes, bytes, bytes | None, bytes] | None:
        if seq != self.seq or epoch != self.epoch:
            return None
        hit = self.pages.get(query_string)
        if hit is None or time.monotonic() - hit[0] > MAX_AGE_S:
            return None
        return hit


class HotPathMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/api/tokens" and scope["method"] in ("GET", "HEAD"):
            service = getattr(scope["app"].state, "service", None)
            if service is not None:
                latest = service.store.latest()
                hit = service.hot.get(latest.epoch, latest.seq, scope["query_string"])
                if hit is not None and await _answer(hit, scope["headers"], send):
                    return
        await self.app(scope, receive, send)


async def _answer(hit: tuple[float, bytes, bytes, bytes | None, bytes], headers: list[tuple[bytes, bytes]],
                  send: Send) -> bool:
    """Send the cached page (or a 304) as the request's headers ask; False if the handler must make it
    (a client that takes gzip, for a page whose gzip bytes are not made yet)."""
    _, body, etag, gzipped, gzip_etag = hit
    if_none_match = encoding = None
    for name, value in headers:
        if name == b"if-none-match":
            if_none_match = value
        elif name == b"accept-encoding":
            encoding = value
    out = [(b"content-type", b"application/json"), (b"vary", b"Accept-Encoding")]
    if len(body) > compression.MIN_SIZE and compression.accepts_gzip(encoding):
        if gzipped is None:
            return False
        body, etag = gzipped, gzip_etag
        out.append((b"content-encoding", b"gzip"))
    if if_none_match is not None and etag_matches(if_none_match, etag):
        await send({"type": "http.response.start", "status": 304,
                    "headers": [(b"etag", etag), (b"vary", b"Accept-Encoding")]})
        await send({"type": "http.response.body", "body": b""})
        return True
    out += [(b"content-length", b"%d" % len(body)), (b"etag", etag), (b"cache-control", b"no-cache")]
    await send({"type": "http.response.start", "status": 200, "headers": out})
    await send({"type": "http.response.body", "body": body})
    return True
