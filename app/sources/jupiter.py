"""Jupiter Tokens v2 and Price v3: what to ask and what the answer means (pure; no HTTP here).

Shapes are those of shared/upstreams.md §3. Jupiter's figures are per token (across all its pools).
Every figure passes through `values`; only a wrong top-level shape raises `UpstreamFormatError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from app.model import WSOL_MINT, TokenInfo, WindowStats
from app.sources.protocols import protocol_name
from app.sources.values import (
    Parsed,
    UpstreamFormatError,
    address_list,
    count,
    is_mint,
    mapping,
    number,
    signed,
    text,
    timestamp,
)

SOURCE = "jupiter"
PRICE_BATCH = 50
SEARCH_BATCH = 100
TOP_LIMIT = 100
DISCOVERY_CATEGORIES: tuple[str, ...] = ("toptrending", "toptraded", "toporganicscore")
INTERVALS: tuple[str, ...] = ("5m", "1h", "6h", "24h")

# statsX key -> model window key
_WINDOWS: tuple[tuple[str, str], ...] = (
    ("stats5m", "5m"),
    ("stats1h", "1h"),
    ("stats6h", "6h"),
    ("stats24h", "24h"),
)


# ---------------------------------------------------------------------------------------------------
# requests


def headers(api_key: str | None) -> dict[str, str]:
    """`{"x-api-key": key}` when a key is set (blank counts as unset), else `{}`."""
    key = api_key.strip() if isinstance(api_key, str) else ""
    return {"x-api-key": key} if key else {}


def top_request(category: str, interval: str = "1h", limit: int = TOP_LIMIT) -> tuple[str, dict[str, Any]]:
    """Discovery: `/tokens/v2/{toptrending|toptraded|toporganicscore}/{5m|1h|6h|24h}?limit=1..100`."""
    if category not in DISCOVERY_CATEGORIES:
        raise ValueError(f"category must be one of {', '.join(DISCOVERY_CATEGORIES)}, got {category!r}")
    if interval not in INTERVALS:
        raise ValueError(f"interval must be one of {', '.join(INTERVALS)}, got {interval!r}")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= TOP_LIMIT:
        raise ValueError(f"limit must be an integer from 1 to {TOP_LIMIT}, got {limit!r}")
    return f"/tokens/v2/{category}/{interval}", {"limit": limit}


def recent_request() -> tuple[str, dict[str, Any]]:
    """New tokens (first pool just created), about 30."""
    return "/tokens/v2/recent", {}


def search_request(mints: Sequence[str]) -> tuple[str, dict[str, Any]]:
    """Batch metadata and stats for up to 100 mints."""
    return "/tokens/v2/search", {"query": ",".join(address_list(mints, SEARCH_BATCH))}


def price_request(mints: Sequence[str]) -> tuple[str, dict[str, Any]]:
    """Price v3 for up to 50 mints (add wSOL to get SOL/USD in the same call)."""
    return "/price/v3", {"ids": ",".join(address_list(mints, PRICE_BATCH))}


# ---------------------------------------------------------------------------------------------------
# tokens v2


def _window(stats: dict[str, Any]) -> WindowStats:
    buy_volume = number(stats.get("buyVolume"))
    sell_volume = number(stats.get("sellVolume"))
    volume = buy_volume + sell_volume if buy_volume is not None and sell_volume is not None else None
    return WindowStats(
        volume_usd=volume,
        price_change=signed(stats.get("priceChange")),
        buys=count(stats.get("numBuys")),
        sells=count(stats.get("numSells")),
    )


def _stats(item: dict[str, Any]) -> dict[str, WindowStats]:
    """One WindowStats per `statsX` object with at least one known figure; null or empty is absent."""
    result: dict[str, WindowStats] = {}
    for upstream, key in _WINDOWS:
        raw = item.get(upstream)
        if isinstance(raw, dict):
            window = _window(raw)
            if window != WindowStats():
                result[key] = window
    return result


def _token(item: dict[str, Any], observed_at: float) -> TokenInfo:
    first_pool = mapping(item.get("firstPool"))
    created_at = timestamp(first_pool.get("createdAt"))
    if created_at is None:
        created_at = timestamp(item.get("createdAt"))
    top_pool = item.get("graduatedPool")
    if not is_mint(top_pool):
        top_pool = first_pool.get("id")
    # The launchpad names the protocol only while the token trades there: once it graduated (it has a
    # graduated pool or time), its launchpad says where it came from, not where it trades.
    graduated = item.get("graduatedPool") is not None or item.get("graduatedAt") is not None
    launchpad = None if graduated else text(item.get("launchpad"))
    return TokenInfo(
        source=SOURCE,
        address=item["id"],
        observed_at=float(observed_at),
        name=text(item.get("name")),
        symbol=text(item.get("symbol")),
        image_url=text(item.get("icon")),
        price_usd=number(item.get("usdPrice")),
        liquidity_usd=number(item.get("liquidity")),
        market_cap_usd=number(item.get("mcap")),
        fdv_usd=number(item.get("fdv")),
        created_at=created_at,
        stats=_stats(item),
        top_pool=top_pool if is_mint(top_pool) else None,
        protocol=protocol_name(launchpad) if launchpad else None,
    )


def parse_tokens(payload: object, observed_at: float) -> Parsed:
    """One `TokenInfo` per MintInformation of a Tokens v2 array (top*, recent, search).

    Returns a `Parsed[TokenInfo]`; items that are not objects or have no valid `id` are skipped and
    counted; a mint seen twice is kept once. `protocol` is the launchpad's display name when present.
    """
    if not isinstance(payload, list):
        raise UpstreamFormatError(f"jupiter tokens: expected an array, got {type(payload).__name__}")
    infos: list[TokenInfo] = []
    seen: set[str] = set()
    skipped = 0
    for item in payload:
        if not isinstance(item, dict) or not is_mint(item.get("id")):
            skipped += 1
            continue
        if item["id"] in seen:
            continue
        seen.add(item["id"])
        infos.append(_token(item, observed_at))
    return Parsed(infos, skipped=skipped)


# ---------------------------------------------------------------------------------------------------
# price v3


def _price_map(payload: object) -> dict[Any, Any]:
    if not isinstance(payload, dict):
        raise UpstreamFormatError(f"jupiter price v3: expected an object, got {type(payload).__name__}")
    if isinstance(payload.get("data"), dict):
        # {data: {mint: {id, type, price}}, timeTaken}: the retired v2 shape (or a wrong 3rd-party doc).
        raise UpstreamFormatError("jupiter price: 'data' wrapper is the v2 shape, v3 is a flat map")
    return payload


def parse_prices(payload: object, observed_at: float) -> Parsed:
    """Price v3's flat `{mint: {usdPrice, liquidity, priceChange24h, ...}}` map as `TokenInfo`s.

    Returns a `Parsed[TokenInfo]`. Entries whose key is not a mint or whose value is not an object are
    skipped and counted. Unpriceable mints are simply absent upstream.
    """
    infos: list[TokenInfo] = []
    skipped = 0
    for mint, entry in _price_map(payload).items():
        if not is_mint(mint) or not isinstance(entry, dict):
            skipped += 1
            continue
        change = signed(entry.get("priceChange24h"))
        infos.append(
            TokenInfo(
                source=SOURCE,
                address=mint,
                observed_at=float(observed_at),
                price_usd=number(entry.get("usdPrice")),
                liquidity_usd=number(entry.get("liquidity")),
                stats={"24h": WindowStats(price_change=change)} if change is not None else {},
            )
        )
    return Parsed(infos, skipped=skipped)


def sol_price(payload: object) -> float | None:
    """SOL/USD: wSOL's `usdPrice` in a Price v3 map; None when absent, null or not positive."""
    entry = _price_map(payload).get(WSOL_MINT)
    price = number(entry.get("usdPrice")) if isinstance(entry, dict) else None
    return price if price else None
