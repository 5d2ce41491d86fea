"""GeckoTerminal public API v2: what to ask and what the answer means (pure; no HTTP here).

Shapes are those of shared/upstreams.md §2 (JSON:API: `data`, `relationships`, `included`). Nearly
every decimal is a string; every figure passes through `values`. Only a wrong top-level shape raises
`UpstreamFormatError`; a bad item is skipped and counted.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

from app.model import MAIN_QUOTES, WSOL_MINT, PoolObservation, TokenInfo, WindowStats
from app.sources.gecko_candles import DAY as DAY
from app.sources.gecko_candles import Candle as Candle
from app.sources.gecko_candles import parse_ohlcv as parse_ohlcv
from app.sources.gecko_candles import seven_day as seven_day
from app.sources.gecko_simple import parse_simple_prices as parse_simple_prices
from app.sources.protocols import protocol_name
from app.sources.values import (
    Parsed,
    UpstreamFormatError,
    address_list,
    is_mint,
    mapping,
    number,
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

_PREFIX = NETWORK + "_"


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


def pools_multi_request(pools: Sequence[str]) -> tuple[str, dict[str, Any]]:
    """Up to 30 pools by address."""
    return f"/networks/{NETWORK}/pools/multi/{','.join(address_list(pools, BATCH))}", {"include": INCLUDE}


def tokens_multi_request(mints: Sequence[str]) -> tuple[str, dict[str, Any]]:
    """Batch refresh: up to 30 tokens with their single most liquid pool's id."""
    return f"/networks/{NETWORK}/tokens/multi/{','.join(address_list(mints, BATCH))}", {"include": "top_pools"}


def simple_price_request(mints: Sequence[str]) -> tuple[str, dict[str, Any]]:
    """Cheap price batch of up to 30 mints: `token_prices` only (the SOL/USD quote reads nothing else, and
    the optional `include_*` flags would only add maps nobody reads)."""
    return f"/simple/networks/{NETWORK}/token_price/{','.join(address_list(mints, BATCH))}", {}


def ohlcv_request(pool: str, mint: str, days: int = 8) -> tuple[str, dict[str, Any]]:
    """Daily USD candles of `mint` in `pool`, newest first (`days` of them, 1 to 1000).

    `token=<mint>`, not `base`: GeckoTerminal may orient the pool the other way round (the token as
    quote), and `base` would then give SOL's candles. `include_empty_intervals=true` keeps a day without
    trades as a row, so one quiet day does not void the week.
    """
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= OHLCV_MAX:
        raise ValueError(f"days must be an integer from 1 to {OHLCV_MAX}, got {days!r}")
    return (
        f"/networks/{NETWORK}/pools/{address_list([pool], 1)[0]}/ohlcv/day",
        {"aggregate": 1, "limit": days, "currency": "usd", "token": address_list([mint], 1)[0],
         "include_empty_intervals": "true"},
    )


# ---------------------------------------------------------------------------------------------------
# JSON:API helpers


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

    @property
    def reversed(self) -> bool:
        """GeckoTerminal may orient a pool the other way round from DexScreener: SOL, USDC or USDT as the
        base and the meme token as the quote. Such a pool is the quote token's (upstreams.md §2)."""
        return self.base in MAIN_QUOTES and self.quote is not None and self.quote not in MAIN_QUOTES


def _pool_items(items: Iterable[Any], tokens: dict[str, dict[str, Any]]) -> Iterator[_Pool | None]:
    """Each pool resource resolved against the included tokens; None for a bad item."""
    for item in items:
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


def _pools(payload: object) -> Iterator[_Pool | None]:
    """Each pool of a pool document resolved against `included[]`; None for a bad item."""
    data = _data(payload, "pools")
    return _pool_items(data, _included_tokens(payload))  # type: ignore[arg-type]  # _data checked it


def _swapped(transactions: object) -> dict[str, Any]:
    """Per window, buys and sells of the quote token: a buy of the base is a sell of the quote."""
    swapped: dict[str, Any] = {}
    for window, counts in mapping(transactions).items():
        counts = mapping(counts)
        swapped[window] = {"buys": counts.get("sells"), "sells": counts.get("buys")}
    return swapped


