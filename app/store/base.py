"""The store interface: versions of the whole token set, and who hears about new ones.

A `Version` is one immutable state of every record. Records are shared between versions (a change makes
a new dict for that token only), so holding five minutes of versions costs little. Readers always
work on a local `Version` object: the hot path never waits on I/O. A Redis backend keeps a local
replica fed by pub/sub and implements the same Protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from app.model import Record

# How long a version stays resumable / cursor-walkable after it was superseded (CONTRACT: >= 5 min).
HOLD_S = 330.0


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
    cache: dict[Any, Any] = field(default_factory=dict, repr=False)  # indexes, encoded pages

    @property
    def tag(self) -> str:
        return f"{self.epoch}:{self.seq}"


Listener = Callable[[Version], None]


class Store(Protocol):
    """Where versions live. Chosen once at start-up (memory or redis)."""

    @property
    def epoch(self) -> str: ...

    def latest(self) -> Version:
        """The newest version (seq 0 with no records before the first commit)."""
        ...

    def get(self, seq: int) -> Version | None:
        """A held version of the current epoch, or None when it is gone or never was."""
        ...

    def hold(self, seq: int, seconds: float = HOLD_S) -> None:
        """Keep version `seq` at least `seconds` longer (a cursor was issued on it)."""
        ...

    def restore(self, records: Mapping[str, Record], epoch: str | None = None) -> Version:
        """Start from a snapshot saved by an earlier run: one version holding `records` (a restart)."""
        ...

    async def commit(self, upserts: Mapping[str, Record], removals: Iterable[str] = ()) -> Version | None:
        """Apply changes; a new version only if some record really changed (updated_at ignored)."""
        ...

    def listen(self, listener: Listener) -> Callable[[], None]:
        """Call `listener(version)` after every new version; returns the function that stops it."""
        ...

    async def close(self) -> None: ...
