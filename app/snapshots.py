"""The last snapshot: the latest version's records, saved now and then so a restart serves data at once.

One blob: a JSON head (the record schema's RECORD_VERSION, when it was saved, the epoch, seq and SOL/USD
rate of the version, a little ingest state in `extra`) followed by the records, already encoded (the
version's own bytes, never encoded again). It is read once at start-up, by the leader when the store
holds no version to continue; a snapshot saved with another RECORD_VERSION is ignored with a log line,
so records of an older shape are never served. `SnapshotStore` is a Protocol: the diskcache-backed
`DiskSnapshots` here can be joined by others. Disk I/O runs in worker threads, never on the event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
import orjson

from app.model import Record
from app.schema import RECORD_VERSION

log = logging.getLogger("app.history")


@dataclass
class Snapshot:
    records: dict[str, Record]
    extra: dict[str, Any] = field(default_factory=dict)  # ingest state worth keeping (candle figures)
    saved_at: float | None = None
    epoch: str | None = None
    seq: int | None = None
    sol_usd: float | None = None  # the SOL/USD rate of the saved version


class SnapshotStore(Protocol):
    """The latest version's records, saved now and then and read back once at start-up."""

    async def save(self, version: Any, extra: Mapping[str, Any], now: float) -> None:
        """Save `version` (a store Version: its `encoded` records are reused) off the event loop."""
        ...

    def save_now(self, version: Any, extra: Mapping[str, Any], now: float) -> None:
        """The same, blocking (at shutdown)."""
        ...

    def load(self) -> Snapshot | None: ...

    def close(self) -> None: ...


class DiskSnapshots:
    """`SnapshotStore` in a diskcache.Cache: one key, the whole snapshot as orjson bytes."""

    KEY = "snapshot"

    def __init__(self, cache: Any) -> None:
        self._cache = cache
        self._failed = False

    async def save(self, version: Any, extra: Mapping[str, Any], now: float) -> None:
        await anyio.to_thread.run_sync(self.save_now, version, extra, now)

    def save_now(self, version: Any, extra: Mapping[str, Any], now: float) -> None:
        head = orjson.dumps({"record_version": RECORD_VERSION, "saved_at": now, "epoch": version.epoch,
                             "seq": version.seq, "sol_usd": getattr(version, "sol_usd", None),
                             "extra": dict(extra)})
        body = b"".join((head[:-1], b',"records":[', b",".join(version.encoded.values()), b"]}"))
        try:
            self._cache.set(self.KEY, body)
            self._failed = False
        except Exception as exc:  # noqa: BLE001 - a full or broken disk must not stop the service
            if not self._failed:
                log.error("snapshot: writing to DATA_DIR failed (%s)", exc)
            self._failed = True

    def load(self) -> Snapshot | None:
        try:
            raw = self._cache.get(self.KEY)
            if raw is None:
                return None
            data = orjson.loads(raw)
            saved_as = data.get("record_version") if isinstance(data, dict) else None
            if saved_as != RECORD_VERSION:
                # Records of another shape would be served as they are: start empty instead.
                log.warning("snapshot: saved with record version %s, this version reads %s; ignored "
                            "(the first refresh cycles rebuild the data)", saved_as, RECORD_VERSION)
                return None
            records = {r["token_address"]: r for r in data["records"]
                       if isinstance(r, dict) and isinstance(r.get("token_address"), str)}
            sol_usd = data.get("sol_usd")
            return Snapshot(records, extra=data.get("extra") or {}, saved_at=data.get("saved_at"),
                            epoch=data.get("epoch"), seq=data.get("seq"),
                            sol_usd=float(sol_usd) if isinstance(sol_usd, (int, float)) else None)
        except Exception as exc:  # noqa: BLE001 - a broken snapshot means starting empty, not crashing
            log.error("snapshot: could not read the saved snapshot (%s); starting empty", exc)
            return None

    def close(self) -> None:
        self._cache.close()
