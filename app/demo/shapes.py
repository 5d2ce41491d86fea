"""The market rendered in each upstream's exact JSON shapes (shared/upstreams.md).

Strings where the API sends strings (DexScreener `priceNative`/`priceUsd`, nearly every GeckoTerminal
decimal), numbers where it sends numbers, nulls and absent keys where it has them. Per-pool and
per-token objects are memoised until the next tick (`Market.cached`).
"""

from __future__ import annotations

import hashlib
import math
import random
from typing import Any

from app.demo.market import (
    DS_WINDOWS,
    GRADUATION_MCAP_USD,
    GT_DEX_NAMES,
    JUP_WINDOWS,
    WINDOWS,
    ForeignItem,
    Market,
    Pool,
    Token,
    iso,
)

_log10 = math.log10
_floor = math.floor


def dec(x: float, sig: int = 10) -> str:
    """A decimal string without exponent, `sig` significant digits, trailing zeros trimmed ("1.0")."""
    if x == 0 or not math.isfinite(x):
        return "0.0"
    nd = sig - 1 - _floor(_log10(abs(x)))
    if nd <= 0:
        return f"{round(x)}.0"
    s = f"{x:.{min(nd, 30)}f}".rstrip("0")
    return s + "0" if s.endswith(".") else s


def pct(x: float, nd: int = 2) -> float:
    return round(x, nd) + 0.0


def pct_str(x: float) -> str:
    return repr(round(x, 3) + 0.0)


# ----------------------------------------------------------------------------------------------------
# DexScreener
# ----------------------------------------------------------------------------------------------------
def ds_pair(m: Market, p: Pool) -> dict[str, Any]:
    return m.cached(("ds_pair", p.address), lambda: _ds_pair(m, p))


def _ds_pair(m: Market, p: Pool) -> dict[str, Any]:
    t, q = p.base, p.quote
    price_usd = p.price_usd
    pair: dict[str, Any] = {
        "chainId": "solana",
        "dexId": p.ds_dex,
        "url": f"https://dexscreener.com/solana/{p.address.lower()}",
        "pairAddress": p.address,
    }
    if p.ds_labels:
        pair["labels"] = list(p.ds_labels)
    elif p.q_null_labels:
        pair["labels"] = None
    pair["baseToken"] = {"address": t.mint, "name": t.name, "symbol": t.symbol}
    pair["quoteToken"] = {"address": q.mint, "name": q.name, "symbol": q.symbol}
    pair["priceNative"] = dec(p.price_native, 5)
    pair["priceUsd"] = None if p.q_null_price else dec(price_usd, 5)
    age = m.now() - p.created_at
    txns: dict[str, Any] = {}
    volume: dict[str, Any] = {}
    change: dict[str, Any] = {}
    drop = p.q_drop
    for key, i in DS_WINDOWS:
        if key == drop == "m5":
            continue  # this pair lacks the window everywhere
        buys, sells = p.trades(i)
        txns[key] = {"buys": buys, "sells": sells}
        volume[key] = round(p.vols[i], 2)
        if key != drop and (i < 4 or age >= 3600 * (1 if i == 4 else 6)):
            change[key] = pct(t.change(i))
    pair["txns"] = txns
    pair["volume"] = volume
    pair["priceChange"] = change
    if p.completed:
        pair["liquidity"] = {"usd": 0, "base": 0, "quote": 0}
    elif not p.q_no_liquidity:
        half = p.liquidity / 2.0
        pair["liquidity"] = {"usd": round(p.liquidity, 2), "base": round(half / price_usd),
                             "quote": round(half / q.price, 4)}
    fdv: int | None = round(price_usd * t.total_supply)
    mcap: int | None = round(price_usd * t.circ_supply)
    created: int | None = p.created_ms
    if p.q_null_fields:
        k = int(p.order_key * 3)
        if k == 0:
            fdv = mcap = None
        elif k == 1:
            mcap = None
        else:
            created = None
    pair["fdv"] = fdv
    pair["marketCap"] = mcap
    pair["pairCreatedAt"] = created
    if t.has_info and not t.special:
        info: dict[str, Any] = {"imageUrl": m.image_url(t, "dexscreener")}
        header = m.header_url(t)
        if header:
            info["header"] = header
            info["openGraph"] = f"https://cdn.dexscreener.com/token-images/og/solana/{t.mint}"
        info["websites"] = [{"label": "Website", "url": t.website}] if t.website else []
        socials = []
        if t.twitter:
            socials.append({"platform": "twitter", "handle": t.twitter.rsplit("/", 1)[-1]})
        if t.telegram:
            socials.append({"platform": "telegram", "handle": t.telegram.rsplit("/", 1)[-1]})
        info["socials"] = socials
        pair["info"] = info
    if t.boost_active:
        pair["boosts"] = {"active": t.boost_active}
    return pair


