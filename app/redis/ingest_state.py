"""The ingest's working state in Redis, so that a new leader carries on instead of starting over.

After each of its cycles the leader saves the state of the tokens its version changed (each token's pools
and token-level figures by source), a rotating share of the others (so every tracked token is saved at
least every FULL_EVERY_S without one long pause), and what the scheduler knows (when each token was last
refreshed from each source, the last discovery). A leader
taking over loads it before its first cycle: its records come from the store's latest version, and the
state behind them from here, so nothing is re-discovered or held back waiting for every source again.
Writes are fenced like commits: a stale leader cannot overwrite its successor's state.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import anyio.lowlevel
import orjson

from app.ingest.handover import WorkingState
from app.ingest.merge import TokenState
from app.redis.changelog import CommitRejected
from app.redis.connection import REDIS_ERRORS
from app.redis.shared import SharedState
from app.redis.statecodec import StateCodec
from app.store.versions import Version

log = logging.getLogger("app.redis")

CODEC = StateCodec(TokenState)
FULL_EVERY_S = 60.0


class IngestStateShare:
    def __init__(self, shared: SharedState, refresh_interval_s: float = 10.0):
        self.shared = shared
        self._share = max(1.0, FULL_EVERY_S / refresh_interval_s)  # cycles per full rotation
        self._rotation: list[str] = []  # tokens still to save in this rotation
        self._saved: set[str] = set()  # the tokens Redis holds a state for, as far as we know

    async def save(self, ingest: WorkingState, version: Version | None, fence: int) -> None:
        """After a cycle: the tokens `version` changed and the rotation's next share, and the scheduler."""
        tokens = ingest.tokens
        touched = set(version.changed | version.removed) if version is not None else set()
        if not self._rotation:
            self._rotation = sorted(set(tokens) | self._saved)
        share = int(len(self._rotation) / self._share) + 1
        touched.update(self._rotation[-share:])
        del self._rotation[-share:]
        states = {address: CODEC.dumps(tokens[address]) for address in touched if address in tokens}
        removed = [address for address in touched if address not in tokens and address in self._saved]
        try:
            await self.shared.save_ingest(fence, states, removed, orjson.dumps(scheduler_state(ingest)))
        except CommitRejected:
            return  # no longer the leader: the successor's state stays
        except REDIS_ERRORS as exc:
            log.warning("redis: saving the ingest state failed: %s", exc)
            return
        self._saved.update(states)
        self._saved.difference_update(removed)

    async def load(self, ingest: WorkingState) -> int:
        """Before leading: take the last leader's state over (a failure leaves the ingest as it is)."""
        try:
            tokens, scheduler = await self.shared.load_ingest()
        except REDIS_ERRORS as exc:
            log.warning("redis: loading the ingest state failed: %s", exc)
            return 0
        loaded = 0
        for n, (address, raw) in enumerate(tokens.items()):
            if n % 250 == 249:
                await anyio.lowlevel.checkpoint()  # thousands of tokens: let the streams run in between
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
        self._rotation = []
        log.info("ingest: took over the state of %d tokens", loaded)
        return loaded


def scheduler_state(ingest: WorkingState) -> dict[str, Any]:
    """What the scheduler knows besides the tokens: when each was refreshed from each source."""
    return {"last_refreshed": ingest.last_refreshed, "last_discovery": ingest.last_discovery,
            "sol_usd": ingest.sol_usd, "sol_usd_at": ingest.sol_usd_at}


def adopt_scheduler_state(ingest: WorkingState, state: dict[str, Any]) -> None:
    refreshed = state.get("last_refreshed") or {}
    for source in ingest.clients:
        ingest.last_refreshed[source] = {a: float(t) for a, t in (refreshed.get(source) or {}).items()
                                         if a in ingest.tokens}
    if state.get("last_discovery") is not None:
        ingest.last_discovery = float(state["last_discovery"])
    if state.get("sol_usd") is not None:
        ingest.sol_usd, ingest.sol_usd_at = float(state["sol_usd"]), state.get("sol_usd_at")
