"""Each upstream's budget split into shares (discovery, refresh, daily candles) that accrue with time.

The sliding-window budget in app.sources.budget is the hard limit; these shares decide who may spend
it, so that no part starves another: discovery keeps what its planned requests need, daily candles keep
a guaranteed share of GeckoTerminal, and refresh gets the rest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# GeckoTerminal's share for daily candles (7d figures): at the default 10/min, 3 calls a minute; never
# more than CANDLE_MAX_PER_MIN (the few hundred most-watched tokens hourly need 5 a minute).
CANDLE_SHARE = 0.3
CANDLE_MAX_PER_MIN = 30.0


@dataclass
class Allowance:
    """`per_minute` calls as a credit that accrues with time, at most `cap` of it saved up."""

    per_minute: float
    cap: float
    credit: float = 0.0
    at: float | None = None

    @classmethod
    def per_cycle(cls, per_minute: float, interval_s: float) -> Allowance:
        """Credit for two cycles at most (at least one call), one cycle's worth to start with."""
        cycle = per_minute * interval_s / 60.0
        return cls(per_minute, cap=max(1.0, 2 * cycle), credit=max(1.0, cycle) if per_minute > 0 else 0.0)

    def available(self, now: float) -> int:
        """Whole calls that may go now."""
        if self.at is not None:
            self.credit = min(self.cap, self.credit + self.per_minute * max(0.0, now - self.at) / 60.0)
        self.at = now
        return max(0, math.floor(self.credit + 1e-9))

    def spend(self, calls: int) -> None:
        self.credit = max(0.0, self.credit - calls)


@dataclass(frozen=True)
class Shares:
    """Per minute: what discovery, refresh and candles of one upstream (one rate-limit group) may spend."""

    discovery: float
    refresh: float
    candles: float


def split(limit: int, discovery_per_min: float, candles: bool) -> Shares:
    """`limit` per minute shared out: candles first (a guaranteed share, when wanted), then discovery as
    its plan needs (never all of what is left), then refresh everything else (at least something)."""
    candle = min(CANDLE_MAX_PER_MIN, max(1.0, math.ceil(CANDLE_SHARE * limit))) if candles else 0.0
    candle = min(candle, max(0.0, limit - 1.0))
    discovery = max(0.0, min(discovery_per_min, limit - candle - 1.0))
    refresh = max(limit - candle - discovery, 1.0 if limit >= 1 else 0.0)
    return Shares(discovery=discovery, refresh=refresh, candles=candle)


@dataclass
class Budget:
    """One upstream's shares and the allowances that pace them."""

    shares: Shares
    refresh: Allowance
    discovery: Allowance
    candles: Allowance


def budget(limit: int, discovery_per_min: float, round_calls: int, interval_s: float, candles: bool) -> Budget:
    """`split`, with allowances: refresh and candles accrue per cycle; discovery may spend one whole round
    (`round_calls`) at once, from the start."""
    shares = split(limit, discovery_per_min, candles)
    return Budget(shares, refresh=Allowance.per_cycle(shares.refresh, interval_s),
                  discovery=Allowance(shares.discovery, cap=float(max(round_calls, 1)), credit=float(round_calls)),
                  candles=Allowance.per_cycle(shares.candles, interval_s))
