"""DexScreener: what to ask and what the answer means (pure; no HTTP here).

Shapes are those of shared/upstreams.md §1. Every figure passes through `values`, so strings, nulls,
negatives and "NaN" become numbers or `None`; only a wrong top-level shape raises `UpstreamFormatError`.
"""

from __future__ import annotations

import statistics
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.model import STABLE_MINTS, WSOL_MINT, PoolObservation, WindowStats
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

SOURCE = "dexscreener"
BATCH = 30
CHAIN = "solana"
# Every answer carries at most this many pairs, in no documented order (upstreams.md §1 quirks): an
# answer with this many is possibly cut.
ANSWER_CAP = 30

DISCOVERY_PATHS: tuple[str, ...] = (
    "/token-profiles/latest/v1",
    "/token-boosts/latest/v1",
    "/token-boosts/top/v1",
)

# Two rate-limit groups (upstreams.md §1): these feeds share 60/min; pairs, tokens and search share the
# 300/min that RATE_LIMITS names.
LIST_GROUP = "list"
LIST_GROUP_PER_MIN = 60
MAIN_GROUP_PER_MIN = 300
_LIST_PREFIXES: tuple[str, ...] = ("/token-profiles/", "/token-boosts/", "/community-takeovers/", "/metas/",
                                   "/ads/", "/orders/")

# The SOL/USD price is the median over wSOL/USDC and wSOL/USDT pools at least this share as deep as the
# deepest of them (a shallow pool's price can lag or be pushed around).
DEEP_SHARE = 0.1


def rate_group(path: str) -> str:
    """The rate-limit group a path counts against: LIST_GROUP (60/min) or "main" (RATE_LIMITS)."""
    return LIST_GROUP if path.startswith(_LIST_PREFIXES) else "main"


