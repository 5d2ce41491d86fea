"""DexScreener: what to ask and what the answer means (pure; no HTTP here).

Shapes are those of shared/upstreams.md §1. Every figure passes through `values`, so strings, nulls,
negatives and "NaN" become numbers or `None`; only a wrong top-level shape raises `UpstreamFormatError`.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
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

DISCOVERY_PATHS: tuple[str, ...] = (
    "/token-profiles/latest/v1",
    "/token-boosts/latest/v1",
    "/token-boosts/top/v1",
)

# upstream window key -> model window key (m15/m30 never used)


# ---------------------------------------------------------------------------------------------------
# requests




def tokens_request(mints: Sequence[str]) -> tuple[str, dict[str, Any]]:
    """Batch refresh: `/tokens/v1/solana/{a,b,...}` for 1 to 30 mints (duplicates dropped)."""
    return f"/tokens/v1/{CHAIN}/{','.join(address_list(mints, BATCH))}", {}


def token_pairs_request(mint: str) -> tuple[str, dict[str, Any]]:
    """Every pool of one token: `/token-pairs/v1/solana/{mint}`."""
    return f"/token-pairs/v1/{CHAIN}/{address_list([mint], 1)[0]}", {}


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


# Plausible creation times (2017 to 2100): `values.timestamp` passes any positive number, and a
# nonsense year would break ISO formatting downstream.






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
    skipped = 0
    observations: list[PoolObservation] = []
    seen: set[str] = set()
    for pair in _pair_list(payload):
        if not isinstance(pair, dict) or pair.get("chainId") != CHAIN:
            skipped += 1
            continue
        base = mapping(pair.get("baseToken")).get("address")
        if not is_mint(base):
            skipped += 1
            continue
        if wanted is not None and base not in wanted:
            continue
        pool = pair.get("pairAddress")
        if not is_mint(pool):
            skipped += 1
            continue
        if pool in seen:
            continue
        seen.add(pool)
        observations.append(_observation(pair, observed_at))
    return Parsed(observations, skipped=skipped)


def sol_price(payload: object) -> float | None:
    """SOL/USD from the `/tokens/v1/solana/<wSOL>` answer.

    Among pairs with wSOL as base and USDC or USDT as quote, the `priceUsd` of the most liquid one;
    None when there is no such pair with a positive price.
    """
    best: tuple[float, float] | None = None  # (liquidity, price)
    for obs in parse_pairs(payload, 0.0, wanted={WSOL_MINT}):
        if obs.quote_address not in STABLE_MINTS or not obs.price_usd:
            continue
        liquidity = obs.liquidity_usd if obs.liquidity_usd is not None else -1.0
        if best is None or liquidity > best[0]:
            best = (liquidity, obs.price_usd)
    return best[1] if best else None
