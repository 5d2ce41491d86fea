"""Request metrics as a pure ASGI middleware: count by route and status, time to the response start."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.metrics import Metrics

_ROUTES = ("/api/tokens", "/api/stream", "/api/alerts", "/health", "/ready", "/metrics", "/openapi.json", "/ws", "/")


def route_label(path: str) -> str:
    """A bounded label: the route template, never the raw path (addresses would explode the series)."""
    if path.startswith("/api/tokens/"):
        address, _, rest = path[len("/api/tokens/"):].partition("/")
        if not rest:
            return "/api/tokens/{address}"
        return "/api/tokens/{address}/history" if rest == "history" and address else "other"
    return path if path in _ROUTES else "other"


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics | None = None) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        service = getattr(scope["app"].state, "service", None) if "app" in scope else None
        if service is None:
            await self.app(scope, receive, send)
            return
        metrics: Metrics = service.metrics
        started = time.perf_counter()
        route = route_label(scope["path"])

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                metrics.requests.labels(route, str(message["status"])).inc()
                metrics.latency.labels(route).observe(time.perf_counter() - started)
            await send(message)

        await self.app(scope, receive, timed_send)
