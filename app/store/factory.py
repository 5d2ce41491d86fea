"""Start-up picks the backend once, from STORE: a store and the leadership that fences its writers.

A backend is the pair because both live in the same place: the memory store checks tokens against the
process's own lease; a Redis store checks them, in its commit script, against the lease key that Redis
leadership renews. Nothing else in the service names a backend.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from app.config import ConfigError, Settings
from app.ingest.handover import StateHandover
from app.leadership import Leadership, LocalLeadership, instance_id
from app.redis.budget import RequestBudget
from app.redis.connection import RedisHealth
from app.store.base import Store
from app.store.memory import MemoryStore


@dataclass(frozen=True)
class Backend:
    store: Store
    leadership: Leadership
    # Each upstream group's request budget, where it must be shared by several instances (None: per process).
    budgets: Callable[[str, int], RequestBudget] | None = None
    health: RedisHealth | None = None  # the shared store's reachability, for /health
    handover: StateHandover | None = None  # the ingest's working state, from one leader to the next


BackendFactory = Callable[[Settings], Backend]


def open_backend(settings: Settings, *, instance: str | None = None,
                 clock: Callable[[], float] = time.time) -> Backend:
    """The backend STORE names (the store still to be entered with `async with`)."""
    if settings.store == "memory":
        store = MemoryStore(clock=clock)
        return Backend(store, LocalLeadership(store.lease, instance))
    if settings.store == "redis":
        from app.redis.backend import redis_parts
        from app.redis.ingest_state import IngestStateShare

        store, leadership, budgets = redis_parts(settings, instance or instance_id(), clock)
        return Backend(store, leadership, budgets, store.health,
                       IngestStateShare(store.shared, settings.refresh_interval_s))
    raise ConfigError(f"STORE={settings.store!r} is invalid: expected memory or redis")
