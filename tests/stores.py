"""Stores for tests: each backend behind one helper, and the writer's side of a commit.

`BACKENDS` names the backends the store contract suite (tests/test_store_contract.py) runs against;
`fresh_backend(name, clock)` gives a fresh, empty store of that backend and a factory of leaderships
over it, as two instances of one deployment would have. A Redis backend joins by adding its name and
a branch here.

`memory_store` is for tests of what sits on top of the store (queries, diffs, the hub): a memory store
plus `apply(upserts, removals)`, which does what the ingest does (app.ingest.leader.changeset, then a
fenced commit) and runs the commit to completion at once, so property tests stay synchronous.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from app.alerts import AlertDetector
from app.ingest.leader import changeset
from app.leadership import Leadership, LocalLeadership
from app.store.base import HOLD_S, Store, Version
from app.store.memory import MemoryStore

T = TypeVar("T")

BACKENDS = ["memory", "redis"]


class Clock:
    """A clock the test moves by hand: retention is checked without sleeping."""

    def __init__(self, t: float = 1_790_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


@dataclass
class Backend:
    name: str
    store: Store
    leadership: Callable[[str], Leadership]  # an instance's leadership over the same store, by instance id
    clock: Clock  # the store's clock: tests move it to check retention
    hold_s: float  # what the backend promises: every version held at least this long after it is superseded


@contextlib.asynccontextmanager
async def fresh_backend(name: str, clock: Clock) -> AsyncIterator[Backend]:
    """A fresh, empty store of backend `name`, entered, and leaderships over it."""
    if name == "memory":
        store = MemoryStore(clock=clock)
        async with store:
            yield Backend(name, store, lambda instance: LocalLeadership(store.lease, instance), clock, HOLD_S)
        return
    if name == "redis":
        from app.redis.connection import RedisHealth
        from app.redis.keys import Keys
        from app.redis.leadership import RedisLeadership
        from app.redis.lease import Lease
        from app.store.redis import RedisStore
        from tests.redis_support import delete_prefix, shared_redis_url, unique_prefix

        url, keys = shared_redis_url(), Keys(unique_prefix("store"))
        try:
            async with RedisStore(url, keys, clock=clock) as store:
                yield Backend(name, store, lambda instance: RedisLeadership(
                    Lease(store.redis, keys, instance, 10.0), RedisHealth()), clock, HOLD_S)
        finally:
            delete_prefix(url, keys.prefix)
        return
    raise ValueError(f"unknown backend {name!r}")


def run_now(awaitable: Awaitable[T]) -> T:
    """Run a coroutine that never suspends (a memory-store commit) to completion, here and now."""
    coroutine = awaitable.__await__()
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise RuntimeError("the awaitable suspended: run it in an event loop instead")


class WritableStore:
    """A memory store that tests write to as the ingest does. Reads go to the store itself."""

    def __init__(self, store: MemoryStore, clock: Callable[[], float], detector: AlertDetector):
        self.store = store
        self.clock = clock
        self.detector = detector
        self.fence = store.lease.acquire("test-writer")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def apply(self, upserts: Mapping[str, dict[str, Any]], removals: Iterable[str] = (), *,
              sol_usd: float | None = None) -> Version | None:
        """Commit `upserts` and `removals` as the ingest would: a new version only if a record really changed
        (updated_at aside), alerts computed on the way. The version, or None when nothing changed."""
        changes = changeset(self.store.latest(), upserts, removals, committed_at=self.clock(), sol_usd=sol_usd,
                            detector=self.detector)
        if changes is None:
            return None
        return run_now(self.store.commit(changes, self.fence))


def memory_store(epoch: str | None = None, clock: Callable[[], float] = time.time, hold_s: float = HOLD_S,
                 price_pct: float = 5, volume_x: float = 3) -> WritableStore:
    return WritableStore(MemoryStore(epoch=epoch, hold_s=hold_s, clock=clock), clock,
                         AlertDetector(price_pct, volume_x))
