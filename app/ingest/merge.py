"""Pools and token-level figures -> one record per mint, exactly as CONTRACT §2 prescribes.

`TokenState` gathers what every source said about one mint; `merge` turns it into a record. The
merge is a pure function of the state, the cycle's SOL/USD price and the time, so it is easy to test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from app.model import POOL_WINDOWS, SOURCES, WSOL_MINT, PoolObservation, Record, TokenInfo
from app.sources.values import iso

# A pool not seen again for this long is forgotten (it may have been drained or delisted).
POOL_TTL_S = 1800.0

EMPTY_WINDOW: dict[str, None] = {"volume_usd": None, "volume_sol": None, "price_change": None, "buys": None,
                                 "sells": None}


@dataclass
class TokenState:
    """Everything known about one mint, by source."""

    address: str
    pools: dict[str, PoolObservation] = field(default_factory=dict)  # by pool address: freshest wins
    infos: dict[str, TokenInfo] = field(default_factory=dict)  # token-level figures by source
    profile_icon: str | None = None
    seven_day: dict[str, float | None] | None = None  # {"volume_usd", "price_change"} from candles/history

    def add_pool(self, pool: PoolObservation) -> None:
        """Keep the fresher observation of a pool, whichever source made it."""
        old = self.pools.get(pool.pool_address)
        if old is None or pool.observed_at >= old.observed_at:
            self.pools[pool.pool_address] = pool

    def replace_source_pools(self, source: str, pools: list[PoolObservation]) -> None:
        """A source's complete answer for this mint: its pools missing from the answer are gone."""
        seen = {pool.pool_address for pool in pools}
        for address in [a for a, p in self.pools.items() if p.source == source and a not in seen]:
            del self.pools[address]
        for pool in pools:
            self.add_pool(pool)

    def expire(self, now: float) -> None:
        for address in [a for a, p in self.pools.items() if now - p.observed_at > POOL_TTL_S]:
            del self.pools[address]

    def activity(self) -> float:
        """24h USD volume, the measure of 'most active' for scheduling and MAX_TOKENS."""
        total = 0.0
        for pool in self.pools.values():
            stats = pool.stats.get("24h")
            if stats is not None and stats.volume_usd is not None:
                total += stats.volume_usd
        if not self.pools:
            info = self.infos.get("jupiter")
            stats = info.stats.get("24h") if info else None
            if stats is not None and stats.volume_usd is not None:
                total = stats.volume_usd
        return total

    def has_data(self) -> bool:
        return bool(self.pools or self.infos)


def _main_pool(pools: list[PoolObservation]) -> PoolObservation:
    """Most liquidity_usd; unknown liquidity counts lowest; ties by pool address for a stable choice."""
    return max(pools, key=lambda p: (p.liquidity_usd is not None, p.liquidity_usd or 0.0, p.pool_address))


def main_pool(state: TokenState) -> PoolObservation | None:
    """The pool that gives a token's price (the most liquidity), or None without pools."""
    return _main_pool(list(state.pools.values())) if state.pools else None


def _div(value: float | None, sol_usd: float | None) -> float | None:
    if value is None or not sol_usd:
        return None
    return value / sol_usd


def _pool_stats(pools: list[PoolObservation], main: PoolObservation,
                sol_usd: float | None) -> dict[str, dict[str, float | int | None]]:
    """Per window: volume, buys and sells summed over the pools; the price change of the main pool.

    This runs for every token every cycle, so it is written for speed: one pool (most tokens) is
    copied directly, and sums skip unknown figures without building intermediate lists.
    """
    stats: dict[str, dict[str, float | int | None]] = {}
    main_stats = main.stats
    for window in POOL_WINDOWS:
        if len(pools) == 1:
            s = main_stats.get(window)
            if s is None:
                stats[window] = dict(EMPTY_WINDOW)
                continue
            volume, buys, sells = s.volume_usd, s.buys, s.sells
            change = s.price_change
        else:
            volume = buys = sells = None
            for pool in pools:
                s = pool.stats.get(window)
                if s is None:
                    continue
                if s.volume_usd is not None:
                    volume = s.volume_usd if volume is None else volume + s.volume_usd
                if s.buys is not None:
                    buys = s.buys if buys is None else buys + s.buys
                if s.sells is not None:
                    sells = s.sells if sells is None else sells + s.sells
            s = main_stats.get(window)
            change = s.price_change if s is not None else None
        stats[window] = {
            "volume_usd": volume,
            "volume_sol": volume / sol_usd if volume is not None and sol_usd else None,
            "price_change": change,
            "buys": buys,
            "sells": sells,
        }
    return stats


@lru_cache(maxsize=65536)
def _iso(seconds: float | None) -> str | None:
    """Creation times repeat every cycle: format each once."""
    return iso(seconds)


