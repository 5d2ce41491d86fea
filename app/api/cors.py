"""CORS: which browser pages on other sites may read REST and SSE, and open the WebSocket (`CORS_ORIGINS`).

A dashboard on another origin is a normal client of this service, so by default (`*`) any origin may read;
an operator narrows it to a comma list of origins, or to none with an empty value. A page of the service's
own origin is always allowed. There are no cookies or credentials, so `*` is answered as `*`.

- A request without an `Origin` header (curl, bots, servers) passes untouched: no header scan beyond the
  one lookup, no wrapped `send`.
- A preflight (`OPTIONS` with `Access-Control-Request-Method`) is answered here: 204 for an allowed origin,
  403 in the one error shape for another.
- An allowed origin's answers get `Access-Control-Allow-Origin` (and `Vary: Origin` when it is not `*`);
  another origin's answers are sent without it, so the browser keeps them from the page.
- WebSocket: browsers always send `Origin`, and the handshake is not protected by CORS, so an origin not
  allowed is refused before the upgrade: HTTP 403 with the error JSON where the server supports it,
  otherwise a close before accept (which uvicorn answers with 403 too).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ALLOW_METHODS = b"GET, HEAD, OPTIONS"
EXPOSE_HEADERS = b"ETag, Retry-After"
MAX_AGE = b"600"
_TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_, ")


@dataclass(frozen=True)
class CorsPolicy:
    """Normalised origins from `Settings.cors_origins`: ("*",) for any, () for none."""

    any_origin: bool
    origins: frozenset[str]

    @classmethod
    def of(cls, origins: tuple[str, ...]) -> CorsPolicy:
        return cls(any_origin="*" in origins, origins=frozenset(o for o in origins if o != "*"))

    def allows(self, origin: str) -> bool:
        # As browsers send it, an origin is usually already normal: the set lookup alone answers.
        return self.any_origin or origin in self.origins or normalise(origin) in self.origins


def normalise(origin: str) -> str:
    """scheme://host[:port] in lower case, the scheme's default port dropped (as app.config stores them)."""
    parts = urlsplit(origin.strip().lower())
    try:
        port = parts.port
    except ValueError:
        return origin
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    default = 443 if parts.scheme == "https" else 80
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


def same_origin(origin: str, host_header: str) -> bool:
    """Whether the page's origin is the service itself (its Host header, as the browser addressed it)."""
    if not host_header:
        return False
    parts = urlsplit(origin.strip().lower())
    default = ":443" if parts.scheme == "https" else ":80"
    return parts.netloc.removesuffix(default) == host_header.strip().lower().removesuffix(default)


class CorsMiddleware:
    """Pure ASGI. `origins` None: read from the running service's settings at the first request."""

    def __init__(self, app: ASGIApp, origins: tuple[str, ...] | None = None) -> None:
        self.app = app
        self.policy = CorsPolicy.of(origins) if origins is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        raw = None
        for name, value in scope["headers"]:
            if name == b"origin":
                raw = value
                break
        if raw is None:  # not a browser's cross-site request: nothing to do (the common case, one scan)
            await self.app(scope, receive, send)
            return
        origin = raw.decode("latin-1")
        policy = self._policy(scope)
        allowed = policy.allows(origin)
        if kind == "websocket":
            if allowed or same_origin(origin, _header(scope, b"host")):
                await self.app(scope, receive, send)
            else:
                await _refuse_websocket(scope, receive, send, origin)
            return
        if scope["method"] == "OPTIONS" and _header(scope, b"access-control-request-method"):
            allowed = allowed or same_origin(origin, _header(scope, b"host"))
            await _preflight(send, origin, allowed, policy, _header(scope, b"access-control-request-headers"))
            return
        if not allowed:
            await self.app(scope, receive, send)
            return
        extra = _allow_headers(origin, policy)

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        await self.app(scope, receive, send_with_cors)

    def _policy(self, scope: Scope) -> CorsPolicy:
        if self.policy is None:
            service = getattr(scope["app"].state, "service", None) if "app" in scope else None
            if service is None:
                return CorsPolicy.of(("*",))  # before start-up completes: the default
            self.policy = CorsPolicy.of(service.settings.cors_origins)
        return self.policy


def _header(scope: Scope, wanted: bytes) -> str:
    for name, value in scope["headers"]:
        if name == wanted:
            return value.decode("latin-1")
    return ""


def _allow_headers(origin: str, policy: CorsPolicy) -> list[tuple[bytes, bytes]]:
    if policy.any_origin:
        return [(b"access-control-allow-origin", b"*"), (b"access-control-expose-headers", EXPOSE_HEADERS)]
    return [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin"),
            (b"access-control-expose-headers", EXPOSE_HEADERS)]


def _error_body(origin: str) -> bytes:
    return orjson.dumps({"error": {"code": "origin_not_allowed", "message":
                                   f"origin {origin[:200]} is not allowed by CORS_ORIGINS", "param": None}})


async def _preflight(send: Send, origin: str, allowed: bool, policy: CorsPolicy, requested: str) -> None:
    if not allowed:
        body = _error_body(origin)
        await send({"type": "http.response.start", "status": 403, "headers": [
            (b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})
        return
    headers = [*_allow_headers(origin, policy), (b"access-control-allow-methods", ALLOW_METHODS),
               (b"access-control-max-age", MAX_AGE), (b"content-length", b"0")]
    if requested and set(requested) <= _TOKEN_CHARS:
        # Headers a page may send (Last-Event-ID on an EventSource reconnect, If-None-Match, ...): none is
        # sensitive here, so whatever is asked for is allowed.
        headers.append((b"access-control-allow-headers", requested.encode("latin-1")))
    await send({"type": "http.response.start", "status": 204, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


async def _refuse_websocket(scope: Scope, receive: Receive, send: Send, origin: str) -> None:
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    if "websocket.http.response" in scope.get("extensions", {}):
        body = _error_body(origin)
        await send({"type": "websocket.http.response.start", "status": 403, "headers": [
            (b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]})
        await send({"type": "websocket.http.response.body", "body": body})
        return
    await send({"type": "websocket.close", "code": 1008, "reason": "origin not allowed by CORS_ORIGINS"})
