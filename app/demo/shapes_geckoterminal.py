"""The market as GeckoTerminal shows it: JSON:API pools and tokens, simple prices, OHLCV (upstreams.md §2).

Nearly every decimal a string, as GeckoTerminal sends it. Pool objects are memoised until the next tick.
"""

from __future__ import annotations

import hashlib
import math
import random
from typing import TYPE_CHECKING, Any

from app.demo.formats import dec, pct_str
from app.demo.model import GRADUATION_MCAP_USD, GT_DEX_NAMES, JUNK_FACTOR, WINDOWS, Pool, Token

if TYPE_CHECKING:
    from app.demo.market import Market


def gt_token_ref(t: Token) -> dict[str, Any]:
    return {"id": f"solana_{t.mint}", "type": "token"}


def gt_included_token(m: Market, t: Token) -> dict[str, Any]:
    return {
        "id": f"solana_{t.mint}",
        "type": "token",
        "attributes": {
            "address": t.mint, "name": t.name, "symbol": t.symbol, "decimals": t.decimals,
            "image_url": m.image_url(t, "geckoterminal") if (t.index % 13) else "missing.png",
            "coingecko_coin_id": t.coingecko_id,
        },
    }


def gt_included_dex(dex_id: str) -> dict[str, Any]:
    return {"id": dex_id, "type": "dex", "attributes": {"name": GT_DEX_NAMES.get(dex_id, dex_id.title())}}


def gt_pool(m: Market, p: Pool) -> dict[str, Any]:
    return m.cached(("gt_pool", p.address), lambda: _gt_pool(m, p))


def gt_sides(p: Pool) -> tuple[Token, Token]:
    """(base, quote) as GeckoTerminal orients the pool: some SOL/USDC pools the other way round."""
    return (p.quote, p.base) if p.gt_reversed else (p.base, p.quote)


def _gt_pool(m: Market, p: Pool) -> dict[str, Any]:
    price, qp, sol, liq, vols, changes, trades, quote_changes = p.gt_state
    if p.junk:  # quoted in an illiquid token: USD figures from its unreliable price
        price, qp, liq = price * JUNK_FACTOR, qp * JUNK_FACTOR, liq * JUNK_FACTOR
    age = m.now() - p.created_at
    fresh = p.gt_dex == "pump-fun" and age < 1800
    if p.gt_neg_reserve:
        reserve: str | None = "-" + dec(liq * 0.37 + 1.0, 8)
    else:
        reserve = None if fresh else dec(liq, 8)
    t, q = gt_sides(p)
    if p.gt_reversed:  # GeckoTerminal's base is the pool's quote: its prices, its changes, its trades
        price, qp, changes = qp, price, quote_changes
        trades = tuple((s, b) for b, s in trades)
    if age < 600:  # very new pools: the same change in every window
        changes = (changes[0],) * 6
    attrs = {
        "name": f"{t.symbol} / {q.symbol}",
        "address": p.address,
        "pool_created_at": p.created_iso,
        "base_token_price_usd": dec(price, 12),
        "base_token_price_native_currency": None if fresh else dec(price / sol, 12),
        "quote_token_price_usd": dec(qp, 12),
        "quote_token_price_native_currency": dec(qp / sol, 12),
        "base_token_price_quote_token": None if fresh else dec(price / qp, 12),
        "quote_token_price_base_token": dec(qp / price, 12),
        "fdv_usd": dec(price * t.total_supply, 10),
        "market_cap_usd": dec(price * t.circ_supply, 10) if t.gt_mcap_verified else None,
        "reserve_in_usd": reserve,
        "price_change_percentage": {w: pct_str(changes[i]) for i, w in enumerate(WINDOWS)},
        "transactions": {
            w: {"buys": b, "sells": s, "buyers": int(b * 0.62 + 0.5), "sellers": int(s * 0.58 + 0.5)}
            for w, (b, s) in zip(WINDOWS, trades)
        },
        "volume_usd": {w: dec(vols[i], 10) for i, w in enumerate(WINDOWS)},
    }
    return {
        "id": f"solana_{p.address}",
        "type": "pool",
        "attributes": attrs,
        "relationships": {
            "base_token": {"data": gt_token_ref(t)},
            "quote_token": {"data": gt_token_ref(q)},
            "dex": {"data": {"id": p.gt_dex, "type": "dex"}},
        },
    }


