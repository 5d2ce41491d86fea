"""GeckoTerminal OHLCV candles and the 7-day figures made from them (pure; no HTTP here).

`GET /networks/solana/pools/{pool}/ohlcv/day?...&token=<mint>&include_empty_intervals=true` (upstreams.md
§2): rows `[start (epoch s), open, high, low, close, volume]`, newest first, in USD.
"""

from __future__ import annotations

from collections.abc import Iterable

from app.model import WindowStats
from app.sources.values import Parsed, UpstreamFormatError, number, timestamp

DAY = 86400.0

Candle = tuple[float, float, float, float, float, float]


def parse_ohlcv(payload: object) -> Parsed:
    """Candles `(ts, open, high, low, close, volume)` in the order sent (newest first).

    A `Parsed[Candle]`: rows that are not a list of six readable non-negative numbers (with a
    positive timestamp) are skipped and counted.
    """
    data = payload.get("data") if isinstance(payload, dict) else None
    attributes = data.get("attributes") if isinstance(data, dict) else None
    rows = attributes.get("ohlcv_list") if isinstance(attributes, dict) else None
    if rows is None and isinstance(attributes, dict) and "ohlcv_list" in attributes:
        rows = []
    if not isinstance(rows, list):
        raise UpstreamFormatError("geckoterminal ohlcv: expected data.attributes.ohlcv_list")
    candles: list[Candle] = []
    skipped = 0
    for row in rows:
        if not isinstance(row, (list, tuple)) or len(row) < 6:
            skipped += 1
            continue
        ts = timestamp(row[0]) if isinstance(row[0], (int, float)) else None
        figures = [number(value) for value in row[1:6]]
        if ts is None or any(value is None for value in figures):
            skipped += 1
            continue
        candles.append((ts, *figures))  # type: ignore[arg-type]
    return Parsed(candles, skipped=skipped)


def seven_day(rows: Iterable[Candle], now: float) -> WindowStats | None:
    """7d figures from daily candles: volume = sum of the 7 newest candles' volumes, price change =
    latest close against the open of the oldest of those 7, in percent.

    Only candles of the last seven UTC days up to `now` count (today's partial candle included), so a
    gap or stale data gives None rather than a figure spanning more than a week. None with fewer than
    7 such candles. `price_change` is None when the oldest open is 0.
    """
    today = (now // DAY) * DAY
    earliest = today - 6 * DAY
    recent: dict[float, Candle] = {}
    for row in rows:
        if earliest <= row[0] <= now:
            recent.setdefault(row[0], row)
    if len(recent) < 7:
        return None
    week = sorted(recent.values(), key=lambda row: row[0], reverse=True)[:7]
    newest, oldest = week[0], week[-1]
    volume = sum(row[5] for row in week)
    change = (newest[4] / oldest[1] - 1.0) * 100.0 if oldest[1] > 0 else None
    return WindowStats(volume_usd=volume, price_change=change)
