"""Alerts: a 5m price move past ±ALERT_PRICE_PCT, and 5m volume past ALERT_VOLUME_X times its hourly average.

Only on tokens a trader could act on: at least ALERT_MIN_LIQUIDITY_USD of liquidity, and for a volume
spike at least ALERT_MIN_VOLUME_USD of 5m volume (a spike from $1 to $4 is noise, not news). `value` and
`threshold` are in one unit per kind: percent for `price_move`, the multiple for `volume_spike` (which
also carries the 5m `volume_usd` that made it).

Each fires when a token's figure crosses the threshold between two versions (not on every version it
stays beyond it), so a dashboard sees one alert per move. They are computed once per version, by the
writer, when it builds the version's change set (app.ingest.leader): the alerts travel in the change
set, so every instance's streams and GET /api/alerts read the same list (`Version.alerts`,
`Version.recent_alerts`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.model import Record


def _window(record: Record, window: str) -> dict[str, Any]:
    return (record.get("stats") or {}).get(window) or {}


def _price_change(record: Record) -> float | None:
    return _window(record, "5m").get("price_change")


def _volume_ratio(record: Record) -> float | None:
    """5m volume over the average 5m volume of the last hour (the 1h volume / 12)."""
    five, hour = _window(record, "5m").get("volume_usd"), _window(record, "1h").get("volume_usd")
    if five is None or not hour:
        return None
    return five / (hour / 12.0)


class AlertDetector:
    def __init__(self, price_pct: float, volume_x: float, min_volume_usd: float = 0.0, min_liquidity_usd: float = 0.0):
        self.price_pct = price_pct
        self.volume_x = volume_x
        self.min_volume_usd = min_volume_usd
        self.min_liquidity_usd = min_liquidity_usd

    def detect(self, previous: Mapping[str, Record], changed: Mapping[str, Record], seq: int,
               at: str | None) -> list[dict[str, Any]]:
        """The alerts of version `seq` (committed `at`), whose `changed` records replace `previous` ones."""
        alerts: list[dict[str, Any]] = []
        for address, new in changed.items():
            old = previous.get(address)
            if old is None:
                continue  # a token new to us has no "before" to cross from
            if self.min_liquidity_usd > 0 and not (new.get("liquidity_usd") or 0) >= self.min_liquidity_usd:
                continue  # unknown liquidity is not enough either
            before, after = _price_change(old), _price_change(new)
            if after is not None and abs(after) >= self.price_pct and (before is None or abs(before) < self.price_pct
                                                                        or (before > 0) != (after > 0)):
                alerts.append(self._alert("price_move", new, after, self.price_pct, seq, at))
            before, after = _volume_ratio(old), _volume_ratio(new)
            volume = _window(new, "5m").get("volume_usd") or 0.0
            if (after is not None and after > self.volume_x and (before is None or before <= self.volume_x)
                    and volume >= self.min_volume_usd):
                alerts.append(self._alert("volume_spike", new, round(after, 2), self.volume_x, seq, at,
                                          volume_usd=volume))
        return alerts

    @staticmethod
    def _alert(kind: str, record: Record, value: float, threshold: float, seq: int, at: str | None,
               **extra: Any) -> dict[str, Any]:
        alert = {"type": kind, "token_address": record["token_address"], "token_ticker": record["token_ticker"],
                 "window": "5m", "value": value, "threshold": threshold, "seq": seq, "at": at}
        alert.update(extra)
        return alert
