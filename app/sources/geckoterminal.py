"""GeckoTerminal public API v2: what to ask and what the answer means (pure; no HTTP here).

Shapes are those of shared/upstreams.md §2 (JSON:API: `data`, `relationships`, `included`). Nearly
every decimal is a string; every figure passes through `values`. Only a wrong top-level shape raises
`UpstreamFormatError`; a bad item is skipped and counted.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

from app.model import STABLE_MINTS, WSOL_MINT, PoolObservation, TokenInfo, WindowStats
from app.sources.protocols import protocol_name
from app.sources.values import (
    Parsed,
    UpstreamFormatError,
    address_list,
    is_mint,
    mapping,
    number,
    signed,
    text,
    timestamp,
    window_stats,
)

SOURCE = "geckoterminal"
BATCH = 30
NETWORK = "solana"
INCLUDE = "base_token,quote_token,dex"
HEADERS = {"Accept": "application/json;version=20230302"}

DURATIONS: tuple[str, ...] = ("5m", "1h", "6h", "24h")
OHLCV_MAX = 1000
DAY = 86400.0

_PREFIX = NETWORK + "_"

Candle = tuple[float, float, float, float, float, float]


# ---------------------------------------------------------------------------------------------------
# requests




def _page(page: int) -> int:
    if isinstance(page, bool) or not isinstance(page, int) or page < 1:
        raise ValueError(f"page must be an integer >= 1, got {page!r}")
    return page


def trending_request(page: int = 1, duration: str = "1h") -> tuple[str, dict[str, Any]]:
    """Discovery: trending Solana pools, 20 per page."""
    if duration not in DURATIONS:
        raise ValueError(f"duration must be one of {', '.join(DURATIONS)}, got {duration!r}")
    return (
        f"/networks/{NETWORK}/trending_pools",
        {"include": INCLUDE, "page": _page(page), "duration": duration},
    )


def new_pools_request(page: int = 1) -> tuple[str, dict[str, Any]]:
    """Discovery: Solana pools created in the last 48 h, 20 per page."""
    return f"/networks/{NETWORK}/new_pools", {"include": INCLUDE, "page": _page(page)}


def pool_request(pool: str) -> tuple[str, dict[str, Any]]:
    """One pool: `/networks/solana/pools/{pool}` (answer parsed by `parse_pools`)."""
    return f"/networks/{NETWORK}/pools/{address_list([pool], 1)[0]}", {"include": INCLUDE}


def pools_multi_request(pools: Sequence[str]) -> tuple[str, dict[str, Any]]:
    """Up to 30 pools by address."""
    return f"/networks/{NETWORK}/pools/multi/{','.join(address_list(pools, BATCH))}", {"include": INCLUDE}


def token_request(mint: str) -> tuple[str, dict[str, Any]]:
    """One token: `/networks/solana/tokens/{mint}` (answer parsed by `parse_tokens`)."""
    return f"/networks/{NETWORK}/tokens/{address_list([mint], 1)[0]}", {"include": "top_pools"}


def tokens_multi_request(mints: Sequence[str]) -> tuple[str, dict[str, Any]]:
    """Batch refresh: up to 30 tokens with their single most liquid pool's id."""
    return f"/networks/{NETWORK}/tokens/multi/{','.join(address_list(mints, BATCH))}", {"include": "top_pools"}


def simple_price_request(mints: Sequence[str]) -> tuple[str, dict[str, Any]]:
    """Cheap price batch of up to 30 mints, with market cap, 24h volume and 24h change maps."""
    return (
        f"/simple/networks/{NETWORK}/token_price/{','.join(address_list(mints, BATCH))}",
        {"include_market_cap": "true", "include_24hr_vol": "true", "include_24hr_price_change": "true"},
    )


def ohlcv_request(pool: str, days: int = 8) -> tuple[str, dict[str, Any]]:
    """Daily USD candles of the pool's base token, newest first (`days` of them, 1 to 1000)."""
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= OHLCV_MAX:
        raise ValueError(f"days must be an integer from 1 to {OHLCV_MAX}, got {days!r}")
    return (
        f"/networks/{NETWORK}/pools/{address_list([pool], 1)[0]}/ohlcv/day",
        {"aggregate": 1, "limit": days, "currency": "usd", "token": "base"},
    )


# ---------------------------------------------------------------------------------------------------
# JSON:API helpers


# Plausible creation times (2017 to 2100): `values.timestamp` passes any positive number, and a
# nonsense year would break ISO formatting downstream.






def _strip_id(value: object) -> str | None:
    """`solana_<address>` (or a bare address) -> the address; None for other networks or junk."""
    if not isinstance(value, str):
        return None
    address = value.removeprefix(_PREFIX)
    return address if is_mint(address) else None


