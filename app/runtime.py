"""The running service: every stateful part, built in one step by `open_runtime` for the app's lifespan.

Parts are built in dependency order, each from parts already built (the store before the hub that
listens to it, the hub before the ingest that asks it which tokens are watched), so the `Runtime` is
complete and immutable once made: no placeholder filled in later. What tests or benchmarks build
differently is named in `Options`, never patched into a module. Handlers reach it as `app.state.service`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
import httpx

from app.api.history_routes import HistoryAnswers
from app.api.hot import HotPages
from app.api.limits import ClientLimiter
from app.api.metrics import Metrics
from app.config import Settings
from app.edge import Edge
from app.history import open_state, origin_of
from app.ingest.leader import IngestRunner
from app.ingest.scheduler import Ingest
from app.leadership import Leadership
from app.query import ViewCache
from app.redis.connection import RedisHealth
from app.sources import dexscreener, geckoterminal, jupiter
from app.sources.client import MAIN as MAIN_GROUP
from app.sources.client import UpstreamClient
from app.sources.values import iso
from app.store.base import CycleSummary, Store, Version
from app.store.factory import BackendFactory, open_backend
from app.streams.fastpath import availability
from app.streams.fastpath import report as report_fast_path
from app.streams.hub import Hub


@dataclass(frozen=True)
class Options:
    """How a runtime is built where a test or benchmark needs another part; the defaults are production's."""

    start_ingest: bool = True  # False: no refresh cycles (nothing is fetched or committed)
    direct_writes: bool = True  # the hub's uvicorn fast path (app.streams.direct); off proves the ASGI path
    backend: BackendFactory = open_backend  # the store and its leadership, from STORE


@dataclass(frozen=True, eq=False)
class Runtime:
    settings: Settings  # as served: with --demo, the simulated market's URLs
    store: Store
    leadership: Leadership
    metrics: Metrics
    http: httpx.AsyncClient
    clients: dict[str, UpstreamClient]
    ingest: Ingest
    runner: IngestRunner
    hub: Hub
    hot: HotPages  # repeated first pages of the current version
    views: ViewCache  # indexes, filtered views and page heads of every held version, bounded in bytes
    limiter: ClientLimiter  # per-client request rates (app.api.limits)
    history_answers: HistoryAnswers  # encoded answers of GET /api/tokens/{address}/history, per version
    started_at: float
    redis: RedisHealth | None = None  # STORE=redis: whether this instance reaches Redis

    def health(self, now: float | None = None) -> dict[str, Any]:
        """GET /health: the latest version here, the leader's latest cycle summary, and who leads."""
        body = health_body(self.store.latest(), self.store.summary(), self.settings.refresh_interval_s,
                           time.time() if now is None else now)
        leadership = self.leadership
        body["instance"] = leadership.instance
        body["role"] = "leader" if leadership.token is not None else "follower"
        body["leader"] = leadership.leader
        if self.redis is not None:
            body["redis"] = self.redis.as_json()
            if not self.redis.ok:
                body["status"] = "degraded"  # serving the latest version it has; it may fall behind
        return body


def health_body(latest: Version, summary: CycleSummary | None, refresh_interval_s: float,
                now: float) -> dict[str, Any]:
    """The /health document: `age_s` is measured now, from the summary's last successful call; the
    per-source figures are those of the leader's latest cycle."""
    last = summary.last_success if summary is not None else None
    age = round(now - last, 3) if last is not None else None
    stale = summary.stale if summary is not None else False
    degraded = age is None or age > 3 * refresh_interval_s or stale
    sources: dict[str, Any] = {}
    for name, entry in (summary.sources if summary is not None else {}).items():
        degraded = degraded or entry["circuit"] == "open"
        error = entry["last_error"]
        sources[name] = {**entry, "last_success": iso(entry["last_success"]),
                         "last_error": {"message": error["message"], "at": iso(error["at"])} if error else None}
    return {
        "status": "degraded" if degraded else "ok",
        "epoch": latest.epoch,
        "seq": latest.seq,
        "tokens": len(latest.records),
        "age_s": age,
        "stale": stale,
        "sol_usd": summary.sol_usd if summary is not None else None,
        "sources": sources,
    }


