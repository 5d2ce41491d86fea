"""The simulated market's gate: one per upstream, in front of its handlers.

Logs every request in `market.requests[source]` (monotonic time received, path relative to the source's
base URL plus "?query" when present, status), faulted and rate-limited ones included; applies the
upstream's rate limits and the switched-on fault; adds Jupiter's `x-ratelimit-*` headers.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from app.demo.market import Market

# DexScreener's 60/min group (upstreams.md §1): profiles, boosts, takeovers, metas, ads, orders.
DS_LIST_PREFIXES: tuple[str, ...] = ("/token-profiles/", "/token-boosts/", "/community-takeovers/", "/metas/",
                                     "/ads/", "/orders/")
JUP_BURST = 5  # keyless Jupiter: about 5 calls in a quick burst, the 6th gets a 429
JUP_HEADER_LIMIT = 9000  # advertised in x-ratelimit-* when market.rate_limits["jupiter"] is None (Pro tier)


CLOUDFLARE_HTML = b"""<!DOCTYPE html>
<html lang="en-US"><head><title>Just a moment...</title>
<meta http-equiv="Content-Type" content="text/html; charset=UTF-8">
<meta name="robots" content="noindex,nofollow"></head>
<body><div class="main-wrapper" role="main"><div class="main-content">
<h1 class="zone-name-title h1">api.example.com</h1>
<h2 class="h2" id="challenge-running">Checking if the site connection is secure</h2>
<noscript><div class="h2">
<span id="challenge-error-text">Enable JavaScript and cookies to continue</span></div></noscript>
</div></div><div class="footer" role="contentinfo"><div class="footer-inner">
<div class="clearfix diagnostic-wrapper"><div class="ray-id">Ray ID: <code>8f1c2d3e4a5b6c7d</code></div></div>
<div class="text-center" id="footer-text">Performance &amp; security by Cloudflare</div></div></div></body></html>
"""


def _error_body(source: str, status: int) -> tuple[bytes, str]:
    if source == "geckoterminal":
        if status == 429:
            return orjson.dumps({"status": {"error_code": 429, "error_message":
                                 "You've exceeded the Rate Limit. Please visit "
                                 "https://www.coingecko.com/en/api/pricing to subscribe to our API plans "
                                 "for higher rate limits."}}), "application/json"
        return orjson.dumps({"errors": [{"status": str(status), "title": "Internal Server Error"}]}), \
            "application/json"
    if source == "jupiter":
        msg = "Too Many Requests" if status == 429 else "Internal Server Error"
        return orjson.dumps({"code": status, "message": msg}), "application/json"
    msg = b"Too Many Requests" if status == 429 else b"Internal Server Error"
    return msg, "text/plain; charset=utf-8"


class SourceGate:
    """Logs every request for one source, applies its fault and rate limits, adds Jupiter's headers.

    Rate limits, per sliding 60 s, as the upstreams count them (upstreams.md): DexScreener's profile and
    boost feeds are a group of `market.ds_list_limit` (60) apart from its other endpoints
    (`market.rate_limits["dexscreener"]`); Jupiter also answers 429 to a quick burst (more than
    JUP_BURST calls faster than its per-minute rate refills them) whenever its limit is set.
    """

    def __init__(self, market: Market, source: str, prefix: str, app: Callable[..., Awaitable[None]]) -> None:
        self.market = market
        self.source = source
        self.prefix = prefix
        self.app = app
        self.windows: dict[str, deque[float]] = {"main": deque(), "list": deque()}
        self.burst = float(JUP_BURST)
        self.burst_at = time.monotonic()
        self.log_base = 0

    @property
    def window(self) -> deque[float]:
        return self.windows["main"]

    def _log_start(self, received: float, path: str) -> int:
        log = self.market.requests.setdefault(self.source, [])
        if len(log) >= 100_000:
            del log[:50_000]
            self.log_base += 50_000
        log.append((received, path, 0))
        return self.log_base + len(log) - 1

    def _log_end(self, idx: int, received: float, path: str, status: int) -> None:
        log = self.market.requests.setdefault(self.source, [])
        j = idx - self.log_base
        if 0 <= j < len(log) and log[j][0] == received:
            log[j] = (received, path, status)

    def _rate_headers(self, now: float) -> list[tuple[bytes, bytes]]:
        limit = self.market.rate_limits.get(self.source) or JUP_HEADER_LIMIT
        window = self.window
        current = len(window)
        reset = time.time() + ((window[0] + 60.0 - now) if window else 60.0)
        return [
            (b"x-ratelimit-remaining", str(max(0, limit - current)).encode()),
            (b"x-ratelimit-current", str(current).encode()),
            (b"x-ratelimit-reset", str(int(reset)).encode()),
        ]

    def _limited(self, path: str, received: float) -> tuple[int, float] | None:
        """Count the request in its group's window; (limit, seconds until room) when it is over a limit."""
        group = "list" if self.source == "dexscreener" and path.startswith(DS_LIST_PREFIXES) else "main"
        window = self.windows[group]
        while window and window[0] <= received - 60.0:
            window.popleft()
        window.append(received)
        limit = self.market.ds_list_limit if group == "list" else self.market.rate_limits.get(self.source)
        if limit is not None and len(window) > limit:
            return limit, window[0] + 60.0 - received
        if self.source == "jupiter" and limit is not None:
            rate = limit / 60.0
            self.burst = min(float(JUP_BURST), self.burst + (received - self.burst_at) * rate)
            self.burst_at = received
            if self.burst < 1.0:
                return limit, (1.0 - self.burst) / rate
            self.burst -= 1.0
        return None

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        received = time.monotonic()
        path = scope["path"][len(self.prefix):] or "/"
        route = path
        qs = scope.get("query_string", b"")
        if qs:
            path = f"{path}?{qs.decode('latin-1')}"
        idx = self._log_start(received, path)
        limited = self._limited(route, received)
        extra = self._rate_headers(received) if self.source == "jupiter" else []
        status_box = [0]

        async def send_plain(status: int, body: bytes, content_type: str, headers: list | None = None) -> None:
            status_box[0] = status
            hdrs = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
            hdrs += headers or []
            hdrs += extra
            await send({"type": "http.response.start", "status": status, "headers": hdrs})
            await send({"type": "http.response.body", "body": body})

        try:
            if limited is not None:
                body, ctype = _error_body(self.source, 429)
                # DexScreener documents no Retry-After, Jupiter sends x-ratelimit-reset instead.
                hdrs = [(b"retry-after", str(max(1, int(limited[1]) + 1)).encode())] \
                    if self.source == "geckoterminal" else []
                await send_plain(429, body, ctype, hdrs)
                return
            fault = self.market.faults.pick(self.source)
            kind = fault.kind if fault else None
            if kind == "429":
                body, ctype = _error_body(self.source, 429)
                hdrs = [] if fault.retry_after is None else [(b"retry-after", _num(fault.retry_after))]
                await send_plain(fault.status or 429, body, ctype, hdrs)
                return
            if kind == "500":
                body, ctype = _error_body(self.source, 500)
                await send_plain(fault.status or 500, body, ctype)
                return
            if kind == "html":
                await send_plain(fault.status or 200, CLOUDFLARE_HTML, "text/html; charset=UTF-8",
                                 [(b"server", b"cloudflare"), (b"cf-ray", b"8f1c2d3e4a5b6c7d-AMS")])
                return
            if kind == "slow":
                await asyncio.sleep(float(fault.delay))
            if kind == "truncated":
                captured: dict[str, Any] = {"status": 200, "headers": [], "body": b""}

                async def capture(message: dict) -> None:
                    if message["type"] == "http.response.start":
                        captured["status"] = message["status"]
                        captured["headers"] = message.get("headers", [])
                    elif message["type"] == "http.response.body":
                        captured["body"] += message.get("body", b"")

                await self.app(scope, receive, capture)
                full = captured["body"]
                ctype = dict(captured["headers"]).get(b"content-type", b"application/json").decode()
                await send_plain(fault.status or 200, full[: len(full) // 2], ctype)
                return

            async def send_wrapped(message: dict) -> None:
                if message["type"] == "http.response.start":
                    status_box[0] = message["status"]
                    if extra:
                        message = dict(message)
                        message["headers"] = list(message.get("headers", [])) + extra
                await send(message)

            await self.app(scope, receive, send_wrapped)
        finally:
            self._log_end(idx, received, path, status_box[0] or 500)


def _num(x: float) -> bytes:
    return str(int(x) if float(x).is_integer() else x).encode()
