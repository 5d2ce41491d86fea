"""The market as DexScreener shows it: pairs, and the profile and boost feeds (upstreams.md §1).

Strings where DexScreener sends strings (`priceNative`, `priceUsd`), nulls and absent blocks where it has
them. Pair objects are memoised until the next tick (`Market.cached`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.demo.formats import dec, pct
from app.demo.model import DS_WINDOWS, JUNK_FACTOR, ForeignItem, Pool, Token

if TYPE_CHECKING:
    from app.demo.market import Market


def ds_pair(m: Market, p: Pool) -> dict[str, Any]:
    return m.cached(("ds_pair", p.address), lambda: _ds_pair(m, p))


def _ds_pair(m: Market, p: Pool) -> dict[str, Any]:
    t, q = p.base, p.quote
    # A pool quoted in an illiquid token: its USD figures come from an unreliable quote price.
    factor = JUNK_FACTOR if p.junk else 1.0
    price_usd = p.price_usd * factor
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
        pair["liquidity"] = {"usd": round(p.liquidity * factor, 2), "base": round(half / p.price_usd),
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


def ds_token_pairs(m: Market, mint: str) -> list[Pool]:
    """DexScreener pools naming a token: where it is the base, and where it is the quote (the quirk).
    Uncut: the server cuts each whole answer at 30 pairs."""

    def build() -> list[Pool]:
        t = m.by_mint.get(mint)
        if t is None:
            return []
        return [p for p in (*t.pools, *t.quote_pools) if m.ds_visible(p)]

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