def build_clients(settings: Settings, http: httpx.AsyncClient, metrics: Metrics) -> dict[str, UpstreamClient]:
    headers = {
        "dexscreener": {},
        "geckoterminal": geckoterminal.HEADERS,
        "jupiter": jupiter.headers(settings.jupiter_api_key),
    }
    limits = settings.rate_limits
    options: dict[str, dict] = {
        # DexScreener's profile and boost feeds are a 60/min group apart from the 300/min one.
        "dexscreener": {"groups": {dexscreener.LIST_GROUP: dexscreener.list_group_per_min(limits["dexscreener"])},
                        "group_of": dexscreener.rate_group},
        "geckoterminal": {},
        # Jupiter: evenly paced (about one call per 2 s keyless), never a burst.
        "jupiter": {"spacing_s": 60.0 / limits["jupiter"]},
    }
    clients = {
        source: UpstreamClient(source, http, settings.base_url(source), limits[source], settings.cache_ttl_s,
                               headers=headers[source], observe=metrics.observe_call, **options[source])
        for source in settings.sources
    }
    for client in clients.values():
        # An open circuit lets one cheap probe through every refresh interval (never backing off further),
        # so data is back within about two intervals of an upstream's return, however long it was away.
        client.breaker.cooldown_s = settings.refresh_interval_s
        client.breaker.max_cooldown_s = settings.refresh_interval_s
    # httpx logs every request URL (up to 100 mints) at info; the client logs them itself at debug.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return clients


@contextlib.asynccontextmanager
async def open_runtime(settings: Settings, options: Options = Options(),
                       edge: Edge | None = None) -> AsyncIterator[Runtime]:
    """Build every part, run the background tasks (leadership, ingest, heartbeats) while the block runs,
    and tear it all down after it, in reverse order. `edge`: the HTTP edge the app is served behind, whose
    counters /metrics shows."""
    origin = origin_of(settings)  # what saved state must come from (before --demo rewrites the URLs)
    async with contextlib.AsyncExitStack() as stack:
        if settings.demo:
            from app.demo.market import Market
            from app.demo.server import serve_market

            market = await stack.enter_async_context(serve_market(Market(), tick_interval=1.0))
            settings = settings.with_(dexscreener_url=market.dexscreener_url,
                                      geckoterminal_url=market.geckoterminal_url, jupiter_url=market.jupiter_url)
        metrics = Metrics()
        if edge is not None:
            metrics.watch_edge(edge)
        limits = httpx.Limits(max_connections=20, max_keepalive_connections=10, keepalive_expiry=30)
        http = await stack.enter_async_context(
            httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(10.0, connect=5.0),
                              headers={"User-Agent": "tokenstream/0.1"}))
        backend = options.backend(settings)
        store = await stack.enter_async_context(backend.store)
        leadership = backend.leadership
        stack.push_async_callback(leadership.resign)
        history, snapshots = open_state(settings.data_dir, origin)
        stack.callback(history.close)
        if snapshots is not None:
            stack.callback(snapshots.close)
        clients = build_clients(settings, http, metrics)
        if backend.budgets is not None:  # STORE=redis: each upstream's windows are the whole deployment's
            for client in clients.values():
                for group, local in list(client.budgets.items()):  # DexScreener's 60/min feed group too
                    name = client.source if group == MAIN_GROUP else f"{client.source}:{group}"
                    client.budgets[group] = backend.budgets(name, local.per_minute)
        # What one client may cost is bounded from the settings (README "Limits").
        cache_bytes = int(settings.query_cache_mb * (1 << 20))
        views, hot = ViewCache(cache_bytes), HotPages(max_bytes=cache_bytes // 4)
        metrics.query_cache_bytes.set_function(lambda: views.bytes + hot.bytes)

        def retire(version: Version) -> None:
            """A new version: cached queries of versions long gone are let go even when no query comes."""
            views.retire(version)
            views.evicted += hot.retire(version.epoch, version.seq)

        stack.callback(store.listen(retire))
        fast = availability()
        report_fast_path(fast)
        hub = Hub(store, metrics, settings.max_connections, settings.heartbeat_s,
                  direct_writes=options.direct_writes, max_views=settings.max_views,
                  max_views_per_client=settings.max_views_per_client, views=views)
        for kind, ok in fast.items():
            metrics.fast_path.labels(kind).set(1 if ok else 0)
            metrics.direct_writes.labels(kind).set_function(lambda kind=kind: hub.written_directly[kind])
        ingest = Ingest(settings, store, clients, history=history, snapshots=snapshots, watched=hub.watched,
                        handover=backend.handover,
                        on_cycle=lambda report: metrics.cycle.observe(report.duration_s))
        stack.callback(ingest.save_snapshot_now)  # at shutdown, once the ingest has stopped
        runtime = Runtime(settings, store, leadership, metrics, http, clients, ingest, IngestRunner(ingest, leadership),
                          hub, hot, views, ClientLimiter(settings.client_rate_limit, settings.client_rate_burst),
                          HistoryAnswers(), time.time(), backend.health)
        # SIGTERM ends every stream at once (under uvicorn's own signal handling only).
        stack.callback(hub.install_signal_hook())
        async with anyio.create_task_group() as tasks:
            if options.start_ingest:
                await tasks.start(leadership.run)
                await tasks.start(runtime.runner.run)  # a leader has restored or adopted its data by now
            tasks.start_soon(hub.run_heartbeats)
            try:
                yield runtime
            finally:
                hub.close_all()
                tasks.cancel_scope.cancel()
