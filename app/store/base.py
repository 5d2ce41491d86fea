"""The store interface: what every backend (memory now, Redis next) honours, and the leader's cycle summary.

The store is the deployment's shared state: the history of versions (`epoch`, `latest`, `get`), the one
way to add to it (`commit` of a change set, fenced by the leader's token), who hears about new versions
(`listen`), the secret that signs cursors, and the leader's latest cycle summary for /health. Readers
always work on a local `Version` object: the request path never waits on I/O. A Redis backend keeps a
local replica of the versions fed from Redis and implements the same Protocol; tests/store_contract.py
is the suite every backend must pass.

The data types (Version, ChangeSet, next_version, the commit errors) live in app.store.versions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import orjson

from app.store.versions import (  # noqa: F401 - the store's vocabulary, re-exported
    Alert,
    ChangeSet,
    CommitRejected,
    FencingError,
    OutOfOrder,
    Version,
    initial_version,
    next_version,
)

# How long a version stays resumable / cursor-walkable after it was superseded (CONTRACT: >= 5 min). A
# cursor is always issued on the latest version, so this also holds every cursor's version for at least
# HOLD_S after it was issued (a first page may come from the hot cache up to 30 s after its cursor).
HOLD_S = 330.0

Listener = Callable[[Version], None]


@dataclass(frozen=True)
class CycleSummary:
    """What the leader's latest refresh cycle saw, published for /health on every instance.

    `sources` maps each upstream to its JSON-ready health: ok, last_success (epoch seconds),
    last_error ({"message", "at"} or None), requests_last_min, budget_per_min, circuit, skipped_items.
    """

    at: float  # when it was published
    leader: str  # the instance that published it
    sources: Mapping[str, Mapping[str, Any]]
    sol_usd: float | None
    stale: bool  # serving a snapshot restored from disk, not yet refreshed
    last_success: float | None  # the latest successful upstream call of any source

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, data: bytes | str) -> CycleSummary:
        return cls(**orjson.loads(data))


class Store(Protocol):
    """Where versions live. Chosen once at start-up (app.store.factory); entered as an async context
    manager before use (a Redis backend connects and loads the history there) and left at shutdown."""

    @property
    def epoch(self) -> str:
        """The current history's name, minted by the store (never by a writer). Stable while the history
        is kept; a backend that loses its history (a new memory process, Redis flushed) starts a new one."""
        ...

    @property
    def secret(self) -> bytes:
        """The key that signs cursors: the same on every instance serving this store."""
        ...

    def latest(self) -> Version:
        """The newest version (seq 0 with no records before the first commit of the epoch)."""
        ...

    def get(self, seq: int) -> Version | None:
        """A held version of the current epoch, or None when it is gone or never was.

        Every version stays held at least HOLD_S after it was superseded, and while `hold` says so.
        """
        ...

    def hold(self, seq: int, seconds: float = HOLD_S) -> None:
        """Keep version `seq` at least `seconds` longer (a cursor was issued on it). Bounded per backend."""
        ...

    async def commit(self, changes: ChangeSet, fence: int) -> Version:
        """Add the version `changes` makes (`next_version` of the latest) and return it; once this returns,
        `latest()` is that version or a newer one and every listener has been called with it.

        Raises FencingError when `fence` is not the current leader's token and OutOfOrder when `changes`
        is not the next seq of the current epoch; either way nothing changed.
        """
        ...

    def listen(self, listener: Listener) -> Callable[[], None]:
        """Call `listener(version)` for every new version, in seq order, right after it becomes the
        latest; returns the function that stops it. A listener that raises is logged and skipped."""
        ...

    def summary(self) -> CycleSummary | None:
        """The leader's latest cycle summary (None before the first): a local read, no I/O."""
        ...

    async def publish_summary(self, summary: CycleSummary, fence: int) -> None:
        """Make `summary` what `summary()` answers on every instance. FencingError as for `commit`."""
        ...

    async def __aenter__(self) -> Store: ...

    async def __aexit__(self, *exc_info: object) -> None: ...
