"""A token's recorded price/volume series, for charts: the history's slots indexed per token.

The history (app.history) keeps one *slot* per minute holding every token's sample, which is the right
shape for writing and for the 7d figures but the wrong one for "this token's last 7 days": that would
decode every slot. `SeriesIndex` holds the same samples per token in compact arrays (built once from
DATA_DIR when a series is first asked for, then kept up to date as slots are recorded and thinned), so a
series is read without any I/O.

`points()` turns a token's samples into one point per interval (the latest sample in each): the price,
and the volume of the window that matches the interval (`VOLUME_WINDOW`: a 1m point carries the 5m
volume ending there, a 1d point the 24h volume). Daily candles (GeckoTerminal OHLCV) fill the days the
service's own samples do not cover; the record's latest figures are the newest point.
"""

from __future__ import annotations

import bisect
import math
from array import array
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from app.sources.values import iso, timestamp

INTERVALS: dict[str, float] = {"1m": 60.0, "5m": 300.0, "1h": 3600.0, "1d": 86400.0}
VOLUME_WINDOW: dict[str, str] = {"1m": "5m", "5m": "5m", "1h": "1h", "1d": "24h"}
VOLUMES = ("5m", "1h", "24h")  # the windows each sample keeps a volume of, in this order
DAY_S = 86400.0
NAN = float("nan")

Row = Sequence[float | None]  # a slot's row: (price_usd, 24h volume_usd[, 5m volume_usd, 1h volume_usd])
DayCandle = tuple[float, float, float]  # (day start, close price USD, day volume USD)


def sample_row(record: Mapping[str, Any]) -> tuple[float | None, ...] | None:
    """What a slot keeps of a record: (price_usd, 24h, 5m, 1h volume_usd); None when all are unknown.

    The 24h volume stays second so slots written before the 5m and 1h volumes were kept read the same.
    """
    stats = record.get("stats") or {}
    volumes = [(stats.get(window) or {}).get("volume_usd") for window in ("24h", "5m", "1h")]
    row = (record.get("price_usd"), *volumes)
    return row if any(value is not None for value in row) else None


class TokenSeries:
    """One token's samples, oldest first: times and prices as doubles, volumes (5m, 1h, 24h per sample)
    as single floats (7 significant digits: plenty for a chart, and 28 bytes per sample in all)."""

    __slots__ = ("t", "price", "volume")

    def __init__(self) -> None:
        self.t = array("d")
        self.price = array("d")
        self.volume = array("f")

    def __len__(self) -> int:
        return len(self.t)

    def add(self, t: float, row: Row) -> None:
        price = row[0] if row[0] is not None else NAN
        day = row[1] if len(row) > 1 and row[1] is not None else NAN
        five = row[2] if len(row) > 2 and row[2] is not None else NAN
        hour = row[3] if len(row) > 3 and row[3] is not None else NAN
        if not self.t or t > self.t[-1]:
            self.t.append(t)
            self.price.append(price)
            self.volume.extend((five, hour, day))
            return
        i = bisect.bisect_left(self.t, t)  # out of order (only while an index is being built): keep the order
        if i < len(self.t) and self.t[i] == t:
            return
        self.t.insert(i, t)
        self.price.insert(i, price)
        self.volume[3 * i:3 * i] = array("f", (five, hour, day))

    def drop(self, t: float) -> None:
        i = bisect.bisect_left(self.t, t)
        if i < len(self.t) and self.t[i] == t:
            del self.t[i]
            del self.price[i]
            del self.volume[3 * i:3 * i + 3]


class SeriesIndex:
    """Every token's samples (see the module docstring). Mutated on the event loop only, once built."""

    def __init__(self) -> None:
        self.tokens: dict[str, TokenSeries] = {}

    def add(self, t: float, sample: Mapping[str, Row]) -> None:
        tokens = self.tokens
        for address, row in sample.items():
            series = tokens.get(address)
            if series is None:
                series = tokens[address] = TokenSeries()
            times = series.t
            if times and t <= times[-1] or len(row) != 4:  # out of order, or a short (older) row: the slow path
                series.add(t, row)
                continue
            # the common case, inlined: 2,000 tokens a slot, ~460 slots when the index is built
            price, day, five, hour = row
            times.append(t)
            series.price.append(NAN if price is None else price)
            series.volume.extend((NAN if five is None else five, NAN if hour is None else hour,
                                  NAN if day is None else day))

    def drop(self, times: Iterable[float]) -> None:
        times = list(times)
        if not times:
            return
        empty = []
        for address, series in self.tokens.items():
            for t in times:
                series.drop(t)
            if not len(series):
                empty.append(address)
        for address in empty:
            del self.tokens[address]

    def get(self, address: str) -> TokenSeries | None:
        return self.tokens.get(address)


