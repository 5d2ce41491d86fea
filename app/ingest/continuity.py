"""What outlives one process or one leader: history samples, the saved snapshot, restoring it, taking over.

A mixin of `app.ingest.scheduler.Ingest` (its state lives there): kept apart because it is the part
that talks to DATA_DIR and to the previous writer, not to the upstreams.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, Protocol

from app.history import History, SnapshotStore
from app.ingest.candles import SevenDay
from app.ingest.handover import StateHandover, WorkingState
from app.ingest.leader import changeset
from app.ingest.merge import TokenState
from app.sources.values import iso
from app.store.base import Store, Version

log = logging.getLogger("app.ingest")

# The last snapshot is saved at most this often (and at shutdown).
SNAPSHOT_EVERY_S = 30.0


class ContinuityHost(WorkingState, Protocol):
    """What Continuity's methods need of the ingest that mixes it in, their own methods included. A
    Protocol, so this module need not import app.ingest.scheduler, which imports it."""

    fence: int | None
    instance: str
    stale: bool
    _snapshot_tag: str | None
    _snapshot_at: float
    _epoch_written: str | None
    _restored_success: float | None

    @property
    def store(self) -> Store: ...

    @property
    def history(self) -> History | None: ...

    @property
    def snapshots(self) -> SnapshotStore | None: ...

    @property
    def handover(self) -> StateHandover | None: ...

    @property
    def seven_day(self) -> SevenDay: ...

    @property
    def _restored(self) -> dict[str, float]: ...  # address -> restored at, until refreshed

    def clock(self) -> float: ...

    def track(self, mints: Iterable[str]) -> list[TokenState]: ...

    def _token(self) -> int: ...

    async def publish_summary(self) -> None: ...

    def _snapshot_extra(self) -> dict[str, Any]: ...

    def adopt(self, version: Version) -> None: ...

    async def restore(self) -> bool: ...

    def last_success(self) -> float | None: ...


class Continuity:
    """History samples, snapshots, restore and take-over, for the ingest that mixes it in."""

    # Set below through `self`: declared with the ingest's types, else mypy takes those of the values assigned.
    fence: int | None
    sol_usd: float | None
    _snapshot_tag: str | None
    _epoch_written: str | None

    # ---- persistence: history samples, snapshots, restart ---------------------------------------

    async def _persist(self: ContinuityHost, now: float) -> None:
        """After a commit: sample the history when due; save the snapshot at most every SNAPSHOT_EVERY_S."""
        latest = self.store.latest()
        if self.history is not None and self.history.due(now):
            records = {address: record for address, record in latest.records.items()
                       if address not in self._restored and address in self.tokens
                       and self.tokens[address].has_data()}
            try:
                if await self.history.record(records, now):
                    self.seven_day.history_due = True
            except Exception:  # noqa: BLE001
                log.exception("history: recording failed")
        if (self.snapshots is not None and latest.tag != self._snapshot_tag and latest.records
                and now - self._snapshot_at >= SNAPSHOT_EVERY_S):
            self._snapshot_at, self._snapshot_tag = now, latest.tag
            try:
                await self.snapshots.save(latest, self._snapshot_extra(), now)
            except Exception:  # noqa: BLE001
                log.exception("snapshot: saving failed")

    def save_snapshot_now(self: ContinuityHost) -> None:
        """Save the latest version if it changed since the last save (at shutdown; blocks briefly)."""
        latest = self.store.latest()
        if self.snapshots is None or latest.tag == self._snapshot_tag or not latest.records:
            return
        self._snapshot_tag = latest.tag
        try:
            self.snapshots.save_now(latest, self._snapshot_extra(), self.clock())
        except Exception:  # noqa: BLE001
            log.exception("snapshot: saving failed")

    def _snapshot_extra(self: ContinuityHost) -> dict[str, Any]:
        # last_success: how old the saved data really is, for /health's age_s after a restart.
        return {"candles": self.seven_day.saved(), "last_success": self.last_success()}

    async def lead(self: ContinuityHost, fence: int, instance: str) -> None:
        """This instance now writes (app.ingest.leader.IngestRunner): continue the store's latest version
        (same epoch, next seq) when it has records, else restore the saved snapshot; then publish."""
        self.fence, self.instance = fence, instance
        latest = self.store.latest()
        if latest.records:
            if self.handover is not None:
                await self.handover.load(self)  # the last leader's per-token state
            self.adopt(latest)
        else:
            await self.restore()
        await self.publish_summary()

    def adopt(self: ContinuityHost, version: Version) -> None:
        """Continue a history another writer made: track its tokens again, each keeping its record until
        refreshed (as after a restore), and its SOL/USD rate. No commit, no new epoch."""
        now = self.clock()
        self._epoch_written = version.epoch
        for state in self.track(version.records):
            if not state.has_data():
                self._restored[state.address] = now
        if version.sol_usd is not None:
            self.sol_usd = version.sol_usd
        self._snapshot_tag = version.tag
        self.stale = False

    async def restore(self: ContinuityHost) -> bool:
        """With no version to continue: commit the saved snapshot as the store's next version (seq 1 of
        the epoch a new memory store minted) and track its tokens again. True when there was one."""
        snapshot = self.snapshots.load() if self.snapshots is not None else None
        if snapshot is None or not snapshot.records:
            return False
        now = self.clock()
        changes = changeset(self.store.latest(), snapshot.records, committed_at=now, sol_usd=snapshot.sol_usd)
        if changes is None:
            return False
        self.sol_usd = snapshot.sol_usd  # the rate of the restored records (a quote moved past 0.1% replaces it)
        version = await self.store.commit(changes, self._token())
        self.stale = True
        self._snapshot_tag = version.tag
        self._snapshot_at = now
        for state in self.track(snapshot.records):
            self._restored[state.address] = now
        candles = snapshot.extra.get("candles") if isinstance(snapshot.extra, dict) else None
        self.seven_day.restore(candles, now)
        # The data is as old as its last successful refresh before the save (older snapshots: the save).
        saved_at = snapshot.saved_at if isinstance(snapshot.saved_at, (int, float)) else None
        saved_success = snapshot.extra.get("last_success") if isinstance(snapshot.extra, dict) else None
        data_at = saved_success if isinstance(saved_success, (int, float)) else saved_at
        self._restored_success = float(data_at) if data_at is not None else None
        log.info("restored %d records saved at %s, data from %s (epoch %s)", len(snapshot.records),
                 iso(saved_at), iso(self._restored_success), version.epoch)
        return True

    # ---- state for /health -------------------------------------------------------------------

    def last_success(self: ContinuityHost) -> float | None:
        """The latest successful upstream call; after a restart, at least the restored data's own time."""
        times = [c.health.last_success for c in self.clients.values() if c.health.last_success is not None]
        if self._restored_success is not None:
            times.append(self._restored_success)
        return max(times) if times else None
