"""The market as Jupiter shows it: Tokens v2 items and Price v3 entries (upstreams.md §3).

Numbers where Jupiter sends numbers, nulls for what it does not know. Memoised until the next tick.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.demo.formats import pct
from app.demo.model import JUP_WINDOWS, Token, iso

if TYPE_CHECKING:
    from app.demo.market import Market


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
