"""Leadership and the ingest runner: cycles only while leading; a new leader continues the latest version.

Also the one backend factory, and /health built from the leader's published summary.
"""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest

from app.alerts import AlertDetector
from app.config import Settings, load_settings
from app.ingest.leader import IngestRunner, changeset
from app.ingest.merge import TokenState
from app.ingest.scheduler import Ingest
from app.leadership import LocalLeadership, LocalLease
from app.model import TokenInfo
from app.runtime import Options, health_body
from app.snapshots import Snapshot
from app.sources.values import iso
from app.store.base import CycleSummary
from app.store.factory import open_backend
from app.store.memory import MemoryStore
from tests.support import running_service, wait_for

pytestmark = pytest.mark.anyio

A, B = (f"{c * 40}pump" for c in "AB")
T0 = 1_790_000_000.0


def record(address: str, price: float = 1.0) -> dict[str, Any]:
    return {"token_address": address, "token_ticker": "TOK", "price_usd": price, "updated_at": "t",
            "stats": {"5m": {"volume_usd": None, "price_change": None}, "1h": {"volume_usd": None}}}


class Snapshots:
    """A SnapshotStore whose saved snapshot is `saved`; counts loads."""

    def __init__(self, saved: Snapshot | None = None):
        self.saved, self.loads = saved, 0

    def load(self) -> Snapshot | None:
        self.loads += 1
        return self.saved

    async def save(self, version: Any, extra: Any, now: float) -> None:
        pass

    def save_now(self, version: Any, extra: Any, now: float) -> None:
        pass

    def close(self) -> None:
        pass


def ingest_over(store: MemoryStore, snapshots: Snapshots) -> Ingest:
    settings = load_settings({"REFRESH_INTERVAL_S": "0.05"}, dotenv=None)
    return Ingest(settings, store, {}, snapshots=snapshots)  # no upstreams: cycles merge what is dirty


def make_token(ingest: Ingest, address: str, price: float) -> None:
    """What a refresh does for one token: new figures, to be merged and committed in the next cycle."""
    state = ingest.tokens.setdefault(address, TokenState(address))
    state.infos["jupiter"] = TokenInfo("jupiter", address, T0, "Tok", "TOK", None, price, 1e5, 1e6, 1e6)
    ingest._dirty.add(address)


async def test_one_lease_one_leader_and_each_term_a_larger_token():
    lease = LocalLease()
    first, second = LocalLeadership(lease, "first"), LocalLeadership(lease, "second")
    async with anyio.create_task_group() as tasks:
        await tasks.start(first.run)
        await tasks.start(second.run)
        assert (first.token, second.token, first.leader) == (1, None, "first")
        elected: list[int] = []

        async def campaign() -> None:
            elected.append(await second.elected())

        tasks.start_soon(campaign)
        await anyio.wait_all_tasks_blocked()
        assert elected == []  # the lease is held: no second leader
        await first.resign()
        await first.lost(1)
        await wait_for(lambda: elected, timeout=5, message="the second instance elected")
        assert elected == [2] and second.token == 2 and first.token is None and first.leader == "second"
        tasks.cancel_scope.cancel()


async def test_the_runner_cycles_only_while_leading_and_continues_the_latest_version_not_the_disk():
    store = MemoryStore()
    other = LocalLeadership(store.lease, "other")
    token = await other.elected()
    v1 = await store.commit(changeset(store.latest(), {A: record(A)}, committed_at=T0, sol_usd=150.0), token)
    snapshots = Snapshots(Snapshot({B: record(B)}))
    ingest = ingest_over(store, snapshots)
    runner = IngestRunner(ingest, LocalLeadership(store.lease, "me"))
    async with anyio.create_task_group() as tasks:
        await tasks.start(runner.run)  # a follower starts at once
        await anyio.wait_all_tasks_blocked()
        assert ingest.cycles == 0 and runner.terms == 0 and ingest.fence is None
        await other.resign()
        await wait_for(lambda: ingest.cycles >= 2, timeout=5, message="cycles once elected")
        assert snapshots.loads == 0 and set(ingest.tokens) == {A}  # adopted, not restored from disk
        assert ingest.sol_usd == 150.0 and store.summary().leader == "me" and store.summary().stale is False
        make_token(ingest, B, 2.0)
        await wait_for(lambda: store.latest().seq == 2, timeout=5, message="the new leader's commit")
        latest = store.latest()
        assert latest.epoch == v1.epoch and set(latest.records) == {A, B}  # same epoch, next seq
        assert latest.records[A] is v1.records[A]  # the adopted record is kept until refreshed
        # Leadership lost: the cycles stop, and a commit from the old term is fenced off.
        cycles = ingest.cycles
        await runner.leadership.resign()
        await other.elected()
        await wait_for(lambda: ingest.fence is None, timeout=5, message="the term ended")
        await anyio.wait_all_tasks_blocked()
        assert ingest.cycles <= cycles + 1
        tasks.cancel_scope.cancel()