def gt_pool_list(m: Market, pools: list[Pool], include: set[str]) -> dict[str, Any]:
    body: dict[str, Any] = {"data": [gt_pool(m, p) for p in pools]}
    if include:
        included: list[dict[str, Any]] = []
        seen: set[str] = set()
        for p in pools:
            base, quote = gt_sides(p)
            if "base_token" in include and base.mint not in seen:
                seen.add(base.mint)
                included.append(gt_included_token(m, base))
            if "quote_token" in include and quote.mint not in seen:
                seen.add(quote.mint)
                included.append(gt_included_token(m, quote))
            if "dex" in include and p.gt_dex not in seen:
                seen.add(p.gt_dex)
                included.append(gt_included_dex(p.gt_dex))
        body["included"] = included
    return body


def gt_token(m: Market, t: Token, top_pools: list[Pool]) -> dict[str, Any]:
    main = top_pools[0] if top_pools else None
    if main is not None and main.base is t:
        price = main.gt_state[0]
    else:
        price = t.price
    reserve = sum(p.gt_state[3] / 2.0 for p in m.gt_pools(t)) if not t.special else \
        sum(p.gt_state[3] / 2.0 for p in top_pools)
    vol24 = sum(p.gt_state[4][5] for p in m.gt_pools(t)) if not t.special else \
        sum(p.gt_state[4][5] for p in top_pools)
    attrs: dict[str, Any] = {
        "address": t.mint, "name": t.name, "symbol": t.symbol, "decimals": t.decimals,
        "image_url": m.image_url(t, "geckoterminal") if (t.index % 13) else "missing.png",
        "coingecko_coin_id": t.coingecko_id,
        "normalized_total_supply": dec(t.total_supply, 12),
        "price_usd": dec(price, 12),
        "fdv_usd": dec(price * t.total_supply, 10),
        "total_reserve_in_usd": dec(reserve, 10),
        "volume_usd": {"h24": dec(vol24, 10)},
        "market_cap_usd": dec(price * t.circ_supply, 10) if t.gt_mcap_verified else None,
        "last_trade_timestamp": str(int(m.now()) - (0 if not t.quiet else 60 * min(t.quiet_ticks + 5, 600))),
    }
    if t.on_curve:
        attrs["launchpad_details"] = {
            "graduation_percentage": round(min(99.9, t.market_cap / GRADUATION_MCAP_USD * 100.0), 2),
            "completed": False,
        }
    return {
        "id": f"solana_{t.mint}",
        "type": "token",
        "attributes": attrs,
        "relationships": {"top_pools": {"data": [{"id": f"solana_{p.address}", "type": "pool"} for p in top_pools]}},
    }


def gt_token_pools(m: Market, t: Token, single: bool) -> list[Pool]:
    if single:
        top = m.gt_top_pool(t)
        return [top] if top is not None else []
    pools = m.gt_pools(t)
    if not pools and t.special:
        pools = sorted((p for p in t.quote_pools if m.gt_visible(p)), key=lambda p: -p.gt_state[3])
    return pools[:20]


def gt_known(m: Market, t: Token) -> bool:
    return m.gt_top_pool(t) is not None


