"""The in-memory store: versions in a deque, records shared between them."""

from __future__ import annotations

import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping

import orjson

from app.model import Record
from app.store.base import HOLD_S, Listener, Version


def new_epoch() -> str:
    """A short random name for a fresh history."""
    return secrets.token_hex(4)


class MemoryStore:
    """Versions of one process. `commit` is the only writer; everything else reads `Version` objects."""

    def __init__(self, epoch: str | None = None, hold_s: float = HOLD_S, clock: Callable[[], float] = time.time):
        self._epoch = epoch or new_epoch()
        self._hold_s = hold_s
        self._clock = clock
        self._versions: deque[Version] = deque([Version(self._epoch, 0, {}, {}, clock())])
        self._superseded_at: dict[int, float] = {}
        self._held_until: dict[int, float] = {}
        self._listeners: list[Listener] = []

    @property
    def epoch(self) -> str:
        return self._epoch

    def latest(self) -> Version:
        return self._versions[-1]

    def get(self, seq: int) -> Version | None:
        first = self._versions[0].seq
        if seq < first or seq > self._versions[-1].seq:
            return None
        return self._versions[seq - first]

    def hold(self, seq: int, seconds: float = HOLD_S) -> None:
        until = self._clock() + seconds
        if self._held_until.get(seq, 0.0) < until:
            self._held_until[seq] = until

    def restore(self, records: Mapping[str, Record], epoch: str | None = None) -> Version:
        """Start from a saved snapshot (a restart): one version holding `records`."""
        self._epoch = epoch or self._epoch
        encoded = {address: orjson.dumps(record) for address, record in records.items()}
        version = Version(self._epoch, 1, dict(records), encoded, self._clock(), frozenset(records))
        self._versions = deque([version])
        self._notify(version)
        return version

    async def commit(self, upserts: Mapping[str, Record], removals: Iterable[str] = ()) -> Version | None:
        return self.apply(upserts, removals)

    def apply(self, upserts: Mapping[str, Record], removals: Iterable[str] = ()) -> Version | None:
        """The synchronous core of `commit`: compare, copy what changed, encode it once, append a version.

        Each changed record is encoded here, once, for every reader (REST pages, stream deltas). Old
        versions released by `_expire` free their replaced records here too: part of the cost.
        """
        current = self._versions[-1]
        old_records = current.records
        changed: dict[str, Record] = {}
        for address, record in upserts.items():
            old = old_records.get(address)
            if old is not None:
                # Equal but for the time stamp: no change. The stamp is swapped in, not popped, so
                # the record keeps its key order.
                stamp = record.get("updated_at")
                record["updated_at"] = old.get("updated_at")
                if record == old:
                    continue
                record["updated_at"] = stamp
            changed[address] = record
        removed = frozenset(a for a in removals if a in old_records and a not in changed)
        if not changed and not removed:
            return None
        records = dict(old_records)
        records.update(changed)
        encoded = dict(current.encoded)
        dumps = orjson.dumps
        for address, record in changed.items():
            encoded[address] = dumps(record)
        for address in removed:
            del records[address]
            del encoded[address]
        now = self._clock()
        version = Version(self._epoch, current.seq + 1, records, encoded, now, frozenset(changed), removed)
        self._superseded_at[current.seq] = now
        self._versions.append(version)
        self._expire(now)
        self._notify(version)
        return version

    def listen(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    async def close(self) -> None:
        self._listeners.clear()

    def _expire(self, now: float) -> None:
        """Drop the oldest versions once superseded for longer than the hold and not pinned by a cursor."""
        while len(self._versions) > 1:
            seq = self._versions[0].seq
            if now - self._superseded_at.get(seq, now) < self._hold_s or self._held_until.get(seq, 0.0) > now:
                break
            self._versions.popleft()
            self._superseded_at.pop(seq, None)
            self._held_until.pop(seq, None)

    def _notify(self, version: Version) -> None:
        for listener in list(self._listeners):
            listener(version)
