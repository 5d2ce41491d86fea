"""create_app(settings): the wiring. Everything stateful is built in the lifespan and torn down with it."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route, WebSocketRoute

from app.api.hot import HotPathMiddleware
from app.api.limits import RateLimitMiddleware
from app.api.metrics import Metrics
from app.api.middleware import MetricsMiddleware
from app.api.rest import routes as rest_routes
from app.config import Settings, load_settings
from app.history import open_state, origin_of
from app.ingest.scheduler import CycleReport, Ingest
from app.service import Service
from app.sources import geckoterminal, jupiter
from app.sources.client import UpstreamClient
from app.store.memory import MemoryStore
from app.streams.alerts import AlertDetector
from app.streams.hub import Hub
from app.streams.sse import stream
from app.streams.ws import websocket_endpoint

PAGE = Path(__file__).parent / "static" / "index.html"

log = logging.getLogger("app")


def build_clients(settings: Settings, http: httpx.AsyncClient, metrics: Metrics) -> dict[str, UpstreamClient]:
    headers = {
        "dexscreener": {},
        "geckoterminal": geckoterminal.HEADERS,
        "jupiter": jupiter.headers(settings.jupiter_api_key),
    }
    clients = {
        source: UpstreamClient(source, http, settings.base_url(source), settings.rate_limits[source],
                               settings.cache_ttl_s, headers=headers[source], observe=metrics.observe_call)
        for source in settings.sources
    }
    for client in clients.values():
        # An open circuit probes about every other cycle at first, backing off to 30 cycles.
        client.breaker.cooldown_s = 1.5 * settings.refresh_interval_s
        client.breaker.max_cooldown_s = 30 * settings.refresh_interval_s
    return clients


def create_app(settings: Settings | None = None, *, start_ingest: bool = True) -> Starlette:
    """The ASGI app. Without `settings`, they are read from the environment when the app starts."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        current = settings or load_settings()
        origin = origin_of(current)  # what saved state must come from (before --demo rewrites the URLs)
        async with contextlib.AsyncExitStack() as stack:
            if current.demo:
                from app.demo.market import Market
                from app.demo.server import serve_market

                market = await stack.enter_async_context(serve_market(Market(), tick_interval=1.0))
                current = current.with_(dexscreener_url=market.dexscreener_url,
                                        geckoterminal_url=market.geckoterminal_url,
                                        jupiter_url=market.jupiter_url)
            metrics = Metrics()
            limits = httpx.Limits(max_connections=20, max_keepalive_connections=10, keepalive_expiry=30)
            http = await stack.enter_async_context(
                httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(10.0, connect=5.0),
                                  headers={"User-Agent": "tokenstream/0.1"}))
            store = MemoryStore()
            stack.push_async_callback(store.close)
            history, snapshots = open_state(current.data_dir, origin)
            stack.callback(history.close)
            if snapshots is not None:
                stack.callback(snapshots.close)
            clients = build_clients(current, http, metrics)

            def on_cycle(report: CycleReport) -> None:
                metrics.cycle.observe(report.duration_s)
                if report.seq is not None:
                    svc.stale = False  # fresh data committed: no longer only the restored snapshot

            # watched: tokens in live views get 7-day candles first (the hub is built below: looked up per call).
            ingest = Ingest(current, store, clients, on_cycle=on_cycle, history=history, snapshots=snapshots,
                            watched=lambda: svc.hub.watched() if svc.hub is not None else ())
            svc = Service(current, store, metrics, http, clients, ingest)
            svc.stale = ingest.restore()  # the last snapshot, served at once, before any upstream call
            stack.callback(ingest.save_snapshot_now)  # at shutdown, once the ingest has stopped
            detector = AlertDetector(current.alert_price_pct, current.alert_volume_x)
            svc.hub = Hub(store, metrics, detector, current.max_connections, current.heartbeat_s,
                          max_views=current.max_views, max_views_per_client=current.max_views_per_client,
                          views=svc.views)
            svc.write_timeout_s = min(30.0, max(2.0, 2 * current.heartbeat_s))
            app.state.service = svc
            # SIGTERM ends every stream at once (under uvicorn's own signal handling only).
            stack.callback(svc.hub.install_signal_hook())
            async with anyio.create_task_group() as tasks:
                if start_ingest:
                    tasks.start_soon(ingest.run)
                tasks.start_soon(svc.hub.run_heartbeats)
                try:
                    yield
                finally:
                    svc.hub.close_all()
                    tasks.cancel_scope.cancel()

    routes = [
        Route("/", page, methods=["GET"]),
        *rest_routes,
        Route("/api/stream", stream, methods=["GET"]),
        WebSocketRoute("/ws", websocket_endpoint),
    ]
    return Starlette(routes=routes, lifespan=lifespan, middleware=[Middleware(MetricsMiddleware),
                                                                          Middleware(RateLimitMiddleware),
                                                                          Middleware(HotPathMiddleware)])


async def page(request: Request) -> Response:
    """The live page: one static file, no build step."""
    return FileResponse(PAGE, media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-cache"})


app = create_app()
