"""Keeps a local replica in step with the change log: load once, then follow; reload when history moved.

The replica (the Redis store's local versions) is told `reset(snapshot)` for a whole new state (start-up,
a new epoch after Redis lost its data, or this instance fell behind the base) and `apply(entry)` for each
next change set. A blocked XREAD wakes on every commit; when it times out the head is checked, so a flush
(the stream starts again at seq 1, behind our position) is noticed within one block. Redis unreachable or
stalled: the replica keeps its latest version (readers never notice), the health says so, and the loop
retries with backoff and catches up from the stream.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

import anyio

from app.redis.changelog import ChangeLog, LogEntry, LogSnapshot
from app.redis.connection import REDIS_ERRORS, RedisHealth
from app.sources.budget import backoff_delay

log = logging.getLogger("app.redis")

BLOCK_MS = 1000


class Replica(Protocol):
    @property
    def log_epoch(self) -> str | None:
        """The epoch of the replica's versions (None before the first load)."""
        ...

    @property
    def log_seq(self) -> int:
        """The seq of its latest version."""
        ...

    def reset(self, snapshot: LogSnapshot) -> None:
        """Replace the local state by the snapshot's versions (base, then every entry)."""
        ...

    def apply(self, entry: LogEntry) -> bool:
        """Apply the next change set (seq == log_seq + 1). False when it is not of this epoch."""
        ...


class Follower:
    def __init__(self, log: ChangeLog, replica: Replica, health: RedisHealth, new_epoch: Callable[[], str],
                 block_ms: int = BLOCK_MS):
        self.log = log
        self.replica = replica
        self.health = health
        self.block_ms = block_ms
        self._new_epoch = new_epoch
        self._reload = True
        self.loaded = anyio.Event()  # set once the replica holds the log's state
        self._reloaded = anyio.Event()  # set (and replaced) after every load

    async def run(self) -> None:
        attempt = 0
        while True:
            try:
                await self.step()
            except REDIS_ERRORS as exc:
                self.health.failure(exc, "following the change log")
                self._reload = True  # whatever happened meanwhile (a flush, a fold past us), start clean
                await anyio.sleep(backoff_delay(attempt, base=0.2, cap=5.0))
                attempt += 1
                continue
            self.health.success()
            attempt = 0

    async def load(self) -> None:
        """Read the whole log (creating an epoch when Redis has none) and reset the replica to it."""
        snapshot = await self.log.load()
        if snapshot is None:
            epoch = await self.log.open(self._new_epoch())
            log.warning("redis holds no history: epoch %s starts", epoch)
            snapshot = await self.log.load()
            if snapshot is None:  # flushed again in between: try on the next step
                return
        self._reload = False
        self._reloaded.set()
        self._reloaded = anyio.Event()
        replica = self.replica
        # A snapshot older than what this instance already applied (its own commit landed meanwhile) adds
        # nothing; one of another epoch, or past our position, replaces the local state.
        if snapshot.epoch != replica.log_epoch or snapshot.seq > replica.log_seq or snapshot.base_seq > replica.log_seq:
            replica.reset(snapshot)
        self.loaded.set()

    async def reload(self, within: float) -> None:
        """Have the running loop load the log again (the replica is behind or of another epoch than Redis:
        a commit said so), and wait up to `within` seconds for it."""
        self._reload = True
        with anyio.move_on_after(within):
            await self._reloaded.wait()

    async def step(self) -> None:
        """One round: a reload when due, else wait up to one block for entries and apply them."""
        if self._reload:
            await self.load()
            return
        entries = await self.log.read(self.replica.log_seq, block_ms=self.block_ms)
        if entries:
            self.take(entries)
            return
        head, replica = await self.log.head(), self.replica
        if head.epoch != replica.log_epoch or head.seq < replica.log_seq or head.base_seq > replica.log_seq:
            self._reload = True

    def take(self, entries: list[LogEntry]) -> None:
        """Apply entries in order; a gap (we are behind the base) or another epoch means a reload."""
        for entry in entries:
            seq = self.replica.log_seq
            if entry.seq <= seq:
                continue  # applied already (this instance's own commit)
            if entry.seq != seq + 1 or not self.replica.apply(entry):
                self._reload = True
                return
