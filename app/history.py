"""What the service remembers across restarts: its own price/volume history and the last snapshot.

History (7d figures where candles don't reach, and the charts of app.history_series): every REFRESH
cycle may offer the latest records; at most one sample per token per `STEP_S` (1 min) is kept. A sample
is one row per token, `(price_usd, 24h volume_usd, 5m volume_usd, 1h volume_usd)`, and all tokens
sampled together form one *slot* (one key on disk), so recording 2,000 tokens is one write a minute and
deriving the 7d figures of every token reads eight slots. Slots older than `THIN_AFTER_S` are thinned to
one per `KEEP_EVERY_S`; slots older than `RETAIN_S` are dropped (about 460 slots kept). A token's own
series (`series`) is read from an index of the slots per token, built on first use.

From a token's samples, at the newest slot t0 (no older than TOLERANCE_S):
- 7d price change = price at t0 against the price in the slot nearest t0 - 7 days (within TOLERANCE_S);
- 7d volume = the sum of the 24h volumes sampled at t0, t0 - 24h, ..., t0 - 6d (each within TOLERANCE_S).
Both need the history to reach back seven days for the token; otherwise nothing (the record shows null).

`History` is a Protocol: the diskcache-backed implementation here can be joined by a Redis-backed one.
Disk I/O runs in worker threads, never on the event loop. `open_state` opens DATA_DIR for the history
and for the last snapshot (app.snapshots).
"""

from __future__ import annotations

import bisect
import logging
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

import anyio
import orjson

from app.history_series import DayCandle, SeriesKeeper, TokenSeries, sample_row
from app.model import SOURCES, Record
from app.snapshots import DiskSnapshots, Snapshot, SnapshotStore  # noqa: F401 - re-exported

log = logging.getLogger("app.history")

STEP_S = 60.0  # at most one sample per token per minute
THIN_AFTER_S = 2 * 3600.0  # samples older than this ...
KEEP_EVERY_S = 1800.0  # ... are thinned to one per 30 minutes
TOLERANCE_S = 3600.0  # how far a sample may be from the moment it stands for
DAY_S = 86400.0
WEEK_S = 7 * DAY_S
RETAIN_S = WEEK_S + THIN_AFTER_S  # older samples are never needed
SLOT_CACHE = 12  # decoded slots kept in memory (the eight a derivation needs, and a few spare)

Sample = tuple[float | None, ...]  # (price_usd, 24h volume_usd, 5m volume_usd, 1h volume_usd); older slots: 2
SevenDay = dict[str, float | None]  # {"volume_usd", "price_change"}


# ---------------------------------------------------------------------------------------------------
# Protocols


class History(Protocol):
    """Sampled price/volume history of every tracked token, and the 7d figures derived from it."""

    def due(self, now: float) -> bool:
        """Whether `record` at `now` would keep a sample (cheap; call it every cycle)."""
        ...

    async def record(self, records: Mapping[str, Record] | Any, now: float) -> bool:
        """Sample `records` (a mapping address -> record, or a store Version) at `now`; True if kept."""
        ...

    async def seven_day(self, address: str, now: float) -> SevenDay | None:
        """{"volume_usd", "price_change"} for one token, or None when history doesn't cover 7 days."""
        ...

    async def seven_day_many(self, addresses: Iterable[str], now: float) -> dict[str, SevenDay]:
        """`seven_day` for many tokens at once; tokens not covered are left out."""
        ...

    def times(self) -> list[float]:
        """When the kept slots were sampled, oldest first."""
        ...

    @property
    def revision(self) -> int:
        """Changes so far (samples kept or thinned, candles): a series read at one revision stays valid."""
        ...

    async def series(self, address: str) -> TokenSeries | None:
        """One token's samples, oldest first (app.history_series), or None when it has none."""
        ...

    def day_candles(self, address: str) -> list[DayCandle]:
        """The token's latest daily candles (day start, close, volume), oldest first."""
        ...

    def remember_candles(self, address: str, candles: Iterable[Any], now: float) -> None:
        """Keep a token's daily OHLCV rows `(ts, open, high, low, close, volume)` for its series."""
        ...

    def close(self) -> None: ...


# ---------------------------------------------------------------------------------------------------
# Backends: where slots live


class _MemoryBackend:
    """Slots in a dict: history without persistence (DATA_DIR unusable) and for tests."""

    threaded = False

    def __init__(self) -> None:
        self._slots: dict[float, dict[str, Sample]] = {}

    def times(self) -> list[float]:
        return sorted(self._slots)

    def get(self, t: float, raw: bool = False) -> dict[str, Sample] | None:
        return self._slots.get(t)

    def put(self, t: float, sample: dict[str, Sample], drop: list[float]) -> None:
        self._slots[t] = sample
        for old in drop:
            self._slots.pop(old, None)

    def close(self) -> None:
        pass


