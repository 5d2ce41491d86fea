"""Alerts: a 5m price move past ±ALERT_PRICE_PCT, and 5m volume past ALERT_VOLUME_X times its hourly average.

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


def _price_change(record: Record) -> float | None:
    return record["stats"]["5m"]["price_change"]


def _volume_ratio(record: Record) -> float | None:
    """5m volume over the average 5m volume of the last hour (the 1h volume / 12)."""
    stats = record["stats"]
    five, hour = stats["5m"]["volume_usd"], stats["1h"]["volume_usd"]
    if five is None or not hour:
        return None
    return five / (hour / 12.0)


class AlertDetector:
    def __init__(self, price_pct: float, volume_x: float):
        self.price_pct = price_pct
        self.volume_x = volume_x

    def detect(self, previous: Mapping[str, Record], changed: Mapping[str, Record], seq: int,
               at: str | None) -> list[dict[str, Any]]:
        """The alerts of version `seq` (committed `at`), whose `changed` records replace `previous` ones."""
        alerts: list[dict[str, Any]] = []
        for address, new in changed.items():
            old = previous.get(address)
            if old is None:
                continue  # a token new to us has no "before" to cross from
            before, after = _price_change(old), _price_change(new)
            if after is not None and abs(after) >= self.price_pct and (before is None or abs(before) < self.price_pct
                                                                        or (before > 0) != (after > 0)):
                alerts.append(self._alert("price_move", new, after, self.price_pct, seq, at))
            before, after = _volume_ratio(old), _volume_ratio(new)
            if after is not None and after > self.volume_x and (before is None or before <= self.volume_x):
                value = new["stats"]["5m"]["volume_usd"]
                alerts.append(self._alert("volume_spike", new, value, self.volume_x, seq, at, ratio=after))
        return alerts

    @staticmethod
    def _alert(kind: str, record: Record, value: float, threshold: float, seq: int, at: str | None,
               **extra: Any) -> dict[str, Any]:
        alert = {"type": kind, "token_address": record["token_address"], "token_ticker": record["token_ticker"],
                 "window": "5m", "value": value, "threshold": threshold, "seq": seq, "at": at}
        alert.update(extra)
        return alert