def day_candles(candles: Iterable[Sequence[float]], now: float, keep_s: float) -> list[DayCandle]:
    """(day start, close, volume) of parsed OHLCV rows `(ts, open, high, low, close, volume)`, oldest first,
    only those of the last `keep_s` seconds."""
    days = {row[0]: (row[0], row[4], row[5]) for row in candles if now - row[0] <= keep_s}
    return [days[ts] for ts in sorted(days)]


def _num(value: float) -> float | None:
    return None if math.isnan(value) else value


def points(series: TokenSeries | None, candles: Sequence[DayCandle], live: Mapping[str, Any] | None,
           interval: str, limit: int, now: float) -> list[dict[str, Any]]:
    """The newest `limit` points of one token at `interval`, oldest first (see the module docstring).

    Each point: `at` (when its price was seen), `price_usd`, `volume_usd` (of the window
    `VOLUME_WINDOW[interval]` ending at `at`) and `source` (`history`, `candles` or `live`).
    """
    step = INTERVALS[interval]
    window = VOLUME_WINDOW[interval]
    offset = VOLUMES.index(window)
    buckets: dict[int, tuple[float, float | None, float | None, str]] = {}
    if series is not None:
        t, price, volume = series.t, series.price, series.volume
        for i in range(len(t)):  # oldest first: a bucket ends up with its latest sample
            buckets[int(t[i] // step)] = (t[i], _num(price[i]), _num(volume[3 * i + offset]), "history")
    if interval == "1d":
        for day, close, traded in candles:
            key = int(day // step)
            if key not in buckets:  # the service's own samples first; candles where that is all there is
                buckets[key] = (min(day + DAY_S, now), close, traded, "candles")
    if live is not None:
        at = timestamp(live.get("updated_at"))
        price = live.get("price_usd")
        traded = ((live.get("stats") or {}).get(window) or {}).get("volume_usd")
        newest = max((point[0] for point in buckets.values()), default=None)
        if at is not None and (price is not None or traded is not None) and (newest is None or at > newest):
            buckets[int(at // step)] = (at, price, traded, "live")
    keys = sorted(buckets)[-limit:]
    out = []
    for key in keys:
        at, price, traded, source = buckets[key]
        out.append({"at": iso(round(at, 3)), "price_usd": price,
                    "volume_usd": round(traded, 2) if traded is not None else None, "source": source})
    return out


class SeriesKeeper:
    """A history's `SeriesIndex` (built on first use, then kept up to date) and its tokens' day candles.

    `revision` counts the changes (samples kept or thinned, candles), so an answer built from the series
    can be cached until it moves.
    """

    MAX_CANDLE_TOKENS = 2000

    def __init__(self) -> None:
        self.index: SeriesIndex | None = None
        self.revision = 0
        self.candles: dict[str, list[DayCandle]] = {}
        self._log: list[tuple[str, Any, Any]] | None = None  # changes made while the index is being built
        self._built: Any = None  # an anyio.Event while a build runs

    def added(self, t: float, sample: Mapping[str, Row]) -> None:
        self.revision += 1
        if self.index is not None:
            self.index.add(t, sample)
        elif self._log is not None:
            self._log.append(("add", t, sample))

    def dropped(self, times: Sequence[float]) -> None:
        if not times:
            return
        self.revision += 1
        if self.index is not None:
            self.index.drop(times)
        elif self._log is not None:
            self._log.append(("drop", list(times), None))

    def remember_candles(self, address: str, candles: Iterable[Sequence[float]], now: float, keep_s: float) -> None:
        """Keep a token's latest day candles (the ingest fetches them for the 7d figures)."""
        self.candles.pop(address, None)
        kept = day_candles(candles, now, keep_s)
        if kept:
            self.candles[address] = kept
            while len(self.candles) > self.MAX_CANDLE_TOKENS:  # the least recently fetched go first
                del self.candles[next(iter(self.candles))]
        self.revision += 1

    async def series(self, address: str, times: Sequence[float], load: Any, threaded: bool) -> TokenSeries | None:
        """`address`'s samples; the first call builds the index from `load(t)` of every slot in `times`."""
        import anyio

        while self.index is None:
            if self._built is not None:  # another request is building it
                await self._built.wait()
                continue
            self._built, self._log = anyio.Event(), []
            index = SeriesIndex()
            try:
                if threaded:
                    await anyio.to_thread.run_sync(_fill, index, list(times), load)
                else:
                    _fill(index, list(times), load)
                for op, when, sample in self._log:  # slots recorded or thinned meanwhile
                    if op == "add":
                        index.add(when, sample)
                    else:
                        index.drop(when)
                self.index = index
            finally:
                self._built.set()
                self._built, self._log = None, None
        return self.index.get(address)


def _fill(index: SeriesIndex, times: list[float], load: Any) -> None:
    for t in times:
        sample = load(t)
        if sample is not None:
            index.add(t, sample)
