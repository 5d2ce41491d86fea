"""The store contract: what every backend (tests/stores.py BACKENDS) must do, through the Store Protocol only.

Versions in order with records shared, the epoch rules, fencing, retention of at least five minutes past
a cursor's issue (on an injected clock, never a sleep), listeners, the leader's summary. A new backend
passes this suite before it is wired into app.store.factory.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from app.alerts import AlertDetector
from app.ingest.leader import changeset
from app.store.base import ChangeSet, CycleSummary, FencingError, OutOfOrder, Store, Version
from tests.stores import BACKENDS, Backend, Clock, fresh_backend

pytestmark = pytest.mark.anyio

A, B, C, D = (f"{c * 40}pump" for c in "ABCD")
FIVE_MINUTES = 300.0


def record(address: str, price: float = 1.0, change_5m: float | None = 0.0) -> dict[str, Any]:
    stats = {w: {"volume_usd": 10.0, "volume_sol": 0.1, "price_change": 0.0, "buys": 1, "sells": 2}
             for w in ("5m", "1h", "6h", "24h", "7d")}
    stats["5m"]["price_change"] = change_5m
    return {"token_address": address, "token_name": "Tok", "token_ticker": address[:3], "price_usd": price,
            "stats": stats, "updated_at": "2026-01-01T00:00:00Z"}


@pytest.fixture(params=BACKENDS)
async def backend(request):
    async with fresh_backend(request.param, Clock()) as opened:
        yield opened


async def write(store: Store, token: int, clock: Clock, upserts: dict, removals: tuple = (),
                **kw: Any) -> Version:
    changes = changeset(store.latest(), upserts, removals, committed_at=clock(), **kw)
    assert changes is not None
    return await store.commit(changes, token)


async def test_an_empty_store_is_seq_0_of_its_own_epoch(backend: Backend):
    store = backend.store
    latest = store.latest()
    assert latest.seq == 0 and not latest.records and not latest.encoded
    assert isinstance(store.epoch, str) and store.epoch and latest.epoch == store.epoch
    assert store.get(0) is latest and store.get(1) is None
    assert isinstance(store.secret, bytes) and len(store.secret) >= 16 and store.secret == store.secret
    assert store.summary() is None


async def test_commits_make_the_next_versions_sharing_what_did_not_change(backend: Backend):
    store, clock = backend.store, backend.clock
    token = await backend.leadership("writer").elected()
    v1 = await write(store, token, clock, {A: record(A), B: record(B), C: record(C)}, sol_usd=150.0)
    assert (v1.epoch, v1.seq) == (store.epoch, 1) and store.latest() is v1 and store.get(1) is v1
    assert v1.records[A] == record(A) and v1.sol_usd == 150.0 and v1.committed_at == clock()
    clock.t += 10
    v2 = await write(store, token, clock, {A: record(A, price=2.0, change_5m=12.0), D: record(D)}, (C,),
                     sol_usd=151.0, detector=AlertDetector(5, 3))
    assert v2.seq == 2 and store.latest() is v2 and store.get(1) is v1  # the older one is still held
    assert v2.records[B] is v1.records[B] and v2.encoded[B] is v1.encoded[B]  # shared, not copied
    assert set(v2.records) == {A, B, D} and v2.changed == {A, D} and v2.removed == {C}
    assert all(orjson.loads(v2.encoded[a]) == v2.records[a] for a in v2.records)
    assert v2.records[A]["price_usd"] == 2.0 and v2.sol_usd == 151.0 and v2.committed_at == clock()
    assert [a["type"] for a in v2.alerts] == ["price_move"] and v2.alerts[0]["seq"] == 2
    assert v2.recent_alerts == v2.alerts and v1.alerts == ()
    assert v1.records == {A: record(A), B: record(B), C: record(C)}  # versions never change


async def test_a_change_set_that_does_not_follow_the_latest_is_refused_and_changes_nothing(backend: Backend):
    store, clock = backend.store, backend.clock
    token = await backend.leadership("writer").elected()
    v1 = await write(store, token, clock, {A: record(A)})
    heard: list[int] = []
    store.listen(lambda version: heard.append(version.seq))
    body = {B: orjson.dumps(record(B))}
    for epoch, seq in ((store.epoch, 1), (store.epoch, 3), ("another-history", 2), ("another-history", 1)):
        with pytest.raises(OutOfOrder):
            await store.commit(ChangeSet(epoch, seq, clock(), body), token)
    assert store.latest() is v1 and store.get(2) is None and heard == []


async def test_the_epoch_is_the_stores_and_a_new_history_gets_a_new_one(backend: Backend):
    store, clock = backend.store, backend.clock
    token = await backend.leadership("writer").elected()
    epoch = store.epoch
    for n in range(3):
        version = await write(store, token, clock, {A: record(A, price=n + 1.0)})
        assert version.epoch == epoch == store.epoch
    async with fresh_backend(backend.name, Clock()) as other:
        assert other.store.epoch != epoch  # an empty store of its own (memory: another process)


async def test_a_stale_fencing_token_can_neither_commit_nor_publish(backend: Backend):
    store, clock = backend.store, backend.clock
    first, second = backend.leadership("first"), backend.leadership("second")
    old = await first.elected()
    # `leader` is the leader as last seen: another instance sees it once it has campaigned.
    assert first.token == old and second.token is None and first.leader == "first"
    await write(store, old, clock, {A: record(A)})
    await first.resign()
    await first.lost(old)  # returns: the term is over
    new = await second.elected()
    assert new > old and second.leader == "second" and first.token is None
    latest = store.latest()
    with pytest.raises(FencingError):
        await write(store, old, clock, {B: record(B)})
    summary = CycleSummary(clock(), "first", {}, None, False, None)
    with pytest.raises(FencingError):
        await store.publish_summary(summary, old)
    assert store.latest() is latest and store.summary() is None
    assert (await write(store, new, clock, {B: record(B)})).seq == latest.seq + 1


async def test_a_cursors_version_is_held_at_least_five_minutes_past_its_issue(backend: Backend):
    store, clock = backend.store, backend.clock
    token = await backend.leadership("writer").elected()
    pinned = await write(store, token, clock, {A: record(A), B: record(B)})
    issued = clock()
    store.hold(pinned.seq)  # what a first page with a next page does, on the latest version
    price = 1.0
    while clock.t + 10 < issued + FIVE_MINUTES:  # the data moves every 10 s meanwhile
        clock.t += 10
        price += 1
        await write(store, token, clock, {A: record(A, price=price)})
        assert store.get(pinned.seq) is pinned
    clock.t = issued + FIVE_MINUTES - 0.1
    await write(store, token, clock, {A: record(A, price=0.5)})
    assert store.get(pinned.seq) is pinned


async def test_a_superseded_version_is_held_at_least_five_minutes_without_any_hold(backend: Backend):
    store, clock = backend.store, backend.clock
    assert backend.hold_s >= FIVE_MINUTES
    token = await backend.leadership("writer").elected()
    version = await write(store, token, clock, {A: record(A)})
    clock.t += 5
    await write(store, token, clock, {A: record(A, price=2.0)})
    superseded_at = clock()
    for n in range(29):
        clock.t += 10
        await write(store, token, clock, {A: record(A, price=3.0 + n)})
        assert store.get(version.seq) is version
    clock.t = superseded_at + FIVE_MINUTES - 0.1
    await write(store, token, clock, {A: record(A, price=0.5)})
    assert store.get(version.seq) is version


async def test_listeners_hear_each_version_once_in_order_and_a_failing_one_stops_nothing(backend: Backend):
    store, clock = backend.store, backend.clock
    token = await backend.leadership("writer").elected()
    heard: list[tuple[int, bool]] = []

    def broken(version: Version) -> None:
        raise RuntimeError("a listener bug")

    store.listen(broken)
    stop = store.listen(lambda version: heard.append((version.seq, store.latest() is version)))
    for n in range(3):
        await write(store, token, clock, {A: record(A, price=n + 1.0)})
    assert heard == [(1, True), (2, True), (3, True)]  # each once, in order, when it is the latest
    stop()
    await write(store, token, clock, {A: record(A, price=9.0)})
    assert heard == [(1, True), (2, True), (3, True)] and store.latest().seq == 4


async def test_the_summary_is_the_one_the_leader_published_last(backend: Backend):
    store = backend.store
    token = await backend.leadership("writer").elected()
    sources = {"jupiter": {"ok": True, "last_success": 1.0, "last_error": {"message": "429", "at": 0.5},
                           "requests_last_min": 3, "budget_per_min": 30, "circuit": "closed", "skipped_items": 0}}
    for stale in (True, False):
        summary = CycleSummary(100.0, "writer", sources, 150.5, stale, 1.0)
        await store.publish_summary(summary, token)
        assert store.summary() == summary
    assert CycleSummary.from_json(summary.to_json()) == summary  # JSON-ready, for a shared backend