def _observation(pool: _Pool, observed_at: float) -> PoolObservation:
    """The pool as its token's pool: figures of the base, or of the quote when the pool is reversed.

    A reversed pool's price is `quote_token_price_usd` (in SOL or a stablecoin: `quote_token_price_base_token`)
    and its buys and sells swap sides; GeckoTerminal's price changes, market cap and FDV there are the base
    token's (SOL's), so for the token they are unknown.
    """
    a = pool.attributes
    if pool.reversed:
        token, token_attrs, other, other_attrs = pool.quote, pool.quote_token, pool.base, pool.base_token
        price_usd = number(a.get("quote_token_price_usd"))
        price_native = number(a.get("quote_token_price_base_token"))
        market_cap = fdv = None
        stats = window_stats(a.get("volume_usd"), None, _swapped(a.get("transactions")))
    else:
        token, token_attrs, other, other_attrs = pool.base, pool.base_token, pool.quote, pool.quote_token
        price_usd = number(a.get("base_token_price_usd"))
        price_native = number(a.get("base_token_price_quote_token"))
        market_cap, fdv = number(a.get("market_cap_usd")), number(a.get("fdv_usd"))
        stats = window_stats(a.get("volume_usd"), a.get("price_change_percentage"), a.get("transactions"))
    return PoolObservation(
        source=SOURCE,
        pool_address=pool.address,
        base_address=token,  # type: ignore[arg-type]  # a reversed pool has a quote
        observed_at=float(observed_at),
        base_name=text(token_attrs.get("name")),
        base_symbol=text(token_attrs.get("symbol")),
        quote_address=other,
        quote_symbol=text(other_attrs.get("symbol")),
        protocol=protocol_name(_related_id(pool.relationships, "dex")),
        price_usd=price_usd,
        price_native=price_native,
        liquidity_usd=number(a.get("reserve_in_usd")),
        market_cap_usd=market_cap,
        fdv_usd=fdv,
        created_at=timestamp(a.get("pool_created_at")),
        image_url=_image(token_attrs.get("image_url")),
        stats=stats,
    )


def _observations(pools: Iterable[_Pool | None], observed_at: float) -> Parsed:
    skipped = 0
    observations: list[PoolObservation] = []
    seen: set[str] = set()
    for pool in pools:
        if pool is None:
            skipped += 1
            continue
        if pool.address in seen:
            continue
        seen.add(pool.address)
        observations.append(_observation(pool, observed_at))
    return Parsed(observations, skipped=skipped)


# ---------------------------------------------------------------------------------------------------
# pools


def parse_pools(payload: object, observed_at: float) -> Parsed:
    """One `PoolObservation` per pool of a pool list (trending, new, multi, search) or single pool.

    Returns a `Parsed[PoolObservation]`. A pool is its token's: the base token's, or the quote token's
    when GeckoTerminal oriented it the other way round (SOL, USDC or USDT as base; see `_observation`).
    Mints, names, symbols and images come from `included[]`; without an included entry the mint is the
    relationship id minus `solana_`. A pool that is not an object, is on another network, or has no valid
    pool or base address is skipped and counted. A pool address seen twice in one answer is kept once.
    """
    return _observations(_pools(payload), observed_at)


def parse_top_pools(payload: object, observed_at: float) -> Parsed:
    """The pools a `tokens/multi?include=top_pools` answer already carries in `included[]` (each token's
    most liquid pool), as observations like `parse_pools`' (the tokens are not included: mints come from
    the relationship ids). Entries of other types are ignored."""
    _data(payload, "tokens")
    included = payload.get("included") if isinstance(payload, dict) else None
    pools = [entry for entry in included if isinstance(entry, dict) and entry.get("type") == "pool"] \
        if isinstance(included, list) else []
    return _observations(_pool_items(pools, {}), observed_at)


def sol_price_from_pools(payload: object) -> float | None:
    """SOL/USD from a pool list: the median of wSOL's USD price over the pools it is part of (the quote
    side's `quote_token_price_usd`, or the base side's `base_token_price_usd` when wSOL is the base, as in
    wSOL/USDC or a pool oriented the other way round); None when there is none."""
    prices: list[float] = []
    for pool in _pools(payload):
        if pool is None:
            continue
        if pool.quote == WSOL_MINT:
            price = number(pool.attributes.get("quote_token_price_usd"))
        elif pool.base == WSOL_MINT:
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


