"""One byte-bounded cache for everything derived from a version (value columns, sorted indexes, filtered
views, encoded first pages), shared by REST and the streams of one process.

Why bounded in bytes and not per version: distinct queries are the client's choice, so a per-version
entry count (the old 4,096 entries of ~150 KB each) let one client fill hundreds of MB per version,
held as long as the version was. Here the newest entries win, the least recently used go first, and
the total never passes `max_bytes`, however many versions are held. Entries of versions committed over
`keep_s` before the newest one are let go as soon as a newer version is cached (their queries are rarely
asked again: only a cursor walk still reads an old version, and it recomputes what it needs), so the
cache holds about a minute of queries, not whatever filled it last. Sizes are estimates of what the
entry itself allocates (records and address strings are shared with the version and not counted).
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from app.store.base import Version

T = TypeVar("T")

DEFAULT_MAX_BYTES = 64 << 20
KEEP_S = 60.0


def size_of(value: Any) -> int:
    """What caching `value` costs, roughly: the container (and the bytes), not the shared objects in it."""
    if isinstance(value, (bytes, bytearray, str)):
        return len(value) + 64
    if isinstance(value, tuple):
        return 64 + sum(size_of(item) for item in value if isinstance(item, (list, dict, bytes, tuple)))
    if isinstance(value, dict):
        # Values that are new objects per entry (tuples of lower-case text, parsed times) count too.
        sample = next(iter(value.values()), None)
        per_item = 0 if sample is None or isinstance(sample, (int, float)) else 96 if isinstance(sample, tuple) else 24
        return sys.getsizeof(value) + per_item * len(value)
    return sys.getsizeof(value)


class ViewCache:
    """Least-recently-used entries keyed by (version, key), at most `max_bytes` in all.

    A version is named by (epoch, seq, committed_at), never held by reference: an entry must not keep a
    released version alive. `max_bytes=0` caches nothing (every call computes).
    """

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES, keep_s: float = KEEP_S):
        self.max_bytes = max_bytes
        self.keep_s = keep_s
        self.bytes = 0
        self.evicted = 0  # bytes let go since start (housekeeping returns them to the system)
        self._entries: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._newest = float("-inf")  # commit time of the newest version cached

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def _key(version: Version, key: Hashable) -> Hashable:
        return (version.epoch, version.seq, version.committed_at, key)

    def get(self, version: Version, key: Hashable) -> Any:
        full = self._key(version, key)
        entry = self._entries.get(full)
        if entry is None:
            return None
        self._entries.move_to_end(full)
        return entry[0]

    def put(self, version: Version, key: Hashable, value: T, size: int | None = None) -> T:
        """Keep `value` (unless it alone is over an eighth of the budget); returns it."""
        size = size_of(value) if size is None else size
        if size > self.max_bytes // 8:
            return value
        self.retire(version)
        full = self._key(version, key)
        old = self._entries.pop(full, None)
        if old is not None:
            self.bytes -= old[1]
        self._entries[full] = (value, size)
        self.bytes += size
        self._let_go(lambda _: self.bytes > self.max_bytes)
        return value

    def retire(self, version: Version) -> None:
        """`version` is new: let go of the entries of versions committed over `keep_s` before it (also
        called for every new version by the service, so an idle cache empties too)."""
        if version.committed_at > self._newest:
            self._newest = version.committed_at
            self._let_go(lambda key: key[2] < version.committed_at - self.keep_s)

    def _let_go(self, while_: Callable[[Any], bool]) -> None:
        """Drop least recently used entries while `while_(their key)` holds."""
        entries = self._entries
        while entries:
            key = next(iter(entries))
            if not while_(key):
                return
            _, dropped = entries.pop(key)
            self.bytes -= dropped
            self.evicted += dropped

    def discard(self, version: Version, key: Hashable) -> None:
        entry = self._entries.pop(self._key(version, key), None)
        if entry is not None:
            self.bytes -= entry[1]

    def clear(self) -> None:
        self.evicted += self.bytes
        self._entries.clear()
        self.bytes = 0


NO_CACHE = ViewCache(0)