def _image(value: object) -> str | None:
    """An image URL; GeckoTerminal's placeholder ("missing.png") and other non-URLs are None."""
    url = text(value)
    return url if url is not None and "://" in url else None


def _data(payload: object, what: str) -> list[Any]:
    """`data` of a JSON:API document as a list (a single resource becomes a one-item list)."""
    if not isinstance(payload, dict) or "data" not in payload:
        raise UpstreamFormatError(f"geckoterminal {what}: expected a JSON:API document with 'data'")
    data = payload["data"]
    if data is None:
        return []
    if isinstance(data, dict):
        return [data]
    if isinstance(data, list):
        return data
    raise UpstreamFormatError(f"geckoterminal {what}: 'data' is {type(data).__name__}")


def _included_tokens(payload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """`included[]` tokens as id -> attributes; junk entries are ignored."""
    tokens: dict[str, dict[str, Any]] = {}
    included = payload.get("included")
    if isinstance(included, list):
        for entry in included:
            if isinstance(entry, dict) and entry.get("type") == "token" and isinstance(entry.get("id"), str):
                tokens[entry["id"]] = mapping(entry.get("attributes"))
    return tokens


def _related_id(relationships: dict[str, Any], name: str) -> str | None:
    related = mapping(mapping(relationships.get(name)).get("data")).get("id")
    return related if isinstance(related, str) else None


def _token_ref(
    relationships: dict[str, Any], name: str, tokens: dict[str, dict[str, Any]]
) -> tuple[str | None, dict[str, Any]]:
    """(mint, included token attributes or {}) of the `base_token`/`quote_token` relationship."""
    related = _related_id(relationships, name)
    if related is None:
        return None, {}
    attributes = tokens.get(related, {})
    mint = attributes.get("address")
    if not is_mint(mint):
        mint = _strip_id(related)
    return mint, attributes


def _other_network(raw_id: object) -> bool:
    """An id such as `eth_0x...`: base58 has no `_`, so any other prefix is another network."""
    return isinstance(raw_id, str) and "_" in raw_id and not raw_id.startswith(_PREFIX)


class _Pool(NamedTuple):
    address: str
    attributes: dict[str, Any]
    relationships: dict[str, Any]
    base: str
    base_token: dict[str, Any]
    quote: str | None
    quote_token: dict[str, Any]


def _pools(payload: object) -> Iterator[_Pool | None]:
    """Each pool of a pool document resolved against `included[]`; None for a bad item."""
    data = _data(payload, "pools")
    tokens = _included_tokens(payload)  # type: ignore[arg-type]  # _data checked it is a dict
    for item in data:
        if not isinstance(item, dict) or item.get("type", "pool") != "pool" or _other_network(item.get("id")):
            yield None
            continue
        attributes = mapping(item.get("attributes"))
        relationships = mapping(item.get("relationships"))
        address = attributes.get("address")
        if not is_mint(address):
            address = _strip_id(item.get("id"))
        base, base_token = _token_ref(relationships, "base_token", tokens)
        if address is None or base is None:
            yield None
            continue
        quote, quote_token = _token_ref(relationships, "quote_token", tokens)
        yield _Pool(address, attributes, relationships, base, base_token, quote, quote_token)


def _pool_stats(attributes: dict[str, Any]) -> dict[str, WindowStats]:
    return window_stats(attributes.get("volume_usd"), attributes.get("price_change_percentage"),
                        attributes.get("transactions"))


# ---------------------------------------------------------------------------------------------------
# pools


def parse_pools(payload: object, observed_at: float) -> Parsed:
    """One `PoolObservation` per pool of a pool list (trending, new, multi, search) or single pool.

    Returns a `Parsed[PoolObservation]`. Base/quote mints, names, symbols and images come from
    `included[]`; without an included entry the mint is the relationship id minus `solana_`. A pool
    that is not an object, is on another network, or has no valid pool or base address is skipped and
    counted. A pool address seen twice in one answer is kept once.
    """
    skipped = 0
    observations: list[PoolObservation] = []
    seen: set[str] = set()
    for pool in _pools(payload):
        if pool is None:
            skipped += 1
            continue
        if pool.address in seen:
            continue
        seen.add(pool.address)
        attributes = pool.attributes
        observations.append(
            PoolObservation(
                source=SOURCE,
                pool_address=pool.address,
                base_address=pool.base,
                observed_at=float(observed_at),
                base_name=text(pool.base_token.get("name")),
                base_symbol=text(pool.base_token.get("symbol")),
                quote_address=pool.quote,
                quote_symbol=text(pool.quote_token.get("symbol")),
                protocol=protocol_name(_related_id(pool.relationships, "dex")),
                price_usd=number(attributes.get("base_token_price_usd")),
                price_native=number(attributes.get("base_token_price_quote_token")),
                liquidity_usd=number(attributes.get("reserve_in_usd")),
                market_cap_usd=number(attributes.get("market_cap_usd")),
                fdv_usd=number(attributes.get("fdv_usd")),
                created_at=timestamp(attributes.get("pool_created_at")),
                image_url=_image(pool.base_token.get("image_url")),
                stats=_pool_stats(attributes),
            )
        )
    return Parsed(observations, skipped=skipped)


def sol_price_from_pools(payload: object) -> float | None:
    """SOL/USD from a pool list: the median of `quote_token_price_usd` over pools quoted in wSOL
    (and of `base_token_price_usd` over wSOL/USDC and wSOL/USDT pools); None when there is none."""
    prices: list[float] = []
    for pool in _pools(payload):
        if pool is None:
            continue
        if pool.quote == WSOL_MINT:
            price = number(pool.attributes.get("quote_token_price_usd"))
        elif pool.base == WSOL_MINT and pool.quote in STABLE_MINTS:
            price = number(pool.attributes.get("base_token_price_usd"))
        else:
            continue
        if price:  # 0 is no price
            prices.append(price)
    return float(statistics.median(prices)) if prices else None


# ---------------------------------------------------------------------------------------------------
# tokens


def parse_tokens(payload: object, observed_at: float) -> Parsed:
    """One `TokenInfo` per token of `/tokens/multi/...` or `/tokens/{mint}` (a `Parsed[TokenInfo]`).

    Token-level: 24h volume only (`stats["24h"]`, absent when unknown); `liquidity_usd` is
    `total_reserve_in_usd` (the token's side, all pools); `top_pool` is the first `top_pools` id.
    """
    skipped = 0
    infos: list[TokenInfo] = []
    seen: set[str] = set()
    for item in _data(payload, "tokens"):
        if not isinstance(item, dict) or item.get("type", "token") != "token":
            skipped += 1
            continue
        attributes = mapping(item.get("attributes"))
        if _other_network(item.get("id")):
            skipped += 1
            continue
        mint = attributes.get("address")
        if not is_mint(mint):
            mint = _strip_id(item.get("id"))
        if mint is None:
            skipped += 1
            continue
        if mint in seen:
            continue
        seen.add(mint)
        volume = number(mapping(attributes.get("volume_usd")).get("h24"))
        top_pools = mapping(mapping(item.get("relationships")).get("top_pools")).get("data")
        top_pool = None
        if isinstance(top_pools, list) and top_pools and isinstance(top_pools[0], dict):
            top_pool = _strip_id(top_pools[0].get("id"))
        infos.append(
            TokenInfo(
                source=SOURCE,
                address=mint,
                observed_at=float(observed_at),
                name=text(attributes.get("name")),
                symbol=text(attributes.get("symbol")),
                image_url=_image(attributes.get("image_url")),
                price_usd=number(attributes.get("price_usd")),
                liquidity_usd=number(attributes.get("total_reserve_in_usd")),
                market_cap_usd=number(attributes.get("market_cap_usd")),
                fdv_usd=number(attributes.get("fdv_usd")),
                stats={"24h": WindowStats(volume_usd=volume)} if volume is not None else {},
                top_pool=top_pool,
            )
        )
    return Parsed(infos, skipped=skipped)


# ---------------------------------------------------------------------------------------------------
# simple price


def _simple_attributes(payload: object) -> dict[str, Any]:
    data = payload.get("data") if isinstance(payload, dict) else None
    attributes = data.get("attributes") if isinstance(data, dict) else None
    if not isinstance(attributes, dict) or not isinstance(attributes.get("token_prices"), dict):
        raise UpstreamFormatError("geckoterminal simple price: expected data.attributes.token_prices")
    return attributes


def parse_simple_prices(payload: object) -> dict[str, float]:
    """`token_prices` as {mint: USD price}; null or unreadable prices and non-mint keys are left out."""
    prices: dict[str, float] = {}
    for mint, raw in _simple_attributes(payload)["token_prices"].items():
        price = number(raw)
        if is_mint(mint) and price is not None:
            prices[mint] = price
    return prices


def parse_simple_tokens(payload: object, observed_at: float) -> Parsed:
    """The whole simple-price answer as `TokenInfo`s (price, market cap, 24h volume and change).

    One per mint key of `token_prices`, even when its price is null (the other maps may know more);
    non-mint keys are skipped and counted.
    """
    attributes = _simple_attributes(payload)
    names = ("market_cap_usd", "h24_volume_usd", "h24_price_change_percentage", "total_reserve_in_usd")
    maps = {name: mapping(attributes.get(name)) for name in names}
    infos: list[TokenInfo] = []
    skipped = 0
    for mint, raw in attributes["token_prices"].items():
        if not is_mint(mint):
            skipped += 1
            continue
        window = WindowStats(
            volume_usd=number(maps["h24_volume_usd"].get(mint)),
            price_change=signed(maps["h24_price_change_percentage"].get(mint)),
        )
        infos.append(
            TokenInfo(
                source=SOURCE,
                address=mint,
                observed_at=float(observed_at),
                price_usd=number(raw),
                market_cap_usd=number(maps["market_cap_usd"].get(mint)),
                liquidity_usd=number(maps["total_reserve_in_usd"].get(mint)),
                stats={"24h": window} if window != WindowStats() else {},
            )
        )
    return Parsed(infos, skipped=skipped)


# ---------------------------------------------------------------------------------------------------
# OHLCV


def parse_ohlcv(payload: object) -> Parsed:
    """Candles `(ts, open, high, low, close, volume)` in the order sent (newest first).

    A `Parsed[Candle]`: rows that are not a list of six readable non-negative numbers (with a
    positive timestamp) are skipped and counted.
    """
    data = payload.get("data") if isinstance(payload, dict) else None
    attributes = data.get("attributes") if isinstance(data, dict) else None
    rows = attributes.get("ohlcv_list") if isinstance(attributes, dict) else None
    if rows is None and isinstance(attributes, dict) and "ohlcv_list" in attributes:
        rows = []
    if not isinstance(rows, list):
        raise UpstreamFormatError("geckoterminal ohlcv: expected data.attributes.ohlcv_list")
    candles: list[Candle] = []
    skipped = 0
    for row in rows:
        if not isinstance(row, (list, tuple)) or len(row) < 6:
            skipped += 1
            continue
        ts = timestamp(row[0]) if isinstance(row[0], (int, float)) else None
        figures = [number(value) for value in row[1:6]]
        if ts is None or any(value is None for value in figures):
            skipped += 1
            continue
        candles.append((ts, *figures))  # type: ignore[arg-type]
    return Parsed(candles, skipped=skipped)


def seven_day(rows: Iterable[Candle], now: float) -> WindowStats | None:
    """7d figures from daily candles: volume = sum of the 7 newest candles' volumes, price change =
    latest close against the open of the oldest of those 7, in percent.

    Only candles of the last seven UTC days up to `now` count (today's partial candle included), so a
    gap or stale data gives None rather than a figure spanning more than a week. None with fewer than
    7 such candles. `price_change` is None when the oldest open is 0.
    """
    today = (now // DAY) * DAY
    earliest = today - 6 * DAY
    recent: dict[float, Candle] = {}
    for row in rows:
        if earliest <= row[0] <= now:
            recent.setdefault(row[0], row)
    if len(recent) < 7:
        return None
    week = sorted(recent.values(), key=lambda row: row[0], reverse=True)[:7]
    newest, oldest = week[0], week[-1]
    volume = sum(row[5] for row in week)
    change = (newest[4] / oldest[1] - 1.0) * 100.0 if oldest[1] > 0 else None
    return WindowStats(volume_usd=volume, price_change=change)


# ---------------------------------------------------------------------------------------------------
# 429


def rate_limit_message(payload: object) -> str:
    """A one-line description of a 429 body, whatever its shape (old with `limit`, new without,
    JSON:API `errors`, plain text). Never raises."""
    try:
        return _rate_limit_message(payload)
    except Exception:  # noqa: BLE001 - a message must always come back
        return "rate limited (429)"


def _rate_limit_message(payload: object) -> str:
    if isinstance(payload, (bytes, bytearray)):
        payload = bytes(payload).decode("utf-8", "replace")
    if isinstance(payload, str):
        return text(payload[:200]) or "rate limited (429)"
    if not isinstance(payload, dict):
        return "rate limited (429)"
    parts: list[str] = []
    status = payload.get("status")
    if isinstance(status, dict):
        code = status.get("error_code")
        message = text(status.get("error_message"))
        if code is not None:
            parts.append(f"error {code}")
        if message:
            parts.append(message)
    errors = payload.get("errors")
    if isinstance(errors, list):
        for error in errors:
            if isinstance(error, dict):
                message = text(error.get("title")) or text(error.get("detail"))
                if message:
                    parts.append(message)
    for key in ("error", "message"):
        message = text(payload.get(key))
        if message:
            parts.append(message)
    limit = payload.get("limit")
    if limit is None and isinstance(status, dict):
        limit = status.get("limit")
    if isinstance(limit, (int, float, str)) and not isinstance(limit, bool):
        parts.append(f"limit {limit}")
    return "; ".join(parts) if parts else "rate limited (429)"