def list_group_per_min(main_per_min: int) -> int:
    """The list group's budget: 60/min, scaled down with a RATE_LIMITS figure under DexScreener's 300."""
    return max(1, min(LIST_GROUP_PER_MIN, main_per_min * LIST_GROUP_PER_MIN // MAIN_GROUP_PER_MIN))


# ---------------------------------------------------------------------------------------------------
# requests


def tokens_request(mints: Sequence[str]) -> tuple[str, dict[str, Any]]:
    """Batch refresh: `/tokens/v1/solana/{a,b,...}` for 1 to 30 mints (duplicates dropped)."""
    return f"/tokens/v1/{CHAIN}/{','.join(address_list(mints, BATCH))}", {}


def token_pairs_request(mint: str) -> tuple[str, dict[str, Any]]:
    """Every pool of one token: `/token-pairs/v1/solana/{mint}` (capped at 30 pairs too)."""
    return f"/token-pairs/v1/{CHAIN}/{address_list([mint], 1)[0]}", {}


def pairs_request(pools: Sequence[str]) -> tuple[str, dict[str, Any]]:
    """Pools by address: `/latest/dex/pairs/solana/{p1,...}` for 1 to 30 pools; one pair per address at
    most, so the answer is never cut."""
    return f"/latest/dex/pairs/{CHAIN}/{','.join(address_list(pools, BATCH))}", {}


# ---------------------------------------------------------------------------------------------------
# discovery


def parse_discovery(payload: object) -> Parsed:
    """Solana mints from a profile or boost feed, deduplicated in order.

    Items from other chains are skipped without being counted; items that are not objects, have no
    chainId or no valid `tokenAddress` are skipped and counted. The docs example shows one bare object,
    so a single profile object (one with a `tokenAddress`) is read as a one-item list.
    """
    if isinstance(payload, dict) and "tokenAddress" in payload:
        payload = [payload]
    if not isinstance(payload, list):
        raise UpstreamFormatError(f"dexscreener discovery: expected an array, got {type(payload).__name__}")
    mints: list[str] = []
    seen: set[str] = set()
    skipped = 0
    for item in payload:
        if not isinstance(item, dict):
            skipped += 1
            continue
        chain = item.get("chainId")
        if not isinstance(chain, str):
            skipped += 1
            continue
        if chain != CHAIN:
            continue
        mint = item.get("tokenAddress")
        if not is_mint(mint):
            skipped += 1
            continue
        if mint not in seen:
            seen.add(mint)
            mints.append(mint)
    return Parsed(mints, skipped=skipped)


# ---------------------------------------------------------------------------------------------------
# pairs


def _pair_list(payload: object) -> list[Any]:
    """The pairs of a bare array (`/tokens/v1`, `/token-pairs/v1`) or a `{schemaVersion, pairs}` wrapper."""
    if isinstance(payload, list):
        return payload
    if isinstance(payload, dict):
        if "pairs" in payload:
            pairs = payload["pairs"]
            if pairs is None:
                return []
            if isinstance(pairs, list):
                return pairs
            raise UpstreamFormatError(f"dexscreener: 'pairs' is {type(pairs).__name__}, not an array")
        if "pair" in payload:  # older single-pair answers: {"schemaVersion", "pair": Pair | null}
            pair = payload["pair"]
            if pair is None:
                return []
            if isinstance(pair, dict):
                return [pair]
            raise UpstreamFormatError(f"dexscreener: 'pair' is {type(pair).__name__}, not an object")
        raise UpstreamFormatError("dexscreener: object without 'pairs'")
    raise UpstreamFormatError(f"dexscreener: expected an array of pairs, got {type(payload).__name__}")


def _stats(pair: dict[str, Any]) -> dict[str, WindowStats]:
    return window_stats(pair.get("volume"), pair.get("priceChange"), pair.get("txns"))


def _observation(pair: dict[str, Any], observed_at: float) -> PoolObservation:
    base = mapping(pair.get("baseToken"))
    quote = mapping(pair.get("quoteToken"))
    quote_address = quote.get("address")
    protocol = protocol_name(pair.get("dexId"), pair.get("labels"))
    liquidity = number(mapping(pair.get("liquidity")).get("usd"))
    if liquidity == 0.0 and protocol == "Pump.fun":
        # Bonding-curve pairs report 0 liquidity: that is "unknown", not an empty pool (upstreams.md §1).
        liquidity = None
    return PoolObservation(
        source=SOURCE,
        pool_address=pair["pairAddress"],
        base_address=base["address"],
        observed_at=float(observed_at),
        base_name=text(base.get("name")),
        base_symbol=text(base.get("symbol")),
        quote_address=quote_address if is_mint(quote_address) else None,
        quote_symbol=text(quote.get("symbol")),
        protocol=protocol,
        price_usd=number(pair.get("priceUsd")),
        price_native=number(pair.get("priceNative")),
        liquidity_usd=liquidity,
        market_cap_usd=number(pair.get("marketCap")),
        fdv_usd=number(pair.get("fdv")),
        created_at=timestamp(pair.get("pairCreatedAt")),
        image_url=text(mapping(pair.get("info")).get("imageUrl")),
        stats=_stats(pair),
    )


def parse_pairs(
    payload: object, observed_at: float, wanted: Collection[str] | None = None
) -> Parsed:
    """One `PoolObservation` per Solana pair (a `Parsed[PoolObservation]`).

    Accepts the bare array of `/tokens/v1` and `/token-pairs/v1` and the `{schemaVersion, pairs}`
    wrapper (`pairs: null` is empty). With `wanted`, only pairs whose *base* token is wanted are kept;
    the others (e.g. a wanted mint on the quote side) are dropped without being counted. Items that are
    not objects, are on another chain, or lack a valid base or pair address are skipped and counted.
    A pair address seen twice in one answer is kept once.
    """
    return read_pairs(payload, observed_at, wanted).pools


@dataclass
class PairsAnswer:
    """What one pairs answer says, and how much it can be trusted to be whole."""

    pools: Parsed  # base-side observations (of wanted mints when given)
    per_mint: dict[str, int] = field(default_factory=dict)  # pairs naming each wanted mint, either side
    total: int = 0  # pairs in the answer, whatever they are

    @property
    def skipped(self) -> int:
        return self.pools.skipped

    @property
    def possibly_cut(self) -> bool:
        """An answer holding ANSWER_CAP pairs may have been cut: what is missing from it is unknown."""
        return self.total >= ANSWER_CAP


def read_pairs(payload: object, observed_at: float, wanted: Collection[str] | None = None) -> PairsAnswer:
    """`parse_pairs`, plus the answer's size and, per wanted mint, the pairs naming it on either side
    (a `/tokens/v1` answer for a mint holds the pools where it is the quote too: they take room)."""
    skipped = 0
    observations: list[PoolObservation] = []
    seen: set[str] = set()
    per_mint: dict[str, int] = {}
    pairs = _pair_list(payload)
    for pair in pairs:
        if not isinstance(pair, dict) or pair.get("chainId") != CHAIN:
            skipped += 1
            continue
        base = mapping(pair.get("baseToken")).get("address")
        if not is_mint(base):
            skipped += 1
            continue
        if wanted is not None:
            if base in wanted:
                per_mint[base] = per_mint.get(base, 0) + 1
            quote = mapping(pair.get("quoteToken")).get("address")
            if isinstance(quote, str) and quote != base and quote in wanted:
                per_mint[quote] = per_mint.get(quote, 0) + 1
            if base not in wanted:
                continue
        pool = pair.get("pairAddress")
        if not is_mint(pool):
            skipped += 1
            continue
        if pool in seen:
            continue
        seen.add(pool)
        observations.append(_observation(pair, observed_at))
    return PairsAnswer(Parsed(observations, skipped=skipped), per_mint, len(pairs))


def sol_usd_pools(observations: Iterable[PoolObservation]) -> list[PoolObservation]:
    """The wSOL/USDC and wSOL/USDT pools among `observations` that have a price."""
    return [obs for obs in observations
            if obs.base_address == WSOL_MINT and obs.quote_address in STABLE_MINTS and obs.price_usd]


def median_sol_price(observations: Iterable[PoolObservation]) -> float | None:
    """SOL/USD: the median `priceUsd` over the deep wSOL/USDC and wSOL/USDT pools (at least DEEP_SHARE as
    deep as the deepest), not the single most liquid one; None without such a pool."""
    pools = sol_usd_pools(observations)
    known = [obs.liquidity_usd for obs in pools if obs.liquidity_usd is not None]
    if known:
        floor = max(known) * DEEP_SHARE
        pools = [obs for obs in pools if obs.liquidity_usd is not None and obs.liquidity_usd >= floor]
    return float(statistics.median(obs.price_usd for obs in pools)) if pools else None  # type: ignore[misc]


def sol_price(payload: object) -> float | None:
    """SOL/USD from an answer holding wSOL pairs (`/token-pairs/v1/solana/<wSOL>`, or the pools by address):
    `median_sol_price` of its pairs; None when there is no wSOL/USDC or wSOL/USDT pair with a price."""
    return median_sol_price(parse_pairs(payload, 0.0, wanted={WSOL_MINT}))
