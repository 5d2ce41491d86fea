"""`STORE=redis`: the versions every instance serves, committed to Redis by the leader, replayed locally.

Every instance (the leader too) holds its versions locally, built by `next_version` from the change sets in
the Redis change log (app.redis.changelog), so REST, cursors, diffs, resume and alerts run unchanged on
local `Version` objects and the request path never waits on Redis. The leader's commit goes to Redis first
(a script checks its fencing token and that the seq is next) and is applied locally as soon as Redis has
it; every other instance applies it when its follower reads it (a blocked XREAD: milliseconds).

Retention: every version stays held locally at least `hold_s` after it was superseded, and while a cursor
hold (local, or from any instance through Redis) names it. The leader folds the log's oldest entries into
the base snapshot once their versions left that window, and never past a held version, so an instance that
joins holds every version still in the window.

Redis unreachable or stalled: readers keep the latest local version; `health` says so (/health degraded);
commits fail (nothing changes) and the follower reconnects with backoff and catches up from the log.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable

import anyio
import orjson

from app.redis import changelog
from app.redis.changelog import ChangeLog, LogEntry, LogSnapshot
from app.redis.connection import REDIS_ERRORS, RedisHealth, connect
from app.redis.follower import BLOCK_MS, Follower
from app.redis.keys import Keys
from app.redis.shared import SharedState
from app.store.base import HOLD_S, CycleSummary, Listener
from app.store.memory import MAX_HOLD_S, Listeners, new_epoch, note_hold
from app.store.versions import (
    ChangeSet,
    CommitRejected,
    FencingError,
    OutOfOrder,
    Version,
    initial_version,
    next_version,
)

log = logging.getLogger("app.store")

MAINTAIN_EVERY_S = 0.5  # shared holds, the leader's summary, folding


class StoreUnavailable(CommitRejected):
    """Redis did not answer: the commit may or may not have landed (the log tells, and is followed)."""


def base_info(version: Version) -> bytes:
    """What a base version carries besides its records."""
    return orjson.dumps({"committed_at": version.committed_at, "sol_usd": version.sol_usd,
                         "recent_alerts": list(version.recent_alerts)})


def base_version(snapshot: LogSnapshot, at: float) -> Version:
    """The version the snapshot's base holds (seq 0 with nothing, for a new epoch)."""
    if not snapshot.base_info:
        return initial_version(snapshot.epoch, at)
    info = orjson.loads(snapshot.base_info)
    loads = orjson.loads
    records = {address: loads(raw) for address, raw in sorted(snapshot.base.items())}
    encoded = {address: snapshot.base[address] for address in records}
    return Version(snapshot.epoch, snapshot.base_seq, records, encoded, float(info["committed_at"]),
                   frozenset(records), frozenset(), (), tuple(info.get("recent_alerts") or ()), info.get("sol_usd"))


