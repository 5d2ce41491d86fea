"""How a record's figures are rounded, and when the SOL/USD rate changes (CONTRACT §2).

Rounded once, when the record is made: USD amounts to cents (`cents`), prices and every `*_sol` figure
to 10 significant digits (`sig10`), percent changes to 2 decimals (`cents` too). Upstream figures carry
float noise (`640742.6799999999`) and digits nobody reads; rounded, a change below the rounding is no
change: the record compares equal, so no new seq and nothing goes on the wire.

These run ~20 times per record for every refreshed token every cycle (bench/bench_merge.py), so they
round with float arithmetic, not by formatting a string: adding and subtracting 1.5 * 2**52 rounds a
float below 2**51 to the nearest integer (ties to even) in two float operations, and dividing that
integer by an exact power of ten gives the float nearest the decimal, whose shortest repr (what orjson
writes) has no more digits than the rounding keeps. Out of that range, Python's `round` does it.

A `*_sol` figure is the record's rounded USD figure over the adopted rate, rounded: a pure function of
what the record shows, so a change below the USD rounding never moves it either, and `price_sol *
sol_usd == price_usd` holds to 10 significant digits.
"""

from __future__ import annotations

from math import floor, log10
from typing import Any

from app.model import Record

# The SOL/USD rate read in a cycle is adopted only when it differs from the adopted one by more than this.
SOL_USD_MOVE = 0.001

MAGIC = 6755399441055744.0  # 1.5 * 2**52: x + MAGIC - MAGIC is x rounded to an integer, for |x| < 2**51
_POW10 = tuple(10.0**k for k in range(23))  # exact powers of ten (10**22 is the last exact double)
CENTS_MAX = 2.0**51 / 100.0


def cents(x: float) -> float:
    """`x` rounded to 2 decimals (USD amounts to cents, percent changes to hundredths of a percent)."""
    if -CENTS_MAX < x < CENTS_MAX:
        return ((x * 100.0 + MAGIC) - MAGIC) / 100.0
    return float(round(x, 2))


def sig10(x: float) -> float:
    """`x` rounded to 10 significant digits."""
    if not x:
        return x
    try:
        k = 9 - floor(log10(x if x > 0.0 else -x))  # decimals kept: 10 digits from the first one
    except (ValueError, OverflowError):  # inf or nan: nothing to round
        return x
    if 0 <= k <= 22:
        p = _POW10[k]
        return ((x * p + MAGIC) - MAGIC) / p
    if -22 <= k < 0:
        p = _POW10[-k]
        return ((x / p + MAGIC) - MAGIC) * p
    return float(round(x, k))


def sol(usd: float | None, sol_usd: float | None) -> float | None:
    """The `*_sol` figure of a (rounded) USD figure: unknown when either is."""
    if usd is None or not sol_usd:
        return None
    return sig10(usd / sol_usd)


def rate_to_adopt(adopted: float | None, quote: float | None) -> float | None:
    """The rate to adopt given the adopted one and the cycle's quote, or None to keep the adopted one.

    Adopted only when it differs by more than SOL_USD_MOVE: SOL's own noise (a few basis points a cycle)
    would otherwise rewrite every `*_sol` figure of every record every cycle."""
    if quote is None or quote <= 0.0:
        return None
    if adopted is None or abs(quote - adopted) > SOL_USD_MOVE * adopted:
        return sig10(quote)
    return None


def with_rate(record: Record, sol_usd: float | None, updated_at: str | None) -> Record:
    """`record` with its `*_sol` figures made from its USD figures at `sol_usd` (a new dict, `stats` too).

    For a record the ingest keeps as it is (restored from disk and not yet refreshed) when the adopted
    rate changes: every record of a version uses that version's rate. `updated_at`: when it changed."""
    out = dict(record)
    out["price_sol"] = sol(record.get("price_usd"), sol_usd)
    out["market_cap_sol"] = sol(record.get("market_cap_usd"), sol_usd)
    out["liquidity_sol"] = sol(record.get("liquidity_usd"), sol_usd)
    stats: Any = record.get("stats")
    if isinstance(stats, dict):
        stats = out["stats"] = {window: dict(figures) if isinstance(figures, dict) else figures
                                for window, figures in stats.items()}
        for figures in stats.values():
            if isinstance(figures, dict) and "volume_sol" in figures:
                figures["volume_sol"] = sol(figures.get("volume_usd"), sol_usd)
        day = stats.get("24h")
        if isinstance(day, dict):
            out["volume_sol"] = day.get("volume_sol")
    out["updated_at"] = updated_at
    return out
