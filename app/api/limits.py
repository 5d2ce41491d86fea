"""Per-client request rate limits: one client cannot take the service from the others.

A token bucket per client address: `CLIENT_RATE_LIMIT` requests per second sustained, up to
`CLIENT_RATE_BURST` at once. REST requests, stream opens (SSE, WebSocket) and WebSocket `subscribe`
commands each take one token; `/health`, `/ready` and `/metrics` take none (monitors poll them, and they
cost nothing). Past the limit: 429 `rate_limited` with `Retry-After` (a WebSocket handshake gets the same
429; a command an `error` message, the connection stays).

The client is the ASGI `client` address, which uvicorn takes from `X-Forwarded-For` only when the peer
is a trusted proxy (`FORWARDED_ALLOW_IPS`); behind a proxy that is not trusted, every client shares the
proxy's bucket, so set it there.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

EXEMPT_PATHS = frozenset({"/health", "/ready", "/metrics"})
MAX_CLIENTS = 100_000  # buckets kept at once; idle (full) ones are forgotten first


class ClientLimiter:
    """Token buckets by client address. `rate` 0 means no limit."""

    def __init__(self, rate: float, burst: int, *, max_clients: int = MAX_CLIENTS,
                 clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self.burst = float(burst)
        self.max_clients = max_clients
        self.clock = clock
        self.refused = 0
        self._buckets: dict[str, list[float]] = {}  # client -> [tokens, time of the last update]

    def take(self, client: str, cost: float = 1.0) -> float:
        """Spend `cost` tokens of `client`: 0.0 when allowed, else the seconds until it would be."""
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        bucket = self._buckets.get(client)
        if bucket is None:
            if len(self._buckets) >= self.max_clients:
                self._forget(now)
            bucket = self._buckets[client] = [self.burst, now]
        else:
            bucket[0] = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
            bucket[1] = now
        if bucket[0] >= cost:
            bucket[0] -= cost
            return 0.0
        self.refused += 1
        return (cost - bucket[0]) / self.rate

    def _forget(self, now: float) -> None:
        """Drop the buckets that have refilled (their clients are idle); if none has, the oldest half."""
        full = [c for c, (tokens, at) in self._buckets.items() if tokens + (now - at) * self.rate >= self.burst]
        for client in full:
            del self._buckets[client]
        if len(self._buckets) >= self.max_clients:
            for client in list(self._buckets)[: len(self._buckets) // 2]:
                del self._buckets[client]


def client_of(scope: Scope) -> str:
    client = scope.get("client")
    return client[0] if client else "-"


def retry_after(wait: float) -> int:
    return max(1, math.ceil(wait))


def rate_limited_body(wait: float) -> bytes:
    return orjson.dumps({"error": {"code": "rate_limited", "param": None,
                                   "message": f"too many requests from this client; retry in {retry_after(wait)} s"}})


class RateLimitMiddleware:
    """429 with `Retry-After` for a client past its rate, before any routing or caching."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and scope["path"] not in EXEMPT_PATHS:
            service = getattr(scope["app"].state, "service", None) if "app" in scope else None
            limiter: ClientLimiter | None = getattr(service, "limiter", None)
            if limiter is not None:
                wait = limiter.take(client_of(scope))
                if wait:
                    await _refuse(scope, send, wait)
                    return
        await self.app(scope, receive, send)


async def _refuse(scope: Scope, send: Send, wait: float) -> None:
    body = rate_limited_body(wait)
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body)),
               (b"retry-after", b"%d" % retry_after(wait))]
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 429, "headers": headers})
        await send({"type": "http.response.body", "body": body})
    elif "websocket.http.response" in scope.get("extensions", {}):
        await send({"type": "websocket.http.response.start", "status": 429, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
    else:  # a server without the denial-response extension: refuse the handshake
        await send({"type": "websocket.close", "code": 1008})
