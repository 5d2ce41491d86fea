"""Alerts: a 5m price move past ±ALERT_PRICE_PCT, and 5m volume past ALERT_VOLUME_X times its hourly average.

Each fires when a token's figure crosses the threshold between two versions (not on every version it
stays beyond it), so a dashboard sees one alert per move.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from app.model import Record
from app.sources.values import iso
from app.store.base import Version


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
    def __init__(self, price_pct: float, volume_x: float, keep: int = 1000):
        self.price_pct = price_pct
        self.volume_x = volume_x
        self.recent: deque[dict[str, Any]] = deque(maxlen=keep)

    def detect(self, previous: Version, version: Version) -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = []
        at = iso(version.committed_at)
        for address in version.changed:
            old = previous.records.get(address)
            if old is None:
                continue  # a token new to us has no "before" to cross from
            new = version.records[address]
            before, after = _price_change(old), _price_change(new)
            if after is not None and abs(after) >= self.price_pct and (before is None or abs(before) < self.price_pct
                                                                        or (before > 0) != (after > 0)):
                alerts.append(self._alert("price_move", new, after, self.price_pct, version, at))
            before, after = _volume_ratio(old), _volume_ratio(new)
            if after is not None and after > self.volume_x and (before is None or before <= self.volume_x):
                value = new["stats"]["5m"]["volume_usd"]
                alerts.append(self._alert("volume_spike", new, value, self.volume_x, version, at, ratio=after))
        self.recent.extend(alerts)
        return alerts

    @staticmethod
    def _alert(kind: str, record: Record, value: float, threshold: float, version: Version, at: str | None,
               **extra: Any) -> dict[str, Any]:
        alert = {"type": kind, "token_address": record["token_address"], "token_ticker": record["token_ticker"],
                 "window": "5m", "value": value, "threshold": threshold, "seq": version.seq, "at": at}
        alert.update(extra)
        return alert

    def latest(self, limit: int) -> list[dict[str, Any]]:
        return list(reversed(self.recent))[:limit]