def ds_token_pairs(m: Market, mint: str, cap: int = 30) -> list[Pool]:
    """DexScreener pools for a token: where it is the base, and where it is the quote (the quirk)."""

    def build() -> list[Pool]:
        t = m.by_mint.get(mint)
        if t is None:
            return []
        base = [p for p in t.pools if m.ds_visible(p)]
        quote = [p for p in t.quote_pools if m.ds_visible(p)]
        if len(quote) > cap:
            quote = sorted(quote, key=lambda p: -p.liquidity)[: max(0, cap - len(base))]
        pools = base + quote
        # No promised order: mix base-side and quote-side pairs.
        pools.sort(key=lambda p: p.order_key)
        return pools[:cap]

    return m.cached(("ds_token_pairs", mint), build)


def ds_feed_item(m: Market, item: Token | ForeignItem, amount: int | None, boosted: bool) -> dict[str, Any]:
    if isinstance(item, ForeignItem):
        out: dict[str, Any] = {
            "url": f"https://dexscreener.com/{item.chain}/{item.address}",
            "chainId": item.chain,
            "tokenAddress": item.address,
            "icon": f"https://dd.dexscreener.com/ds-data/tokens/{item.chain}/{item.address}.png",
            "header": None,
            "description": "not on solana",
            "links": [{"type": "twitter", "label": None, "url": f"https://x.com/{item.address[2:10]}"}],
        }
        if boosted:
            out["amount"] = amount if amount is not None else item.total
            out["totalAmount"] = item.total
        return out
    t = item
    links: list[dict[str, Any]] = []
    if t.website:
        links.append({"label": "Website", "url": t.website})
    if t.twitter:
        links.append({"type": "twitter", "label": None, "url": t.twitter})
    if t.telegram:
        links.append({"type": "telegram", "label": None, "url": t.telegram})
    out = {
        "url": f"https://dexscreener.com/solana/{t.mint}",
        "chainId": "solana",
        "tokenAddress": t.mint,
        "icon": m.image_url(t, "dexscreener") if (t.index % 11) else None,
        "header": m.header_url(t),
        "description": t.description,
        "links": links or None,
    }
    if boosted:
        out["amount"] = amount if amount is not None else max(t.boost_active, 10)
        out["totalAmount"] = max(t.boost_total, out["amount"])
    return out


# ----------------------------------------------------------------------------------------------------
# GeckoTerminal
# ----------------------------------------------------------------------------------------------------
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


def _gt_pool(m: Market, p: Pool) -> dict[str, Any]:
    t, q = p.base, p.quote
    price, qp, sol, liq, vols, changes, trades = p.gt_state
    age = m.now() - p.created_at
    fresh = p.gt_dex == "pump-fun" and age < 1800
    if p.gt_neg_reserve:
        reserve: str | None = "-" + dec(liq * 0.37 + 1.0, 8)
    else:
        reserve = None if fresh else dec(liq, 8)
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
            if "base_token" in include and p.base.mint not in seen:
                seen.add(p.base.mint)
                included.append(gt_included_token(m, p.base))
            if "quote_token" in include and p.quote.mint not in seen:
                seen.add(p.quote.mint)
                included.append(gt_included_token(m, p.quote))
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
            price, _, _, _, tv, tc, _ = top.gt_state
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


def gt_ohlcv(m: Market, p: Pool, timeframe: str, aggregate: int, limit: int, currency: str, token: str,
             before: int | None) -> dict[str, Any]:
    """Candles newest first, back to the pool's creation: a deterministic path ending at today's price."""
    period = _TIMEFRAMES[timeframe][0] * aggregate
    t = p.quote if token == "quote" else p.base
    other = p.base if t is p.quote else p.quote
    now = m.now()
    price_now = p.price_usd if t is p.base else p.quote.price
    divisor = other.price if currency == "token" else 1.0
    vol_rate = p.vols[5] / 86400.0  # USD per second, today's pace
    sigma = min(0.6, max(0.002, t.sigma * math.sqrt(period / m.tick_seconds)))
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
        if start <= end:
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


# ----------------------------------------------------------------------------------------------------
# Jupiter
# ----------------------------------------------------------------------------------------------------
def _jup_liquidity(t: Token) -> float:
    if t.special:
        return sum(p.liquidity for p in t.pools) * 12.0 if t.pools else 3.1e8
    return t.liquidity


