"""The running service's parts, built once per app in the lifespan and reached through `app.state.service`."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from app.api.hot import HotPages
from app.api.limits import ClientLimiter
from app.api.metrics import Metrics
from app.config import Settings
from app.ingest.scheduler import Ingest
from app.query import ViewCache
from app.sources.client import UpstreamClient
from app.sources.values import iso
from app.store.base import Store


@dataclass
class Service:
    settings: Settings
    store: Store
    metrics: Metrics
    http: httpx.AsyncClient
    clients: dict[str, UpstreamClient]
    ingest: Ingest
    hub: Any = None  # app.streams.hub.Hub, set once the lifespan has built it
    write_timeout_s: float = 10.0  # a stream write slower than this closes the client
    started_at: float = field(default_factory=time.time)
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))  # signs cursors
    stale: bool = False  # serving a snapshot restored from disk, not yet refreshed
    hot: HotPages = field(default_factory=HotPages)  # repeated first pages of the current version
    views: ViewCache = field(default_factory=ViewCache)  # indexes, filtered views, page heads (bytes-bounded)
    extras: dict[str, Any] = field(default_factory=dict)
    limiter: ClientLimiter = field(init=False)  # per-client request rates (app.api.limits)

    def __post_init__(self) -> None:
        # What one client may cost is bounded from the settings (README "Limits").
        budget = int(self.settings.query_cache_mb * (1 << 20))
        self.views = ViewCache(budget)
        self.hot = HotPages(max_bytes=budget // 4)
        self.limiter = ClientLimiter(self.settings.client_rate_limit, self.settings.client_rate_burst)
        self.metrics.query_cache_bytes.set_function(lambda: self.views.bytes + self.hot.bytes)
        self.store.listen(self._retire)

    def _retire(self, version: Any) -> None:
        """A new version: cached queries of versions long gone are let go even when no query comes."""
        self.views.retire(version)
        self.views.evicted += self.hot.retire(version.epoch, version.seq)

    def health(self) -> dict[str, Any]:
        now = time.time()
        latest = self.store.latest()
        last = self.ingest.last_success()
        age = round(now - last, 3) if last is not None else None
        sources: dict[str, Any] = {}
        degraded = age is None or age > 3 * self.settings.refresh_interval_s or self.stale
        for name, client in self.clients.items():
            h = client.health
            circuit = client.circuit
            degraded = degraded or circuit == "open"
            error = h.last_error
            sources[name] = {
                "ok": h.ok,
                "last_success": iso(h.last_success),
                "last_error": {"message": error["message"], "at": iso(error["at"])} if error else None,
                "requests_last_min": client.budget.used(),
                "budget_per_min": client.budget.per_minute,
                "circuit": circuit,
                "skipped_items": h.skipped_items,
            }
        return {
            "status": "degraded" if degraded else "ok",
            "epoch": latest.epoch,
            "seq": latest.seq,
            "tokens": len(latest.records),
            "age_s": age,
            "stale": self.stale,
            "sol_usd": self.ingest.sol_usd,
            "sources": sources,
        }
