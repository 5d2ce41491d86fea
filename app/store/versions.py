"""Versions and change sets: the data every backend holds, and the one pure step from a version to the next.

A `Version` is one immutable state of every record. A `ChangeSet` is what one commit changed: the
records added or updated (each as its orjson bytes, encoded once by the writer), the addresses removed,
the alerts this version raised, and the SOL/USD rate, stamped with the epoch and seq it makes. It is
self-contained and small, so it can be shipped to other processes (`pack`/`unpack`), and every backend
builds its versions with the same `next_version(previous, changes)`: unchanged records stay the same
objects from version to version (holding minutes of versions costs little, and the diff engine tells an
unchanged record by identity).

Every instance that applies the same change sets to the same base therefore holds the same versions:
same epoch, seq, records (key order included), bytes, alerts and commit time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from app.model import Record

Alert = dict[str, Any]
"""One alert as CONTRACT §5 shows it (`type`, `token_address`, ..., `seq`, `at`): JSON-ready."""

# How many of the latest alerts a version keeps for GET /api/alerts (its `limit` goes up to this).
RECENT_ALERTS = 1000
PACK_FORMAT = 1


class CommitRejected(Exception):
    """A commit the store refused; nothing changed."""


class FencingError(CommitRejected):
    """The fencing token is not the current leader's: this writer no longer leads and must stop writing."""


class OutOfOrder(CommitRejected):
    """The change set does not follow the latest version (another epoch, or not the next seq)."""


@dataclass(eq=False)
class Version:
    """One state of the data. Never mutated after commit, except `cache` (derived, per-version)."""

    epoch: str
    seq: int
    records: Mapping[str, Record]
    encoded: Mapping[str, bytes]  # orjson bytes of each record, shared with older versions
    committed_at: float
    changed: frozenset[str] = frozenset()  # added or updated since seq - 1
    removed: frozenset[str] = frozenset()  # gone since seq - 1
    alerts: tuple[Alert, ...] = ()  # raised by this version (computed once, by the writer)
    recent_alerts: tuple[Alert, ...] = ()  # the latest RECENT_ALERTS of this epoch, oldest first
    sol_usd: float | None = None  # the SOL/USD rate the version's *_sol figures use
    cache: dict[Any, Any] = field(default_factory=dict, repr=False)  # indexes, encoded pages

    @property
    def tag(self) -> str:
        return f"{self.epoch}:{self.seq}"


def initial_version(epoch: str, at: float) -> Version:
    """Seq 0 of a history: no records yet. The first commit of an epoch has seq 1."""
    return Version(epoch, 0, {}, {}, at)


@dataclass(frozen=True, eq=False)
class ChangeSet:
    """What one commit changes, stamped with the version it makes (`epoch`, `seq`)."""

    epoch: str
    seq: int
    committed_at: float  # the writer's clock: the same on every instance (age filters, alert times)
    changed: Mapping[str, bytes]  # address -> the record's compact orjson bytes (added or updated)
    removed: frozenset[str] = frozenset()
    alerts: tuple[Alert, ...] = ()
    sol_usd: float | None = None
    # The same records as dicts, where the writer has them at hand: `next_version` then skips decoding.
    # Never shipped; each must equal `orjson.loads` of its bytes.
    records: Mapping[str, Record] | None = field(default=None, repr=False)

    def pack(self) -> bytes:
        """One bytes object for another process: a JSON head line, then one line per changed record
        (orjson never writes a raw newline), so the records' bytes are carried without re-encoding."""
        head = orjson.dumps({"format": PACK_FORMAT, "epoch": self.epoch, "seq": self.seq,
                             "committed_at": self.committed_at, "sol_usd": self.sol_usd,
                             "removed": sorted(self.removed), "alerts": list(self.alerts),
                             "changed": list(self.changed)})
        return b"\n".join([head, *self.changed.values()])

    @classmethod
    def unpack(cls, data: bytes) -> ChangeSet:
        """The change set `pack` made; ValueError for anything else."""
        lines = data.split(b"\n")
        try:
            head = orjson.loads(lines[0])
            addresses = head["changed"]
            if head.get("format") != PACK_FORMAT or len(addresses) != len(lines) - 1:
                raise ValueError("not a packed change set of this format")
            return cls(str(head["epoch"]), int(head["seq"]), float(head["committed_at"]),
                       dict(zip(addresses, lines[1:])), frozenset(head["removed"]), tuple(head["alerts"]),
                       head["sol_usd"])
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"not a packed change set: {exc}") from None


def next_version(previous: Version, changes: ChangeSet) -> Version:
    """The version `changes` makes from `previous`: pure, and the same in every backend.

    Raises OutOfOrder unless `changes` is the next seq of `previous`'s epoch. Records not named in
    `changes` are the very objects of `previous`; changed ones are decoded from their bytes unless the
    writer passed them as dicts.
    """
    if changes.epoch != previous.epoch or changes.seq != previous.seq + 1:
        raise OutOfOrder(f"change set {changes.epoch}:{changes.seq} does not follow {previous.tag}")
    decoded = changes.records
    if decoded is None:
        loads = orjson.loads
        decoded = {address: loads(raw) for address, raw in changes.changed.items()}
    records = dict(previous.records)
    records.update(decoded)
    encoded = dict(previous.encoded)
    encoded.update(changes.changed)
    removed = frozenset(a for a in changes.removed if a in records and a not in changes.changed)
    for address in removed:
        del records[address]
        del encoded[address]
    recent = previous.recent_alerts
    if changes.alerts:
        recent = (recent + tuple(changes.alerts))[-RECENT_ALERTS:]
    return Version(changes.epoch, changes.seq, records, encoded, changes.committed_at, frozenset(changes.changed),
                   removed, tuple(changes.alerts), recent, changes.sol_usd)
