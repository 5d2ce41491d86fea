"""The ingest's working state in Redis, so that a new leader carries on instead of starting over.

After each of its cycles the leader saves the state of the tokens its version changed (each token's pools
and token-level figures by source) and, at most every FULL_EVERY_S, every tracked token and what the
scheduler knows (when each token was last refreshed from each source, the last discovery). A leader
taking over loads it before its first cycle: its records come from the store's latest version, and the
state behind them from here, so nothing is re-discovered or held back waiting for every source again.
Writes are fenced like commits: a stale leader cannot overwrite its successor's state.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from app.ingest.merge import TokenState
from app.model import PoolObservation, TokenInfo, WindowStats
from app.redis.changelog import CommitRejected
from app.redis.connection import REDIS_ERRORS
from app.redis.shared import SharedState
from app.redis.statecodec import StateCodec
from app.store.versions import Version

if TYPE_CHECKING:
    from app.ingest.scheduler import Ingest

log = logging.getLogger("app.redis")

CODEC = StateCodec([TokenState, PoolObservation, TokenInfo, WindowStats])
FULL_EVERY_S = 60.0


class IngestStateShare:
    def __init__(self, shared: SharedState, clock: Callable[[], float] = time.monotonic):
        self.shared = shared
        self._clock = clock
        self._full_at: float | None = None
        self._saved: set[str] = set()  # the tokens Redis holds a state for, as far as we know

    async def save(self, ingest: Ingest, version: Version | None, fence: int) -> None:
        """After a cycle: the tokens `version` changed, or everything when a full save is due."""
        now = self._clock()
        full = self._full_at is None or now - self._full_at >= FULL_EVERY_S
        tokens = ingest.tokens
        if full:
            touched = set(tokens) | self._saved
        else:
            touched = set(version.changed | version.removed) if version is not None else set()
        states = {address: CODEC.dumps(tokens[address]) for address in touched if address in tokens}
        removed = [address for address in touched if address not in tokens]
        scheduler = orjson.dumps(scheduler_state(ingest)) if full else None
        try:
            await self.shared.save_ingest(fence, states, removed, scheduler)
        except CommitRejected:
            return  # no longer the leader: the successor's state stays
        except REDIS_ERRORS as exc:
            log.warning("redis: saving the ingest state failed: %s", exc)
            return
        self._saved.update(states)
        self._saved.difference_update(removed)
        if full:
            self._full_at = now

    async def load(self, ingest: Ingest) -> int:
        """Before leading: take the last leader's state over (a failure leaves the ingest as it is)."""
        try:
            tokens, scheduler = await self.shared.load_ingest()
        except REDIS_ERRORS as exc:
            log.warning("redis: loading the ingest state failed: %s", exc)
            return 0
        loaded = 0
        for address, raw in tokens.items():
            try:
                state = CODEC.loads(raw)
            except (ValueError, TypeError) as exc:
                log.warning("redis: the ingest state of %s is unreadable: %s", address, exc)
                continue
            if isinstance(state, TokenState) and state.address == address:
                ingest.tokens[address] = state
                loaded += 1
        if scheduler:
            try:
                adopt_scheduler_state(ingest, orjson.loads(scheduler))
            except (ValueError, TypeError, AttributeError) as exc:
                log.warning("redis: the scheduler state is unreadable: %s", exc)
        self._saved = set(tokens)
        self._full_at = None  # our first save after taking over is a full one
        log.info("ingest: took over the state of %d tokens", loaded)
        return loaded


def scheduler_state(ingest: Ingest) -> dict[str, Any]:
    """What the scheduler knows besides the tokens: when each was refreshed from each source."""
    return {"last_refreshed": ingest.last_refreshed, "last_discovery": ingest.last_discovery,
            "sol_usd": ingest.sol_usd, "sol_usd_at": ingest.sol_usd_at}


def adopt_scheduler_state(ingest: Ingest, state: dict[str, Any]) -> None:
    refreshed = state.get("last_refreshed") or {}
    for source in ingest.clients:
        ingest.last_refreshed[source] = {a: float(t) for a, t in (refreshed.get(source) or {}).items()
                                         if a in ingest.tokens}
    if state.get("last_discovery") is not None:
        ingest.last_discovery = float(state["last_discovery"])
    if state.get("sol_usd") is not None:
        ingest.sol_usd, ingest.sol_usd_at = float(state["sol_usd"]), state.get("sol_usd_at")
