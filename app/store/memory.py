"""The in-memory store: the versions of one process, records shared between them.

Retention: every version stays at least `hold_s` (HOLD_S, 330 s) after it was superseded, which holds a
cursor's version at least that long after the cursor was issued (cursors are issued on the latest
version). `hold` can keep a version longer, at most MAX_HOLD_S from the call, and at most MAX_HELD
versions at once (past that the hold ending soonest is dropped). Expiry releases every version that is
neither in its window nor held, wherever it sits in the history: one old held version never keeps the
newer ones alive. So the versions held at once are at most those committed in the last `hold_s` plus
MAX_HELD (at the default 10 s refresh, about 34 + 64), whatever clients do.

The epoch is minted when the store is made: a new process is a new history (a snapshot restored from
disk is committed into it as seq 1). The cursor secret is random per store: with `STORE=memory` only one
process serves. Fencing tokens are checked against a `LocalLease` (app.leadership).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable

from app.leadership import LocalLease
from app.store.base import HOLD_S, ChangeSet, CycleSummary, FencingError, Listener, Version
from app.store.versions import initial_version, next_version

log = logging.getLogger("app.store")

MAX_HOLD_S = 600.0  # one hold() keeps a version at most this long from the call
MAX_HELD = 64  # versions kept by hold() at once; past it the hold ending soonest is dropped


def new_epoch() -> str:
    """A short random name for a fresh history."""
    return secrets.token_hex(4)


def note_hold(held_until: dict[int, float], seq: int, until: float) -> None:
    """Hold `seq` until `until` (never shortening a hold); past MAX_HELD holds, the one ending soonest goes.

    Shared by every store that keeps local versions, so the bound on held versions is the same everywhere."""
    if held_until.get(seq, 0.0) < until:
        held_until[seq] = until
    if len(held_until) > MAX_HELD:
        soonest = min(held_until, key=lambda s: (held_until[s], s))
        del held_until[soonest]


class Listeners:
    """Who hears each new version, in the order they came. Shared by every store, so the rule is the same
    everywhere: a listener that raises is logged and skipped, and stops neither the others nor the writer."""

    def __init__(self) -> None:
        self._all: list[Listener] = []

    def add(self, listener: Listener) -> Callable[[], None]:
        """Start calling `listener`; returns the function that stops it."""
        self._all.append(listener)
        return lambda: self._all.remove(listener) if listener in self._all else None

    def clear(self) -> None:
        self._all.clear()

    def notify(self, version: Version) -> None:
        for listener in list(self._all):
            try:
                listener(version)
            except Exception:  # noqa: BLE001 - one broken listener must not stop the others or the writer
                log.exception("store listener failed for version %s", version.tag)


class MemoryStore:
    """`Store` for one process. `commit` is the only writer; everything else reads `Version` objects."""

    def __init__(self, epoch: str | None = None, hold_s: float = HOLD_S, clock: Callable[[], float] = time.time,
                 *, lease: LocalLease | None = None, secret: bytes | None = None):
        self._epoch = epoch or new_epoch()
        self._hold_s = hold_s
        self._clock = clock
        self.lease = lease or LocalLease()  # whose fencing token may commit
        self._secret = secret or secrets.token_bytes(32)
        self._latest = initial_version(self._epoch, clock())
        self._versions: dict[int, Version] = {0: self._latest}  # by seq, oldest first
        self._superseded_at: dict[int, float] = {}  # every held version but the latest
        self._held_until: dict[int, float] = {}
        self._listeners = Listeners()
        self._summary: CycleSummary | None = None

    @property
    def epoch(self) -> str:
        return self._epoch

    @property
    def secret(self) -> bytes:
        return self._secret

    def latest(self) -> Version:
        return self._latest

    def get(self, seq: int) -> Version | None:
        return self._versions.get(seq)

    def held(self) -> int:
        """How many versions are held right now (the latest included)."""
        return len(self._versions)

    def hold(self, seq: int, seconds: float = HOLD_S) -> None:
        if seq not in self._versions:
            return
        note_hold(self._held_until, seq, self._clock() + min(seconds, MAX_HOLD_S))

    async def commit(self, changes: ChangeSet, fence: int) -> Version:
        """Check the token, make the next version (app.store.versions.next_version), release what no one
        holds, tell the listeners. Never suspends: a commit is atomic for the event loop."""
        if not self.lease.valid(fence):
            raise FencingError(f"fencing token {fence} is not the current leader's")
        previous = self._latest
        version = next_version(previous, changes)  # raises OutOfOrder
        now = self._clock()
        self._superseded_at[previous.seq] = now
        self._versions[version.seq] = version
        self._latest = version
        self._expire(now)
        self._listeners.notify(version)
        return version

    def listen(self, listener: Listener) -> Callable[[], None]:
        return self._listeners.add(listener)

    def summary(self) -> CycleSummary | None:
        return self._summary

    async def publish_summary(self, summary: CycleSummary, fence: int) -> None:
        if not self.lease.valid(fence):
            raise FencingError(f"fencing token {fence} is not the current leader's")
        self._summary = summary

    async def __aenter__(self) -> MemoryStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._listeners.clear()

    def _expire(self, now: float) -> None:
        """Release every superseded version past its window and not held (not only the oldest ones)."""
        hold_s, held = self._hold_s, self._held_until
        for seq, at in list(self._superseded_at.items()):
            if now - at < hold_s:
                break  # superseded in order: every later one is in its window too
            until = held.get(seq)
            if until is not None:
                if until > now:
                    continue
                del held[seq]
            del self._versions[seq]
            del self._superseded_at[seq]
