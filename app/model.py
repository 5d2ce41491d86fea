"""The shapes data takes between the upstreams and the store.

Parsers turn upstream JSON into `PoolObservation` (one pool as one upstream saw it) and `TokenInfo`
(token-level figures: Jupiter tokens/price, GeckoTerminal tokens). The merge turns those into one
token record per mint: a plain JSON-ready dict in the shape of CONTRACT §2 (its fields: app.schema).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# The record's vocabulary lives in app.schema; re-exported here for the parsers and the merge.
from app.schema import SOURCES, STAT_FIELDS, WINDOWS  # noqa: F401

# Windows a pool or token reports itself; "7d" comes from candles and our own history.
POOL_WINDOWS: tuple[str, ...] = ("5m", "1h", "6h", "24h")

WSOL_MINT = "So11111111111111111111111111111111111111112"
STABLE_MINTS = frozenset(
    {
        "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v",  # USDC
        "Es9vMFrzaCERmJfrF4H2FYD4KCoNkY11McCe8BenwNYB",  # USDT
    }
)

Record = dict[str, Any]
"""A token record (CONTRACT §2). Never mutated once stored: a change makes a new dict."""


@dataclass(frozen=True, slots=True)
class WindowStats:
    """One time window of one pool or token. `None` is unknown, never zero."""

    volume_usd: float | None = None
    price_change: float | None = None
    buys: int | None = None
    sells: int | None = None


EMPTY_STATS = WindowStats()


@dataclass(frozen=True, slots=True)
class PoolObservation:
    """One pool where `base_address` is the base token, as `source` reported it at `observed_at`.

    Every figure is USD unless named otherwise. A figure the upstream sent as negative, non-numeric
    or null is `None` here: unknown for this pool, whatever an older observation said.
    """

    source: str
    pool_address: str
    base_address: str
    observed_at: float
    base_name: str | None = None
    base_symbol: str | None = None
    quote_address: str | None = None
    quote_symbol: str | None = None
    protocol: str | None = None  # display name, already normalised (see app.sources.protocols)
    price_usd: float | None = None
    price_native: float | None = None  # price in the quote token
    liquidity_usd: float | None = None
    market_cap_usd: float | None = None
    fdv_usd: float | None = None
    created_at: float | None = None  # epoch seconds
    image_url: str | None = None
    stats: dict[str, WindowStats] = field(default_factory=dict)  # keys from POOL_WINDOWS


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """Token-level figures from one source (summed across that source's pools, or just metadata)."""

    source: str
    address: str
    observed_at: float
    name: str | None = None
    symbol: str | None = None
    image_url: str | None = None
    price_usd: float | None = None
    liquidity_usd: float | None = None
    market_cap_usd: float | None = None
    fdv_usd: float | None = None
    created_at: float | None = None  # epoch seconds (first pool's creation where known)
    stats: dict[str, WindowStats] = field(default_factory=dict)
    top_pool: str | None = None
    protocol: str | None = None
