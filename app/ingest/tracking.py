"""The tracked universe: which tokens the ingest follows, what each upstream reported for them, and which
to refresh first.

A mixin of `app.ingest.scheduler.Ingest` (its state lives there: `tokens`, `last_refreshed`, the dirty
set, the pools each source has reported). Kept apart from the cycle because every strategy (discovery,
refresh_*, candles) feeds and reads it the same way, whatever the cycle does around them; and trimming
to MAX_TOKENS is where a token leaves every table at once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Protocol

from app.ingest.candles import SevenDay
from app.ingest.context import IngestContext, Refresh
from app.ingest.merge import POOL_TTL_S, TokenState, merge_window
from app.model import MAIN_QUOTES, PoolObservation, TokenInfo
from app.sources.values import is_mint


class TrackingHost(IngestContext, Protocol):
    """What Tracking's methods need of the ingest that mixes it in: what its parts see (IngestContext,
    Tracking's own methods among them) and the tables behind it. A Protocol, so this module need not
    import app.ingest.scheduler, which imports it."""

    @property
    def _known(self) -> dict[str, dict[str, dict[str, float]]]: ...  # source -> mint -> pool -> last seen

    @property
    def _dirty(self) -> set[str]: ...

    @property
    def _restored(self) -> dict[str, float]: ...

    @property
    def seven_day(self) -> SevenDay: ...

    @property
    def strategies(self) -> Mapping[str, Refresh]: ...


class Tracking:
    """Tracking, feeding and ranking tokens, for the ingest that mixes it in."""

    def track(self: TrackingHost, mints: Iterable[str]) -> list[TokenState]:
        """The states of `mints`, new ones tracked. SOL, USDC and USDT are never tracked as meme tokens."""
        states = []
        for mint in mints:
            if mint in MAIN_QUOTES or not is_mint(mint):
                continue
            state = self.tokens.get(mint)
            if state is None:
                state = self.tokens[mint] = TokenState(mint)
            states.append(state)
        return states

    def take_pools(self: TrackingHost, source: str, pools: Iterable[PoolObservation], now: float) -> None:
        known = self._known.setdefault(source, {})
        seen = self.last_refreshed.setdefault(source, {})
        for pool in pools:
            if pool.base_address in MAIN_QUOTES:
                continue
            for state in self.track([pool.base_address]):
                state.add_pool(pool)
                self._dirty.add(state.address)
                seen[state.address] = now
                known.setdefault(state.address, {})[pool.pool_address] = now

    def take_infos(self: TrackingHost, infos: Iterable[TokenInfo], now: float, replace_stats: bool) -> None:
        for info in infos:
            for state in self.track([info.address]):
                old = state.infos.get(info.source)
                if old is not None and not replace_stats:
                    info = replace(old, price_usd=info.price_usd, liquidity_usd=info.liquidity_usd,
                                   observed_at=info.observed_at,
                                   stats={**old.stats, **{w: merge_window(old.stats.get(w), s)
                                                          for w, s in info.stats.items()}})
                state.infos[info.source] = info
                self._dirty.add(state.address)
                self.last_refreshed.setdefault(info.source, {})[state.address] = now

    def known_pools(self: TrackingHost, source: str) -> dict[str, dict[str, float]]:
        """mint -> the pools `source` has reported for it (-> when last), those unseen for 30 minutes gone."""
        known = self._known.setdefault(source, {})
        now = self.clock()
        for mint in [m for m, pools in known.items() if m not in self.tokens or not pools]:
            del known[mint]
        for pools in known.values():
            for address in [a for a, at in pools.items() if now - at > POOL_TTL_S]:
                del pools[address]
        return known

    def mark_dirty(self: TrackingHost, address: str) -> None:
        self._dirty.add(address)

    def priority(self: TrackingHost, source: str, candidates: Iterable[TokenState] | None = None) -> list[str]:
        """Most active and most stale first; never-refreshed tokens before all others."""
        now = self.clock()
        seen = self.last_refreshed.get(source, {})

        def key(state: TokenState) -> tuple[int, float]:
            last = seen.get(state.address)
            if last is None:
                return (0, 0.0)
            return (1, -(now - last) * (1.0 + math.log10(1.0 + state.activity())))

        return [s.address for s in sorted(self.tokens.values() if candidates is None else candidates, key=key)]

    def _trim(self: TrackingHost) -> list[str]:
        """Drop the least active tokens past MAX_TOKENS from every table; their addresses."""
        excess = len(self.tokens) - self.settings.max_tokens
        if excess <= 0:
            return []
        # Tokens not yet refreshed have no activity to judge by: they are kept until they have data.
        least_active = sorted(self.tokens.values(),
                              key=lambda s: (s.activity() if s.has_data() else math.inf, s.address))[:excess]
        for state in least_active:
            del self.tokens[state.address]
            for seen in self.last_refreshed.values():
                seen.pop(state.address, None)
            self._dirty.discard(state.address)
            self._restored.pop(state.address, None)
            self.seven_day.forget(state.address)
            for strategy in self.strategies.values():
                strategy.forget(state.address)
        return [state.address for state in least_active]
