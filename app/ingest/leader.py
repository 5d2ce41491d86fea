"""The leader's side of the ingest: what it writes (change sets, cycle summaries) and when (only while it leads).

`changeset` turns a cycle's merged records into the version's change set: a record equal to the stored
one but for `updated_at` is no change (it keeps the stored record and time), each changed record is
encoded once, for every reader on every instance, and the version's alerts are computed here, once.
`cycle_summary` is what /health shows on every instance. `IngestRunner` runs refresh cycles only while
this instance holds leadership; when it wins it, the ingest continues the store's latest version (same
epoch, next seq) if there is one, and only otherwise restores the snapshot saved on disk.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Protocol

import anyio
import orjson
from anyio.abc import TaskStatus

from app.alerts import AlertDetector
from app.config import Settings
from app.ingest.report import CycleReport
from app.leadership import Leadership
from app.model import Record
from app.sources.client import UpstreamClient
from app.sources.values import iso
from app.store.base import ChangeSet, CommitRejected, CycleSummary, Version

log = logging.getLogger("app.ingest")


def changeset(base: Version, upserts: Mapping[str, Record], removals: Iterable[str] = (), *,
              committed_at: float, sol_usd: float | None = None,
              detector: AlertDetector | None = None) -> ChangeSet | None:
    """The change set taking `base` to `base.seq + 1`, or None when nothing really changed.

    A record equal to the stored one but for `updated_at` is dropped: it keeps the stored record and its
    time, and makes no new seq. The time stamp is swapped in for the comparison, not popped, so the
    record keeps its key order. A new SOL/USD rate is a change of its own (snapshots carry it), though
    adopting one changes the records' *_sol figures anyway.
    """
    old_records = base.records
    changed: dict[str, Record] = {}
    for address, record in upserts.items():
        old = old_records.get(address)
        if old is not None:
            stamp = record.get("updated_at")
            record["updated_at"] = old.get("updated_at")
            if record == old:
                continue
            record["updated_at"] = stamp
        changed[address] = record
    removed = frozenset(a for a in removals if a in old_records and a not in changed)
    if not changed and not removed and (sol_usd == base.sol_usd or not old_records):
        return None
    dumps = orjson.dumps
    encoded = {address: dumps(record) for address, record in changed.items()}
    seq = base.seq + 1
    alerts = tuple(detector.detect(old_records, changed, seq, iso(committed_at))) if detector is not None else ()
    return ChangeSet(base.epoch, seq, committed_at, encoded, removed, alerts, sol_usd, records=changed)


def cycle_summary(leader: str, clients: Mapping[str, UpstreamClient], sol_usd: float | None, stale: bool,
                  now: float, data_since: float | None = None) -> CycleSummary:
    """The sources' health, the SOL/USD rate and staleness, as the leader sees them at `now`.

    `data_since`: the time of the data restored from disk, which counts as a success until a fresher one,
    so /health's age after a restart is the data's real age (not null, not the restart's)."""
    sources = {}
    for name, client in clients.items():
        health = client.health
        error = health.last_error
        sources[name] = {
            "ok": health.ok,
            "last_success": health.last_success,
            "last_error": {"message": error["message"], "at": error["at"]} if error else None,
            "requests_last_min": client.budget.used(),
            "budget_per_min": client.budget.per_minute,
            "circuit": client.circuit,
            "skipped_items": health.skipped_items,
        }
    times = [s["last_success"] for s in sources.values() if s["last_success"] is not None]
    if data_since is not None:
        times.append(data_since)
    return CycleSummary(now, leader, sources, sol_usd, stale, max(times) if times else None)


class LeadingIngest(Protocol):
    """What the runner needs of the ingest (app.ingest.scheduler.Ingest), which imports this module."""

    fence: int | None  # the fencing token while this instance leads

    @property
    def settings(self) -> Settings: ...

    async def lead(self, fence: int, instance: str) -> None: ...

    async def cycle(self) -> CycleReport: ...


class IngestRunner:
    """Refresh cycles, only while this instance leads. One per instance; the ingest state stays between
    terms, so an instance that wins leadership again picks up where the store is."""

    def __init__(self, ingest: LeadingIngest, leadership: Leadership):
        self.ingest = ingest
        self.leadership = leadership
        self.terms = 0  # terms this instance has led

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Lead whenever elected, until cancelled. Started at once when another instance leads; after the
        take-over when this one leads from the start, so a restart serves its restored snapshot at once."""
        if self.leadership.token is None:
            task_status.started()
            task_status = anyio.TASK_STATUS_IGNORED
        while True:
            token = await self.leadership.elected()
            self.terms += 1
            async with anyio.create_task_group() as term:
                term.start_soon(self._end_when_lost, token, term.cancel_scope)
                try:
                    try:
                        await self._take_over(token)
                    finally:  # start-up waits for the take-over, never for more (nor for a failed one)
                        task_status.started()
                        task_status = anyio.TASK_STATUS_IGNORED
                    await self._cycles()
                except CommitRejected as exc:  # fenced off, or the store moved on without us
                    log.warning("ingest: leadership term %s ended: %s", token, exc)
                term.cancel_scope.cancel()
            self.ingest.fence = None
            # A term that ended at once (say, an out-of-order commit) must not become a busy loop.
            await anyio.sleep(min(1.0, self.ingest.settings.refresh_interval_s))

    async def _take_over(self, token: int) -> None:
        """Continue the store's latest version, else restore the saved snapshot (Ingest.lead)."""
        try:
            await self.ingest.lead(token, self.leadership.instance)
        except CommitRejected:
            raise
        except Exception:  # noqa: BLE001 - a broken snapshot or history must not stop the ingest
            log.exception("ingest: taking over failed; refreshing from the upstreams")

    async def _cycles(self) -> None:
        """Cycle at REFRESH_INTERVAL_S; a failing cycle is logged, never fatal, except a rejected commit."""
        interval = self.ingest.settings.refresh_interval_s
        while True:
            started = time.monotonic()
            try:
                await self.ingest.cycle()
            except CommitRejected:
                raise
            except Exception:  # noqa: BLE001 - the loop must outlive any bug in one cycle
                log.exception("ingest cycle failed")
            await anyio.sleep(max(0.05, interval - (time.monotonic() - started)))

    async def _end_when_lost(self, token: int, scope: anyio.CancelScope) -> None:
        await self.leadership.lost(token)
        log.warning("ingest: leadership term %s lost; cycles stop", token)
        scope.cancel()