def merge(state: TokenState, sol_usd: float | None, now: float, updated_at: str | None = None) -> Record | None:
    """The record for one mint, or None when no source has said anything about it yet.

    `updated_at` is `now` formatted, passed in by callers that merge many tokens at one `now`.
    """
    pools = list(state.pools.values())
    infos = state.infos
    jupiter = infos.get("jupiter")
    gecko = infos.get("geckoterminal")
    used: set[str] = set()

    if pools:
        main = _main_pool(pools)
        used.update(p.source for p in pools)
        price_usd = main.price_usd
        if price_usd is None and main.quote_address == WSOL_MINT and main.price_native is not None and sol_usd:
            price_usd = main.price_native * sol_usd
        liquidity_usd: float | None = None
        for pool in pools:
            if pool.liquidity_usd is not None:
                liquidity_usd = (liquidity_usd or 0.0) + pool.liquidity_usd
        stats = _pool_stats(pools, main, sol_usd)
        market_cap = main.market_cap_usd
        if market_cap is None and jupiter is not None and jupiter.market_cap_usd is not None:
            market_cap, _ = jupiter.market_cap_usd, used.add("jupiter")
        if market_cap is None and gecko is not None and gecko.market_cap_usd is not None:
            market_cap, _ = gecko.market_cap_usd, used.add("geckoterminal")
        fdv = main.fdv_usd
        if fdv is None and jupiter is not None and jupiter.fdv_usd is not None:
            fdv, _ = jupiter.fdv_usd, used.add("jupiter")
        if fdv is None and gecko is not None and gecko.fdv_usd is not None:
            fdv, _ = gecko.fdv_usd, used.add("geckoterminal")
        pair_address = main.pool_address
        created_at = _iso(main.created_at)
        protocol = main.protocol
        name, symbol = main.base_name, main.base_symbol
        image = main.image_url
        if name is None or symbol is None or image is None:
            for pool in pools:
                name = name or pool.base_name
                symbol = symbol or pool.base_symbol
                image = image or pool.image_url
    else:
        # No known pool: token-level figures stand in, Jupiter's first.
        stand_in = jupiter or gecko
        if stand_in is None:
            return None
        used.add(stand_in.source)
        price_usd = stand_in.price_usd
        liquidity_usd = stand_in.liquidity_usd
        market_cap = stand_in.market_cap_usd
        fdv = stand_in.fdv_usd
        if stand_in is jupiter and gecko is not None:
            if market_cap is None and gecko.market_cap_usd is not None:
                market_cap, _ = gecko.market_cap_usd, used.add("geckoterminal")
            if fdv is None and gecko.fdv_usd is not None:
                fdv, _ = gecko.fdv_usd, used.add("geckoterminal")
        stats = {}
        for window in POOL_WINDOWS:
            s = stand_in.stats.get(window)
            if s is None:
                stats[window] = dict(EMPTY_WINDOW)
                continue
            stats[window] = {
                "volume_usd": s.volume_usd,
                "volume_sol": _div(s.volume_usd, sol_usd),
                "price_change": s.price_change,
                "buys": s.buys,
                "sells": s.sells,
            }
        pair_address = None
        created_at = _iso(stand_in.created_at)
        protocol = stand_in.protocol
        name, symbol, image = None, None, None

    for info in (jupiter, gecko):
        if info is None:
            continue
        if name is None and info.name is not None:
            name = info.name
            used.add(info.source)
        if symbol is None and info.symbol is not None:
            symbol = info.symbol
            used.add(info.source)
        if image is None and info.image_url is not None:
            image = info.image_url
            used.add(info.source)
    if image is None and state.profile_icon is not None:
        image = state.profile_icon
        used.add("dexscreener")

    seven = state.seven_day
    volume_7d = seven.get("volume_usd") if seven else None
    stats["7d"] = {
        "volume_usd": volume_7d,
        "volume_sol": _div(volume_7d, sol_usd),
        "price_change": seven.get("price_change") if seven else None,
        "buys": None,
        "sells": None,
    }
    day = stats["24h"]
    buys, sells = day["buys"], day["sells"]
    return {
        "token_address": state.address,
        "token_name": name,
        "token_ticker": symbol,
        "price_sol": _div(price_usd, sol_usd),
        "market_cap_sol": _div(market_cap, sol_usd),
        "volume_sol": day["volume_sol"],
        "liquidity_sol": _div(liquidity_usd, sol_usd),
        "transaction_count": (buys or 0) + (sells or 0) if buys is not None or sells is not None else None,
        "price_1hr_change": stats["1h"]["price_change"],
        "protocol": protocol,
        "price_usd": price_usd,
        "market_cap_usd": market_cap,
        "fdv_usd": fdv,
        "liquidity_usd": liquidity_usd,
        "pair_address": pair_address,
        "created_at": created_at,
        "image_url": image,
        "stats": stats,
        "sources": [source for source in SOURCES if source in used],
        "updated_at": updated_at or iso(now),
    }
