"""Number formats the upstreams use: decimal strings without exponent, rounded percents."""

from __future__ import annotations

import math

_log10 = math.log10
_floor = math.floor


def dec(x: float, sig: int = 10) -> str:
    """A decimal string without exponent, `sig` significant digits, trailing zeros trimmed ("1.0")."""
    if x == 0 or not math.isfinite(x):
        return "0.0"
    nd = sig - 1 - _floor(_log10(abs(x)))
    if nd <= 0:
        return f"{round(x)}.0"
    s = f"{x:.{min(nd, 30)}f}".rstrip("0")
    return s + "0" if s.endswith(".") else s


def pct(x: float, nd: int = 2) -> float:
    return round(x, nd) + 0.0


def pct_str(x: float) -> str:
    return repr(round(x, 3) + 0.0)
