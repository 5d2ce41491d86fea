"""Defensive conversion of upstream values: strings to numbers, and bad figures to `None`.

Upstreams send decimals as strings (GeckoTerminal, DexScreener prices), nulls, negative reserves and
the odd "NaN". None of these may poison a sum, so every figure passes through here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime

from app.model import EMPTY_STATS, WindowStats


def number(value: object) -> float | None:
    """A finite, non-negative float, or None for anything else (null, negative, NaN, text, bool)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        result = float(value)
    elif isinstance(value, str):
        try:
            result = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    if not math.isfinite(result) or result < 0:
        return None
    return result


def signed(value: object) -> float | None:
    """A finite float that may be negative (price changes), or None."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        result = float(value)
    elif isinstance(value, str):
        try:
            result = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return result if math.isfinite(result) else None


def count(value: object) -> int | None:
    """A non-negative integer count (buys, sells), or None."""
    result = number(value)
    if result is None or result != int(result):
        return None
    return int(result)


def text(value: object) -> str | None:
    """A non-empty stripped string, or None."""
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return None


# Times outside these bounds are not real for a Solana token (and would overflow formatting).
EARLIEST = 1_500_000_000.0  # mid-2017
LATEST = 4_102_444_800.0  # 2100-01-01


def timestamp(value: object) -> float | None:
    """Epoch seconds from ISO 8601 text or epoch seconds/milliseconds; None when unreadable or implausible."""
    seconds = _seconds(value)
    return seconds if seconds is not None and EARLIEST <= seconds <= LATEST else None


def _seconds(value: object) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        raw = value.strip()
        if not raw:
            return None
        try:
            return _seconds(float(raw))
        except ValueError:
            pass
        try:
            parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
    if isinstance(value, (int, float)):
        seconds = float(value)
        if not math.isfinite(seconds) or seconds <= 0:
            return None
        return seconds / 1000.0 if seconds > 1e11 else seconds
    return None


def iso(seconds: float | None) -> str | None:
    """Epoch seconds as ISO 8601 UTC with a Z, e.g. 2026-01-01T00:00:00Z (milliseconds when present)."""
    if seconds is None:
        return None
    moment = datetime.fromtimestamp(seconds, tz=UTC)
    if moment.microsecond:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# Upstream window keys -> ours; m15/m30 (GeckoTerminal) are not part of the record.
POOL_WINDOW_KEYS: tuple[tuple[str, str], ...] = (("m5", "5m"), ("h1", "1h"), ("h6", "6h"), ("h24", "24h"))


def window_stats(volume: object, change: object, txns: object) -> dict[str, WindowStats]:
    """Per-window figures from the three maps both pool APIs send (`volume`, `priceChange`, `txns` on
    DexScreener; `volume_usd`, `price_change_percentage`, `transactions` on GeckoTerminal).

    A window with at least one known figure gets a WindowStats; a window with none is absent.
    """
    volume, change, txns = mapping(volume), mapping(change), mapping(txns)
    stats: dict[str, WindowStats] = {}
    for upstream, key in POOL_WINDOW_KEYS:
        window_txns = mapping(txns.get(upstream))
        window = WindowStats(
            volume_usd=number(volume.get(upstream)),
            price_change=signed(change.get(upstream)),
            buys=count(window_txns.get("buys")),
            sells=count(window_txns.get("sells")),
        )
        if window != EMPTY_STATS:
            stats[key] = window
    return stats


def mapping(value: object) -> dict:
    """The value when it is a JSON object, else an empty one: for optional nested blocks."""
    return value if isinstance(value, dict) else {}


def address_list(addresses: Sequence[str], limit: int) -> list[str]:
    """Distinct addresses in the given order; ValueError when empty, over `limit` or not base58.

    Request builders use it so that nothing but base58 (no '/' or ',') ever reaches a path.
    """
    if isinstance(addresses, str):
        raise ValueError("expected a sequence of addresses, not one string")
    result: list[str] = []
    seen: set[str] = set()
    for address in addresses:
        if not is_mint(address):
            raise ValueError(f"not a Solana address: {address!r}")
        if address not in seen:
            seen.add(address)
            result.append(address)
    if not result:
        raise ValueError("no addresses given")
    if len(result) > limit:
        raise ValueError(f"at most {limit} addresses per request, got {len(result)}")
    return result


def is_mint(value: object) -> bool:
    """Base58, 32 to 44 characters: the shape of a Solana address."""
    return isinstance(value, str) and 32 <= len(value) <= 44 and all(c in BASE58 for c in value)


BASE58 = frozenset("123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz")


class UpstreamFormatError(ValueError):
    """The body is not the shape the upstream documents (HTML, truncated JSON, wrong top level)."""


class Parsed(list):
    """A list of parsed items that also counts the items skipped as malformed."""

    skipped: int = 0

    def __init__(self, items: object = (), skipped: int = 0) -> None:
        super().__init__(items)  # type: ignore[arg-type]
        self.skipped = skipped
