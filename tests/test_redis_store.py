"""The Redis store beyond the contract suite: several instances over one Redis, joining, folding, holds."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import orjson
import pytest

from app.ingest.leader import changeset
from app.redis.keys import Keys
from app.redis.lease import Lease
from app.store.base import HOLD_S, FencingError, Version
from app.store.redis import RedisStore, StoreUnavailable
from tests.stores import Clock
from tests.support import wait_for

pytestmark = pytest.mark.anyio

A, B, C = (f"{c * 40}pump" for c in "ABC")


def record(address: str, price: float) -> dict:
    return {"token_address": address, "price_usd": price, "stats": {"5m": {"price_change": 0.0}},
            "updated_at": "2026-01-01T00:00:00Z"}


@contextlib.asynccontextmanager
async def instance(url: str, keys: Keys, clock: Clock) -> AsyncIterator[RedisStore]:
    async with RedisStore(url, keys, clock=clock, block_ms=200) as store:
        yield store


async def write(store: RedisStore, token: int, clock: Clock, upserts: dict) -> Version:
    changes = changeset(store.latest(), upserts, committed_at=clock(), sol_usd=150.0)
    assert changes is not None
    return await store.commit(changes, token)


def same(a: Version, b: Version) -> bool:
    return ((a.epoch, a.seq, a.committed_at, a.sol_usd, a.alerts, a.recent_alerts) ==
            (b.epoch, b.seq, b.committed_at, b.sol_usd, b.alerts, b.recent_alerts)
            and dict(a.encoded) == dict(b.encoded) and a.records == b.records)


async def leader_token(store: RedisStore, keys: Keys) -> int:
    lease = Lease(store.redis, keys, "leader", 30)
    await lease.acquire()
    assert lease.token is not None
    return lease.token


async def test_a_commit_on_one_instance_is_the_same_version_on_another(redis_url, keys):
    clock = Clock()
    async with instance(redis_url, keys, clock) as one, instance(redis_url, keys, clock) as two:
        assert one.epoch == two.epoch and one.secret == two.secret
        token = await leader_token(one, keys)
        heard: list[int] = []
        two.listen(lambda version: heard.append(version.seq))
        for n in range(3):
            clock.t += 10
            written = await write(one, token, clock, {A: record(A, n + 1.0), B: record(B, 2.0)})
        await wait_for(lambda: two.latest().seq == written.seq, timeout=5, message="the follower")
        assert heard == [1, 2, 3]
        for seq in (1, 2, 3):
            assert same(one.get(seq), two.get(seq))
        assert two.get(3).records[B] is two.get(2).records[B]  # unchanged records shared there too


async def test_a_joining_instance_holds_every_version_still_in_the_window(redis_url, keys):
    clock = Clock()
    async with instance(redis_url, keys, clock) as writer:
        token = await leader_token(writer, keys)
        for n in range(60):  # ten minutes of versions, one every 10 s
            clock.t += 10
            await write(writer, token, clock, {A: record(A, n + 1.0), C if n % 7 == 0 else B: record(B, n)})
            await writer.maintain()  # what its background loop does: share holds, fold what left the window
        latest = writer.latest()
        oldest = min(seq for seq in range(1, latest.seq + 1) if writer.get(seq) is not None)
        assert latest.seq - oldest < 40  # the leader itself let the old ones go
        head = await writer.log.head()
        assert head.base_seq > 1  # and the log was folded: it does not grow without end
        async with instance(redis_url, keys, clock) as joined:
            for seq in range(oldest, latest.seq + 1):
                version = writer.get(seq)
                superseded = writer.get(seq + 1)
                if superseded is None or clock() - superseded.committed_at < HOLD_S:
                    assert joined.get(seq) is not None and same(joined.get(seq), version), seq


async def test_a_cursor_hold_on_any_instance_keeps_its_version_for_a_joining_one(redis_url, keys):
    clock = Clock()
    async with instance(redis_url, keys, clock) as writer, instance(redis_url, keys, clock) as reader:
        token = await leader_token(writer, keys)
        clock.t += 10
        pinned = await write(writer, token, clock, {A: record(A, 1.0)})
        await wait_for(lambda: reader.get(pinned.seq) is not None, message="the reader")
        reader.hold(pinned.seq, 550)  # a cursor issued on the reader
        await reader.maintain()  # tells Redis
        for n in range(50):
            clock.t += 10
            await write(writer, token, clock, {A: record(A, n + 2.0)})
            await writer.maintain()
        assert writer.get(pinned.seq) is not None  # the writer keeps it too: the hold is shared
        async with instance(redis_url, keys, clock) as joined:
            assert joined.get(pinned.seq) is not None and same(joined.get(pinned.seq), pinned)


async def test_a_stale_token_commits_nothing_and_a_stalled_redis_fails_the_commit(own_redis):
    keys, clock = Keys("stale"), Clock()
    async with instance(own_redis.url, keys, clock) as store:
        token = await leader_token(store, keys)
        await write(store, token, clock, {A: record(A, 1.0)})
        with pytest.raises(FencingError):
            await write(store, token - 1, clock, {A: record(A, 2.0)})
        own_redis.pause()
        try:
            with pytest.raises(StoreUnavailable):
                await write(store, token, clock, {A: record(A, 3.0)})
            assert store.latest().seq == 1 and store.health.ok is False
            assert orjson.loads(store.latest().encoded[A])["price_usd"] == 1.0  # still served
        finally:
            own_redis.resume()
        # The timed-out commit may still have run once Redis woke up: the store follows whatever Redis holds.
        await wait_for(lambda: store.health.ok, timeout=10, message="redis back")
        head = await store.log.head()
        await wait_for(lambda: store.latest().seq == head.seq, timeout=10, message="caught up")
        assert head.seq in (1, 2) and (head.seq == 1 or store.get(2).records[A]["price_usd"] == 3.0)
        assert (await write(store, token, clock, {A: record(A, 4.0)})).seq == head.seq + 1
