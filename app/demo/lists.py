"""The truth behind every discovery endpoint of the simulated market: feeds, trending, new, top lists.

`MarketLists` is a mixin of `app.demo.market.Market`; each list is memoised until the next tick.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from app.demo.model import (
    GT_DURATIONS,
    JUP_CATEGORIES,
    JUP_WINDOW_INDEX,
    JUP_WINDOWS,
    NEW_POOL_WINDOW_S,
    ForeignItem,
    Pool,
    Token,
)


class MarketLists:
    """Discovery lists over the market's state."""

    tokens: list[Token]
    pools: dict[str, Pool]
    profiles: list[Token | ForeignItem]
    boosts: list[tuple[Token | ForeignItem, int]]
    top_foreign: list[ForeignItem]
    now: Callable[[], float]

    def cached(self, key: Any, fn: Callable[[], Any]) -> Any:  # pragma: no cover - Market's
        raise NotImplementedError

    def gt_visible(self, p: Pool) -> bool:  # pragma: no cover - Market's
        raise NotImplementedError

    def ds_profiles(self) -> list[Token | ForeignItem]:
        return list(self.profiles)

    def ds_boosts_latest(self) -> list[tuple[Token | ForeignItem, int]]:
        return list(self.boosts)

    def ds_boosts_top(self) -> list[Token | ForeignItem]:
        def build() -> list[Token | ForeignItem]:
            ranked = sorted((t for t in self.tokens if t.boost_total > 0), key=lambda t: (-t.boost_total, t.index))
            out: list[Token | ForeignItem] = list(ranked[:27])
            for j, f in enumerate(self.top_foreign):
                out.insert(min(len(out), 4 + 9 * j), f)
            return out[:30]

        return self.cached(("ds_boosts_top",), build)

    def gt_trending(self, duration: str = "24h") -> list[Pool]:
        """Up to 200 GeckoTerminal pools (10 pages of 20), trending first."""
        i = dict(GT_DURATIONS)[duration]
        d = [k for k, _ in GT_DURATIONS].index(duration)

        def build() -> list[Pool]:
            scored = []
            for t in self.tokens:
                hype = t.gt_hype[d]
                for p in t.pools:
                    if self.gt_visible(p):
                        st = p.gt_state
                        scored.append((st[4][i] * (1.0 + abs(st[5][i]) / 10.0) * hype, p))
            scored.sort(key=lambda x: -x[0])
            return [p for _, p in scored[:200]]

        return self.cached(("gt_trending", duration), build)

    def gt_new_pools(self) -> list[Pool]:
        """GeckoTerminal pools created in the last 48 h, newest first, up to 200."""

        def build() -> list[Pool]:
            cutoff = self.now() - NEW_POOL_WINDOW_S
            pools = [p for p in self.pools.values()
                     if p.created_at >= cutoff and not p.base.special and self.gt_visible(p)]
            pools.sort(key=lambda p: (-p.created_at, p.address))
            return pools[:200]

        return self.cached(("gt_new_pools",), build)

    def jup_top(self, category: str, window: str, limit: int = 100) -> list[Token]:
        i = JUP_WINDOW_INDEX[window]
        w = [k for k, _ in JUP_WINDOWS].index(window)

        def build() -> list[Token]:
            known = [t for t in self.tokens if t.jup_known]
            if category == "toptraded":
                key = lambda t: -t.volume(i)  # noqa: E731
            elif category == "toporganicscore":
                key = lambda t: -(t.organic_score * t.organic_jitter[w])  # noqa: E731
            elif category == "toptrending":
                # momentum, with a strong lean towards young tokens
                young = self.now() - 3 * 86400

                def key(t: Token) -> float:
                    if t.quiet:
                        return 0.0
                    boost = 4.0 if t.created_at > young else 1.0
                    return -(t.hype[w] * boost * math.exp(max(-3.0, min(3.0, t.change(i) / 50.0))))
            else:
                raise KeyError(category)
            known.sort(key=lambda t: (key(t), t.index))
            return known[:100]

        return self.cached(("jup_top", category, window), build)[:limit]

    def jup_recent(self) -> list[Token]:
        def build() -> list[Token]:
            known = [t for t in self.tokens if t.jup_known]
            known.sort(key=lambda t: (-min(p.created_at for p in t.pools), t.index))
            return known[:30]

        return self.cached(("jup_recent",), build)

    def discoverable(self) -> set[str]:
        """Every mint that any discovery endpoint (any page, window or duration) can return now."""
        out: set[str] = set()
        for item in self.ds_profiles():
            if isinstance(item, Token):
                out.add(item.mint)
        for item, _ in self.ds_boosts_latest():
            if isinstance(item, Token):
                out.add(item.mint)
        for item in self.ds_boosts_top():
            if isinstance(item, Token):
                out.add(item.mint)
        for duration, _ in GT_DURATIONS:
            out.update(p.base.mint for p in self.gt_trending(duration))
        out.update(p.base.mint for p in self.gt_new_pools())
        for category in JUP_CATEGORIES:
            for window, _ in JUP_WINDOWS:
                out.update(t.mint for t in self.jup_top(category, window))
        out.update(t.mint for t in self.jup_recent())
        return out

    def first_calls_discoverable(self) -> set[str]:
        """Mints returned by one call each to the nine main discovery endpoints (1h lists, page 1)."""
        out: set[str] = set()
        out.update(t.mint for t in self.ds_profiles() if isinstance(t, Token))
        out.update(t.mint for t, _ in self.ds_boosts_latest() if isinstance(t, Token))
        out.update(t.mint for t in self.ds_boosts_top() if isinstance(t, Token))
        for category in JUP_CATEGORIES:
            out.update(t.mint for t in self.jup_top(category, "1h"))
        out.update(t.mint for t in self.jup_recent())
        out.update(p.base.mint for p in self.gt_trending("24h")[:20])
        out.update(p.base.mint for p in self.gt_new_pools()[:20])
        return out
