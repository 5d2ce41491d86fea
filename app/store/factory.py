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
from app.leadership import Leadership, LocalLeadership
from app.store.base import Store
from app.store.memory import MemoryStore


@dataclass(frozen=True)
class Backend:
    store: Store
    leadership: Leadership


BackendFactory = Callable[[Settings], Backend]


def open_backend(settings: Settings, *, instance: str | None = None,
                 clock: Callable[[], float] = time.time) -> Backend:
    """The backend STORE names (the store still to be entered with `async with`)."""
    if settings.store == "memory":
        store = MemoryStore(clock=clock)
        return Backend(store, LocalLeadership(store.lease, instance))
    # Until the Redis backend exists, the same one line app.config gives for STORE=redis.
    raise ConfigError(f"STORE={settings.store!r} is invalid: expected memory (the redis backend is not in this "
                      "version yet)")