async def test_a_leader_over_an_empty_store_restores_the_snapshot_as_seq_1_and_says_it_is_stale():
    store = MemoryStore()
    snapshots = Snapshots(Snapshot({A: record(A), B: record(B)}, sol_usd=148.5))
    ingest = ingest_over(store, snapshots)
    runner = IngestRunner(ingest, LocalLeadership(store.lease, "me"))
    async with anyio.create_task_group() as tasks:
        await tasks.start(runner.leadership.run)
        await tasks.start(runner.run)  # the leader has taken over when this returns
        latest = store.latest()
        assert (latest.epoch, latest.seq, set(latest.records)) == (store.epoch, 1, {A, B})
        assert latest.sol_usd == 148.5 and snapshots.loads == 1
        summary = store.summary()
        assert summary.stale is True and summary.leader == "me"
        make_token(ingest, A, 3.0)
        await wait_for(lambda: store.summary().stale is False, timeout=5, message="fresh data committed")
        tasks.cancel_scope.cancel()


def test_store_picks_the_backend_once():
    backend = open_backend(Settings(), instance="me")
    assert isinstance(backend.store, MemoryStore) and backend.leadership.instance == "me"
    assert backend.leadership.token is None and backend.store.lease.acquire("me") == 1
    assert backend.leadership.token == 1  # the store checks the tokens this leadership holds
    assert backend.budgets is None  # one process: each client keeps its own window
    shared = open_backend(Settings(store="redis", redis_url="redis://127.0.0.1:6379/0"), instance="me")
    assert type(shared.store).__name__ == "RedisStore" and shared.leadership.instance == "me"
    assert shared.leadership.token is None and shared.budgets is not None and shared.handover is not None


def test_health_reads_the_leaders_summary_and_measures_age_now():
    store = MemoryStore()
    latest = store.latest()
    assert health_body(latest, None, 10.0, T0) == {
        "status": "degraded", "epoch": store.epoch, "seq": 0, "tokens": 0, "age_s": None, "stale": False,
        "sol_usd": None, "sources": {}}
    source = {"ok": False, "last_success": T0 - 5, "last_error": {"message": "HTTP 500", "at": T0 - 1},
              "requests_last_min": 7, "budget_per_min": 300, "circuit": "closed", "skipped_items": 2}
    summary = CycleSummary(T0 - 1, "leader", {"dexscreener": source}, 150.0, False, T0 - 5)
    body = health_body(latest, summary, 10.0, T0)
    assert body["status"] == "ok" and body["age_s"] == 5.0 and body["sol_usd"] == 150.0
    entry = body["sources"]["dexscreener"]
    assert entry["last_error"] == {"message": "HTTP 500", "at": iso(T0 - 1)} and entry["last_success"] == iso(T0 - 5)
    assert entry["requests_last_min"] == 7 and entry["circuit"] == "closed"
    assert health_body(latest, summary, 10.0, T0 + 31)["status"] == "degraded"  # over 3 refresh intervals
    tripped = CycleSummary(T0, "leader", {"dexscreener": {**source, "circuit": "open"}}, 150.0, False, T0)
    assert health_body(latest, tripped, 10.0, T0)["status"] == "degraded"


async def test_alerts_and_health_are_answered_from_what_the_writer_put_in_the_store(tmp_path):
    """Without an ingest of its own (as a follower), an instance answers /api/alerts and /health from the
    store: the alerts travel in the versions, the health in the leader's summary."""
    settings = load_settings({}, dotenv=None).with_(data_dir=str(tmp_path))
    async with running_service(settings, Options(start_ingest=False)) as (base, app):
        runtime = app.state.service
        store = runtime.store
        token = await LocalLeadership(store.lease, "leader").elected()
        moving = record(A)
        moving["stats"]["5m"]["price_change"] = 0.0
        await store.commit(changeset(store.latest(), {A: moving}, committed_at=T0), token)
        for n, change in enumerate((6.0, 1.0, -8.0)):
            moved = record(A)
            moved["stats"]["5m"]["price_change"] = change
            await store.commit(changeset(store.latest(), {A: moved}, committed_at=T0 + n + 1,
                                         detector=AlertDetector(5, 3)), token)
        source = {"ok": True, "last_success": T0, "last_error": None, "requests_last_min": 4,
                  "budget_per_min": 300, "circuit": "closed", "skipped_items": 0}
        await store.publish_summary(CycleSummary(T0, "leader", {"dexscreener": source}, 151.0, False, T0), token)
        async with httpx.AsyncClient(base_url=base) as client:
            alerts = (await client.get("/api/alerts")).json()["data"]
            assert [(a["value"], a["seq"]) for a in alerts] == [(-8.0, 4), (6.0, 2)]  # newest first
            assert (await client.get("/api/alerts?limit=1")).json()["data"] == alerts[:1]
            health = (await client.get("/health")).json()
            assert health["sol_usd"] == 151.0 and health["seq"] == 4 and health["tokens"] == 1
            assert health["sources"]["dexscreener"]["requests_last_min"] == 4