def gt_simple_price(m: Market, tokens: list[Token], flags: dict[str, bool]) -> dict[str, Any]:
    prices: dict[str, Any] = {}
    mcaps: dict[str, Any] = {}
    vols: dict[str, Any] = {}
    changes: dict[str, Any] = {}
    reserves: dict[str, Any] = {}
    for t in tokens:
        top = m.gt_top_pool(t)
        if top is None:
            continue
        if top.base is t:
            price, _, _, _, tv, tc, _, _ = top.gt_state
            change = tc[5]
        else:
            price, change = t.price, t.change(5)
        prices[t.mint] = dec(price, 12)
        mcap = dec(price * t.circ_supply, 10) if t.gt_mcap_verified else None
        if mcap is None and flags.get("mcap_fdv_fallback"):
            mcap = dec(price * t.total_supply, 10)
        mcaps[t.mint] = mcap
        pools = m.gt_pools(t) or [top]
        vols[t.mint] = dec(sum(p.gt_state[4][5] for p in pools), 10)
        changes[t.mint] = pct_str(change)
        reserves[t.mint] = dec(sum(p.gt_state[3] / 2.0 for p in pools), 10)
    attrs: dict[str, Any] = {"token_prices": prices}
    if flags.get("include_market_cap"):
        attrs["market_cap_usd"] = mcaps
    if flags.get("include_24hr_vol"):
        attrs["h24_volume_usd"] = vols
    if flags.get("include_24hr_price_change"):
        attrs["h24_price_change_percentage"] = changes
    if flags.get("include_total_reserve_in_usd"):
        attrs["total_reserve_in_usd"] = reserves
    rid = hashlib.md5(",".join(t.mint for t in tokens).encode()).hexdigest()
    rid = f"{rid[:8]}-{rid[8:12]}-{rid[12:16]}-{rid[16:20]}-{rid[20:32]}"
    return {"data": {"id": rid, "type": "simple_token_price", "attributes": attrs}}


_TIMEFRAMES = {"day": (86400, (1,)), "hour": (3600, (1, 4, 12)), "minute": (60, (1, 5, 15))}


def gt_ohlcv(m: Market, p: Pool, timeframe: str, aggregate: int, limit: int, currency: str, t: Token,
             before: int | None, empty_intervals: bool = False) -> dict[str, Any]:
    """Candles of token `t` in pool `p`, newest first, back to the pool's creation: a deterministic path
    ending at today's price. Some days have no trade (more of them for a quiet token); such a day is a
    row (flat, volume 0) only with `empty_intervals` (`include_empty_intervals=true`)."""
    period = _TIMEFRAMES[timeframe][0] * aggregate
    other = p.base if t is p.quote else p.quote
    now = m.now()
    price_now = p.price_usd if t is p.base else p.quote.price
    divisor = other.price if currency == "token" else 1.0
    vol_rate = p.vols[5] / 86400.0  # USD per second, today's pace
    sigma = min(0.6, max(0.002, t.sigma * math.sqrt(period / m.tick_seconds)))
    empty_rate = 0.3 if p.base.quiet else 0.04
    current_start = int(now // period * period)
    end = current_start if before is None else min(current_start, int((before - 1) // period * period))
    first = int(p.created_at // period * period)
    rows: list[list[float]] = []
    # Walk backwards from the current candle; each candle's move is fixed by (pool, timeframe, start).
    start = current_start
    close = price_now
    seed = f"{p.address}:{period}"
    steps = 0
    while start >= first and len(rows) < limit and steps < 5000:
        rng = random.Random(f"{seed}:{start}")
        move = rng.gauss(0.0, sigma)
        open_ = close / math.exp(move)
        hi = max(open_, close) * (1.0 + abs(rng.gauss(0, sigma * 0.4)))
        lo = min(open_, close) / (1.0 + abs(rng.gauss(0, sigma * 0.4)))
        span = min(now, start + period) - max(start, p.created_at)
        vol = vol_rate * max(span, 0.0) * math.exp(rng.gauss(0, 0.5))
        if start != current_start and random.Random(f"{seed}:{start}:empty").random() < empty_rate:
            open_ = hi = lo = close
            vol = 0.0
        if start <= end and (vol > 0 or empty_intervals):
            rows.append([start, open_ / divisor, hi / divisor, lo / divisor, close / divisor, round(vol, 4)])
        close = open_
        start -= period
        steps += 1
    rid = hashlib.md5(f"{p.address}:{timeframe}:{aggregate}:{now // 60}".encode()).hexdigest()
    return {
        "data": {"id": rid, "type": "ohlcv_request_response", "attributes": {"ohlcv_list": rows}},
        "meta": {
            "base": {"address": t.mint, "name": t.name, "symbol": t.symbol, "coingecko_coin_id": t.coingecko_id},
            "quote": {"address": other.mint, "name": other.name, "symbol": other.symbol,
                      "coingecko_coin_id": other.coingecko_id},
        },
    }


def gt_timeframe_ok(timeframe: str, aggregate: int) -> bool:
    spec = _TIMEFRAMES.get(timeframe)
    return spec is not None and aggregate in spec[1]