class _DiskBackend:
    """Slots in a diskcache.Cache, keyed `s:<ms since epoch>`, values orjson bytes."""

    threaded = True

    def __init__(self, cache: Any) -> None:
        self._cache = cache
        self._failed = False

    def times(self) -> list[float]:
        return sorted(int(key[2:]) / 1000.0 for key in self._cache.iterkeys()
                      if isinstance(key, str) and key.startswith("s:"))

    def get(self, t: float, raw: bool = False) -> dict[str, Sample] | None:
        """A slot; `raw`: its rows as decoded (lists), for readers that only index into them."""
        data = self._cache.get(_slot_key(t))
        if data is None:
            return None
        rows = orjson.loads(data)
        return rows if raw else {address: tuple(row) for address, row in rows.items()}

    def put(self, t: float, sample: dict[str, Sample], drop: list[float]) -> None:
        try:
            with self._cache.transact():
                self._cache.set(_slot_key(t), orjson.dumps(sample))
                for old in drop:
                    self._cache.delete(_slot_key(old))
            self._failed = False
        except Exception as exc:  # noqa: BLE001 - a full or broken disk must not stop the service
            if not self._failed:
                log.error("history: writing to DATA_DIR failed (%s); samples are kept in memory only", exc)
            self._failed = True
            raise

    def close(self) -> None:
        self._cache.close()


def _slot_key(t: float) -> str:
    return f"s:{int(round(t * 1000))}"


# ---------------------------------------------------------------------------------------------------
# History


class SampledHistory:
    """`History` over slots of samples (see the module docstring). Only the event loop mutates it."""

    def __init__(self, backend: _MemoryBackend | _DiskBackend | None = None):
        self._backend = backend or _MemoryBackend()
        self._times: list[float] = self._backend.times()
        self._slots: OrderedDict[float, dict[str, Sample]] = OrderedDict()  # LRU of decoded slots
        self._pending: dict[float, dict[str, Sample]] = {}  # kept but not (yet) on disk
        self._keeper = SeriesKeeper()  # per-token series for charts

    # ---- recording ---------------------------------------------------------------------------

    def due(self, now: float) -> bool:
        return not self._times or now - self._times[-1] >= STEP_S

    async def record(self, records: Mapping[str, Record] | Any, now: float) -> bool:
        if not self.due(now):
            return False
        records = getattr(records, "records", records)
        sample: dict[str, Sample] = {}
        for address, record in records.items():
            row = sample_row(record)
            if row is not None:
                sample[address] = row
        if not sample:
            return False
        now = round(now * 1000.0) / 1000.0  # slot times are kept to the millisecond, in memory as on disk
        drop = self._thin(now)
        kept = set(drop)
        self._times = [t for t in self._times if t not in kept]
        self._times.append(now)
        for t in drop:
            self._slots.pop(t, None)
            self._pending.pop(t, None)
        self._remember(now, sample)
        self._keeper.dropped(drop)
        self._keeper.added(now, sample)
        if self._backend.threaded:
            self._pending[now] = sample
            try:
                await anyio.to_thread.run_sync(self._backend.put, now, sample, drop)
            except Exception:  # noqa: BLE001 - logged by the backend; the sample stays in memory
                return True
            self._pending.pop(now, None)
        else:
            self._backend.put(now, sample, drop)
        return True

    def _thin(self, now: float) -> list[float]:
        """Slots to forget when a sample is added at `now`: too old, or too close to an older kept one."""
        drop: list[float] = []
        last_kept: float | None = None
        for t in self._times:
            age = now - t
            if age > RETAIN_S or age > THIN_AFTER_S and last_kept is not None and t - last_kept < KEEP_EVERY_S:
                drop.append(t)
            else:
                last_kept = t
        return drop

    # ---- deriving ----------------------------------------------------------------------------

    def times(self) -> list[float]:
        return list(self._times)

    # ---- a token's series (charts) -----------------------------------------------------------

    @property
    def revision(self) -> int:
        return self._keeper.revision

    async def series(self, address: str) -> TokenSeries | None:
        return await self._keeper.series(address, self._times, self._load, self._backend.threaded)

    def day_candles(self, address: str) -> list[DayCandle]:
        return self._keeper.candles.get(address, [])

    def remember_candles(self, address: str, candles: Iterable[Any], now: float) -> None:
        self._keeper.remember_candles(address, candles, now, 10 * DAY_S)  # what the ingest fetched (8 days)

    def _load(self, t: float) -> dict[str, Sample] | None:
        """A slot for the series index (from a worker thread): memory first, else disk; None if unreadable."""
        sample = self._slots.get(t) or self._pending.get(t)
        if sample is not None:
            return sample
        try:
            return self._backend.get(t, raw=True)
        except Exception as exc:  # noqa: BLE001 - an unreadable slot is a missing one
            log.warning("history: slot %s unreadable (%s)", t, exc)
            return None

    async def seven_day(self, address: str, now: float) -> SevenDay | None:
        return (await self.seven_day_many([address], now)).get(address)

    async def seven_day_many(self, addresses: Iterable[str], now: float) -> dict[str, SevenDay]:
        wanted = self._slot_times(now)
        if wanted is None:
            return {}
        slots = [await self._slot(t) if t is not None else None for t in wanted]
        newest, week_ago = slots[0], slots[7]
        if newest is None or week_ago is None:
            return {}
        days = slots[:7]
        out: dict[str, SevenDay] = {}
        for address in addresses:
            now_sample = newest.get(address)
            old_sample = week_ago.get(address)
            if now_sample is None or old_sample is None:
                continue
            price, old_price = now_sample[0], old_sample[0]
            change = (price / old_price - 1.0) * 100.0 if price is not None and old_price else None
            volume: float | None = 0.0
            for day in days:
                row = day.get(address) if day is not None else None
                if row is None or row[1] is None:
                    volume = None
                    break
                volume += row[1]  # type: ignore[operator]
            if change is not None or volume is not None:
                out[address] = {"volume_usd": volume, "price_change": change}
        return out

    def _slot_times(self, now: float) -> list[float | None] | None:
        """The newest slot (t0) and those nearest t0 - k days for k = 1..7 (None where none is close)."""
        times = self._times
        i = bisect.bisect_right(times, now)
        if i == 0 or now - times[i - 1] > TOLERANCE_S:
            return None
        t0 = times[i - 1]
        wanted: list[float | None] = [t0]
        for k in range(1, 8):
            wanted.append(self._nearest(t0 - k * DAY_S))
        return wanted

    def _nearest(self, target: float) -> float | None:
        times = self._times
        i = bisect.bisect_left(times, target)
        best: float | None = None
        for j in (i - 1, i):
            if 0 <= j < len(times) and abs(times[j] - target) <= TOLERANCE_S \
                    and (best is None or abs(times[j] - target) < abs(best - target)):
                best = times[j]
        return best

    async def _slot(self, t: float) -> dict[str, Sample] | None:
        sample = self._slots.get(t)
        if sample is not None:
            self._slots.move_to_end(t)
            return sample
        sample = self._pending.get(t)
        if sample is None:
            if self._backend.threaded:
                try:
                    sample = await anyio.to_thread.run_sync(self._backend.get, t)
                except Exception as exc:  # noqa: BLE001 - an unreadable slot is a missing one
                    log.warning("history: slot %s unreadable (%s)", t, exc)
                    sample = None
            else:
                sample = self._backend.get(t)
        if sample is not None:
            self._remember(t, sample)
        return sample

    def _remember(self, t: float, sample: dict[str, Sample]) -> None:
        self._slots[t] = sample
        self._slots.move_to_end(t)
        while len(self._slots) > SLOT_CACHE:
            self._slots.popitem(last=False)

    def close(self) -> None:
        self._backend.close()