class RedisStore:
    """`Store` for several instances over one Redis. Enter it (`async with`) before use."""

    def __init__(self, url: str, keys: Keys, *, clock: Callable[[], float] = time.time, hold_s: float = HOLD_S,
                 block_ms: int = BLOCK_MS, health: RedisHealth | None = None):
        self.url = url
        self.keys = keys
        self.health = health or RedisHealth()
        self._clock = clock
        self._hold_s = hold_s
        self._block_ms = block_ms
        self.redis = connect(url)
        self._follow_redis = connect(url, timeout_s=block_ms / 1000 + 2.0)
        self.log = ChangeLog(self.redis, keys)
        self.shared = SharedState(self.redis, keys)
        self._epoch: str | None = None
        self._secret = b""
        self._latest: Version | None = None
        self._versions: dict[int, Version] = {}
        self._superseded_at: dict[int, float] = {}
        self._held_until: dict[int, float] = {}
        self._shared_holds: set[int] = set()  # seqs cursors hold on any instance (from Redis)
        self._pending_holds: dict[int, float] = {}  # holds to tell Redis about: seq -> seconds
        self._listeners = Listeners()
        self._summary: CycleSummary | None = None
        self._summary_raw: bytes | None = None
        # Folding: the base's seq and, for each later entry, (seq, committed_at, addresses touched).
        self._base_seq = 0
        self._unfolded: deque[tuple[int, float, frozenset[str]]] = deque()
        self._writer: int | None = None  # the fencing token of this instance's latest accepted commit
        self._tasks: anyio.abc.TaskGroup | None = None
        self.follower = Follower(ChangeLog(self._follow_redis, keys), self, self.health, new_epoch, block_ms)

    # ---- the Store protocol: local reads ---------------------------------------------------------------

    @property
    def epoch(self) -> str:
        return self.latest().epoch

    @property
    def secret(self) -> bytes:
        return self._secret

    @property
    def log_epoch(self) -> str | None:
        return self._latest.epoch if self._latest is not None else None

    @property
    def log_seq(self) -> int:
        return self._latest.seq if self._latest is not None else -1

    def latest(self) -> Version:
        if self._latest is None:
            raise RuntimeError("enter the store (async with) before reading it")
        return self._latest

    def get(self, seq: int) -> Version | None:
        return self._versions.get(seq)

    def held(self) -> int:
        return len(self._versions)

    def hold(self, seq: int, seconds: float = HOLD_S) -> None:
        if seq not in self._versions:
            return
        seconds = min(seconds, MAX_HOLD_S)
        note_hold(self._held_until, seq, self._clock() + seconds)
        self._pending_holds[seq] = max(seconds, self._pending_holds.get(seq, 0.0))  # sent by _maintain

    def listen(self, listener: Listener) -> Callable[[], None]:
        return self._listeners.add(listener)

    def summary(self) -> CycleSummary | None:
        return self._summary

    # ---- writes ---------------------------------------------------------------------------------------

    async def commit(self, changes: ChangeSet, fence: int) -> Version:
        latest = self.latest()
        if changes.epoch != latest.epoch or changes.seq != latest.seq + 1:
            raise OutOfOrder(f"change set {changes.epoch}:{changes.seq} does not follow {latest.tag}")
        try:
            await self.log.commit(fence, changes.epoch, changes.seq, changes.pack())
        except changelog.CommitRejected as exc:
            if exc.reason == "fence":
                self._writer = None
                raise FencingError(f"fencing token {fence} is not the current leader's") from None
            # Redis holds another epoch or a later seq than this replica: catch up before the writer
            # tries again (it starts a new term, which reads the latest version afresh).
            await self.follower.reload(within=self._block_ms / 1000 + 2.0)
            raise OutOfOrder(str(exc)) from None
        except REDIS_ERRORS as exc:
            self.health.failure(exc, "commit")
            raise StoreUnavailable(f"redis: {type(exc).__name__}: {exc}") from None
        self.health.success()
        self._writer = fence
        current = self.latest()
        if current.epoch == changes.epoch and current.seq == changes.seq - 1:
            return self._apply(changes)
        version = self._versions.get(changes.seq)  # the follower applied it first
        if version is None or version.epoch != changes.epoch:
            raise OutOfOrder(f"change set {changes.epoch}:{changes.seq} was superseded locally")
        return version

    async def publish_summary(self, summary: CycleSummary, fence: int) -> None:
        raw = summary.to_json()
        try:
            await self.shared.publish_cycle(fence, raw)
        except changelog.CommitRejected:
            raise FencingError(f"fencing token {fence} is not the current leader's") from None
        except REDIS_ERRORS as exc:
            self.health.failure(exc, "publishing the cycle summary")
            raise StoreUnavailable(f"redis: {type(exc).__name__}: {exc}") from None
        self._summary, self._summary_raw = summary, raw

    # ---- the replica: what the follower feeds ------------------------------------------------------------

    def reset(self, snapshot: LogSnapshot) -> None:
        """A whole new state: at start-up, for a new epoch, or after falling behind the base."""
        same_history = self._latest is not None and self._latest.epoch == snapshot.epoch
        if same_history and snapshot.base_seq <= self.log_seq:  # we can continue: apply what we miss
            self._trim_unfolded(snapshot.base_seq)
            for entry in snapshot.entries:
                if entry.seq > self.log_seq and not (entry.seq == self.log_seq + 1 and self.apply(entry)):
                    raise ValueError(f"entry {entry.seq} of the log does not follow {self.latest().tag}")
            return
        base = base_version(snapshot, self._clock())
        if not same_history:
            self._versions, self._superseded_at, self._held_until = {}, {}, {}
            self._shared_holds, self._pending_holds = set(), {}
            if self._latest is not None:
                log.warning("redis: history %s replaced by %s (Redis lost its data): clients get snapshots",
                            self._latest.epoch, snapshot.epoch)
            self._epoch = snapshot.epoch
        self._base_seq = snapshot.base_seq
        self._unfolded.clear()
        self._add(base)
        for entry in snapshot.entries:
            if not self.apply(entry):
                raise ValueError(f"entry {entry.seq} of the log is not of epoch {snapshot.epoch}")

    def apply(self, entry: LogEntry) -> bool:
        try:
            changes = ChangeSet.unpack(entry.payload)
        except ValueError:
            log.error("redis: entry %d of the log is unreadable", entry.seq)
            return False
        if changes.epoch != self._epoch:
            return False
        self._apply(changes)
        return True

    def _apply(self, changes: ChangeSet) -> Version:
        version = next_version(self.latest(), changes)
        self._unfolded.append((version.seq, version.committed_at, version.changed | version.removed))
        self._add(version)
        return version

    def _add(self, version: Version) -> None:
        now = self._clock()
        previous = self._latest
        if previous is not None and previous.epoch == version.epoch:
            self._superseded_at[previous.seq] = now
        self._versions[version.seq] = version
        self._latest = version
        self._expire(now)
        self._listeners.notify(version)

    def _expire(self, now: float) -> None:
        hold_s, held, shared = self._hold_s, self._held_until, self._shared_holds
        latest = self._latest
        for seq, at in list(self._superseded_at.items()):
            if now - at < hold_s:
                break
            until = held.get(seq)
            if until is not None and until > now or seq in shared:
                continue
            held.pop(seq, None)
            if latest is None or seq != latest.seq:
                self._versions.pop(seq, None)
            del self._superseded_at[seq]

    # ---- background: follow the log, share holds and the summary, fold ------------------------------------

    async def __aenter__(self) -> RedisStore:
        attempt = 0
        while True:
            try:
                self._secret = await self.shared.secret()
                await self.follower.load()
                break
            except REDIS_ERRORS as exc:
                self.health.failure(exc, "starting")
                log.warning("redis: not reachable at start-up (%s); retrying", exc)
                await anyio.sleep(min(5.0, 0.2 * 2 ** attempt))
                attempt += 1
        self.health.success()
        self._tasks = anyio.create_task_group()
        await self._tasks.__aenter__()
        self._tasks.start_soon(self.follower.run)
        self._tasks.start_soon(self._maintain_forever)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._listeners.clear()
        if self._tasks is not None:
            self._tasks.cancel_scope.cancel()
            await self._tasks.__aexit__(None, None, None)
        await self._follow_redis.aclose()
        await self.redis.aclose()

    async def _maintain_forever(self) -> None:
        while True:
            try:
                await self.maintain()
            except REDIS_ERRORS as exc:
                self.health.failure(exc, "sharing holds and the summary")
            await anyio.sleep(MAINTAIN_EVERY_S)

    async def maintain(self) -> None:
        """One round of the shared bookkeeping: send our holds, read everyone's, read the summary, fold."""
        pending, self._pending_holds = self._pending_holds, {}
        try:
            for seq, seconds in pending.items():
                await self.log.hold(seq, seconds)
        except BaseException:
            for seq, seconds in pending.items():
                self._pending_holds[seq] = max(seconds, self._pending_holds.get(seq, 0.0))
            raise
        self._shared_holds = await self.log.held()
        head = await self.log.head()
        if head.epoch == self._epoch:
            self._trim_unfolded(head.base_seq)
        raw = await self.redis.get(self.keys.cycle)
        if raw != self._summary_raw:
            self._summary_raw = raw
            self._summary = CycleSummary.from_json(raw) if raw else None
        if self._writer is not None:
            await self.fold(self._writer)

    def fold_target(self, now: float) -> int:
        """The oldest version a joining instance must be able to rebuild: the one superseded last before
        the window (`hold_s`), or an older one a cursor holds."""
        target = self._base_seq
        for seq, committed_at, _ in self._unfolded:
            if now - committed_at < self._hold_s:
                break
            target = seq  # version seq - 1 was superseded at committed_at: out of the window
        target = max(target, self._base_seq)
        held = [seq for seq in self._shared_holds | set(self._held_until) if seq > self._base_seq]
        return min([target, *held])

    async def fold(self, fence: int) -> bool:
        """Move the base up to `fold_target` (the leader's job). False when there was nothing to fold."""
        target = self.fold_target(self._clock())
        version = self._versions.get(target)
        if target <= self._base_seq or version is None:
            return False
        touched: set[str] = set()
        for seq, _, addresses in self._unfolded:
            if seq > target:
                break
            touched |= addresses
        upserts = {a: version.encoded[a] for a in touched if a in version.encoded}
        removals = [a for a in touched if a not in version.encoded]
        try:
            await self.log.fold(fence, version.epoch, self._base_seq, target, base_info(version), upserts, removals)
        except changelog.CommitRejected as exc:
            if exc.reason == "fence":
                self._writer = None
            log.info("redis: fold to %d refused (%s)", target, exc)
            return False
        self._trim_unfolded(target)
        return True

    def _trim_unfolded(self, base_seq: int) -> None:
        """The log's base is now `base_seq` (folded by us, or by the leader as the head says)."""
        self._base_seq = max(self._base_seq, base_seq)
        while self._unfolded and self._unfolded[0][0] <= self._base_seq:
            self._unfolded.popleft()