def jup_price(m: Market, t: Token) -> dict[str, Any]:
    return m.cached(("jup_price", t.mint), lambda: _jup_price(m, t))


def _jup_price(m: Market, t: Token) -> dict[str, Any]:
    age = m.now() - t.created_at
    return {
        "createdAt": t.created_iso_ms,
        "liquidity": round(_jup_liquidity(t), 2),
        "usdPrice": t.price,
        "blockId": None if t.block_lag == 5 else m.block_id - t.block_lag,
        "decimals": t.decimals,
        "priceChange24h": None if age < 3600 else pct(t.change(5), 4),
    }


def _jup_stats(m: Market, t: Token, w: str, i: int) -> dict[str, Any] | None:
    if w in t.jup_null_stats or (t.quiet and i == 0) or (t.special and not t.pools):
        return None
    buy_vol = sell_vol = 0.0
    buys = sells = 0
    for p in t.pools:
        v = p.vols[i]
        buy_vol += v * p.buy_ratio
        sell_vol += v * (1.0 - p.buy_ratio)
        b, s = p.trades(i)
        buys += b
        sells += s
    organic = t.organic_score / 125.0
    nxt = t.volume(i + 1) * WIN_RATIO[i] if i < 5 else None
    vol = buy_vol + sell_vol
    volume_change = (vol / nxt - 1.0) * 100.0 if nxt else 0.0
    href = t.holder_refs[i]
    change = t.change(i)
    return {
        "priceChange": pct(change, 4),
        "holderChange": pct((t.holders / href - 1.0) * 100.0 if href else 0.0, 4),
        "liquidityChange": pct(change * 0.5, 4),
        "volumeChange": pct(volume_change, 4),
        "buyVolume": round(buy_vol, 2),
        "sellVolume": round(sell_vol, 2),
        "buyOrganicVolume": round(buy_vol * organic, 2),
        "sellOrganicVolume": round(sell_vol * organic, 2),
        "numBuys": buys,
        "numSells": sells,
        "numTraders": int((buys + sells) * 0.55 + 0.5),
        "numOrganicBuyers": int(buys * organic * 0.6),
        "numNetBuyers": int((buys - sells) * 0.4),
    }


# window i compared with the same length of time inside window i+1 (m5 vs h1 uses index 3 here)
WIN_RATIO = (300 / 900, 900 / 1800, 1800 / 3600, 3600 / 21600, 21600 / 86400)


def jup_token(m: Market, t: Token) -> dict[str, Any]:
    return m.cached(("jup_token", t.mint), lambda: _jup_token(m, t))


def _jup_token(m: Market, t: Token) -> dict[str, Any]:
    priced = m.jup_priced(t)
    price = t.price if priced else None
    first = min(t.pools, key=lambda p: p.created_at) if t.pools else None
    out: dict[str, Any] = {
        "id": t.mint,
        "name": t.name,
        "symbol": t.symbol,
        "icon": m.image_url(t, "jupiter"),
        "decimals": t.decimals,
        "tokenProgram": t.token_program,
        "createdAt": t.created_iso,
        "twitter": t.twitter,
        "website": t.website,
        "dev": t.dev,
        "circSupply": round(t.circ_supply, 6),
        "totalSupply": round(t.total_supply, 6),
        "launchpad": t.launchpad,
        "graduatedPool": t.graduated_pool,
        "graduatedAt": iso(t.graduated_at) if t.graduated_at else None,
        "holderCount": int(t.holders),
        "fdv": round(price * t.total_supply, 2) if price is not None else None,
        "mcap": round(price * t.circ_supply, 2) if price is not None else None,
        "usdPrice": price,
        "priceBlockId": (None if t.block_lag == 5 else m.block_id - t.block_lag) if priced else None,
        "liquidity": round(_jup_liquidity(t), 2),
    }
    for w, i in JUP_WINDOWS:
        out[f"stats{w}"] = _jup_stats(m, t, w, i)
    out["firstPool"] = {"id": first.address, "createdAt": first.created_iso} if first else None
    out["audit"] = dict(t.audit) if t.audit else None
    out["organicScore"] = t.organic_score
    out["organicScoreLabel"] = "high" if t.organic_score >= 70 else ("medium" if t.organic_score >= 30 else "low")
    out["isVerified"] = bool(t.verified)
    out["tags"] = list(t.tags or [])
    out["updatedAt"] = iso(m.now(), ms=True)
    return out