# ---------------------------------------------------------------------------------------------------
# Opening DATA_DIR


def origin_of(settings: Any) -> str:
    """What the saved state was made from: the upstream URLs (or "demo"). State of another origin is
    discarded, so demo data never leaks into a live service's history and vice versa."""
    if getattr(settings, "demo", False):
        return "demo"
    return " ".join(settings.base_url(source) for source in SOURCES)


def open_state(data_dir: str | Path, origin: str = "") -> tuple[History, SnapshotStore | None]:
    """History and snapshots in DATA_DIR (created if missing).

    An unusable DATA_DIR is logged once as an error and the service runs without persistence: history
    is kept in memory only and no snapshot is saved. State saved for another `origin` is cleared.
    """
    from diskcache import Cache  # imported here: only a process that persists needs it

    path = Path(data_dir)
    caches: list[Any] = []
    try:
        path.mkdir(parents=True, exist_ok=True)
        history_cache = Cache(str(path / "history"))
        caches.append(history_cache)
        snapshot_cache = Cache(str(path / "snapshot"))
        caches.append(snapshot_cache)
        stored = history_cache.get("origin")
        if stored is not None and stored != origin:
            log.warning("DATA_DIR %s holds state of other upstreams (%s); starting afresh", path, stored)
            history_cache.clear()
            snapshot_cache.clear()
        history_cache.set("origin", origin)  # also proves the directory is writable
        snapshot_cache.set("origin", origin)
    except Exception as exc:  # noqa: BLE001 - any failure here means: no persistence, but keep running
        for cache in caches:
            try:
                cache.close()
            except Exception:  # noqa: BLE001
                pass
        log.error("DATA_DIR %s is not usable (%s): running without persistence "
                  "(no snapshot on restart, price history kept in memory only)", path, exc)
        return memory_history(), None
    return SampledHistory(_DiskBackend(history_cache)), DiskSnapshots(snapshot_cache)


def memory_history() -> History:
    """A history that lives and dies with the process."""
    return SampledHistory(_MemoryBackend())

