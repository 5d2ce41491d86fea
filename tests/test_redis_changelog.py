"""The change log in a real Redis: epochs, fenced commits, reading, following, folding into the base."""

from __future__ import annotations

import anyio
import pytest

from app.redis.changelog import ChangeLog, CommitRejected
from app.redis.connection import connect
from app.redis.keys import Keys
from app.redis.lease import Lease
from tests.support import wait_for

pytestmark = pytest.mark.anyio


async def _none(pending) -> bool:
    return not await pending


async def leader(redis, keys: Keys, name: str = "a", ttl_s: float = 30.0) -> Lease:
    lease = Lease(redis, keys, name, ttl_s)
    assert await lease.acquire() == name
    return lease


async def test_the_epoch_is_made_once_and_kept(redis, keys):
    log = ChangeLog(redis, keys)
    first = await log.open("e1")
    assert first == "e1"
    # Another instance (or a restart) proposing its own epoch gets the one in force.
    assert await ChangeLog(redis, keys).open("e2") == "e1"
    head = await log.head()
    assert (head.epoch, head.seq, head.base_seq) == ("e1", 0, 0)


async def test_a_flushed_redis_gives_a_new_epoch_and_an_empty_history(own_redis):
    client = connect(own_redis.url)
    keys = Keys("flush")
    try:
        log = ChangeLog(client, keys)
        await log.open("old")
        lease = await leader(client, keys)
        await log.commit(lease.token, "old", 1, b"one")
        own_redis.flush()
        assert (await log.head()).epoch is None
        assert await log.load() is None
        # The lease went with the data: the old leader's token commits nothing in the new history.
        assert await log.open("new") == "new"
        with pytest.raises(CommitRejected) as refused:
            await log.commit(lease.token, "new", 1, b"x")
        assert refused.value.reason == "fence"
        snapshot = await log.load()
        assert (snapshot.epoch, snapshot.seq, snapshot.entries, snapshot.base) == ("new", 0, [], {})
    finally:
        await client.aclose()


async def test_commits_are_fenced_and_strictly_sequential(redis, keys):
    log = ChangeLog(redis, keys)
    await log.open("e")
    lease = await leader(redis, keys)
    await log.commit(lease.token, "e", 1, b"first")
    for fence, epoch, seq, reason in [(lease.token, "e", 1, "seq"), (lease.token, "e", 3, "seq"),
                                      (lease.token, "other", 2, "epoch"), (9, "e", 2, "fence")]:
        with pytest.raises(CommitRejected) as refused:
            await log.commit(fence, epoch, seq, b"refused")
        assert refused.value.reason == reason
    await log.commit(lease.token, "e", 2, b"second")
    snapshot = await log.load()
    assert [(e.seq, e.payload) for e in snapshot.entries] == [(1, b"first"), (2, b"second")]
    assert snapshot.seq == 2
    assert [e.seq for e in await log.read(1)] == [2]
    assert await log.read(2) == []


async def test_a_blocked_reader_wakes_on_the_next_commit(redis, keys, redis_url):
    log = ChangeLog(redis, keys)
    await log.open("e")
    lease = await leader(redis, keys)
    follower = connect(redis_url, timeout_s=10)
    got = []
    try:
        async with anyio.create_task_group() as tasks:
            async def follow() -> None:
                got.extend(await ChangeLog(follower, keys).read(0, block_ms=5000))

            tasks.start_soon(follow)
            await anyio.sleep(0.2)  # let the reader block first: the point is that it wakes
            await log.commit(lease.token, "e", 1, b"news")
            # Long before the 5 s block would end on its own.
            await wait_for(lambda: got, timeout=2, interval=0.01, message="the blocked reader")
    finally:
        await follower.aclose()
    assert [(e.seq, e.payload) for e in got] == [(1, b"news")]


async def test_folding_moves_the_base_and_trims_only_what_it_folded(redis, keys):
    log = ChangeLog(redis, keys)
    await log.open("e")
    lease = await leader(redis, keys)
    for seq in range(1, 6):
        await log.commit(lease.token, "e", seq, f"cs{seq}".encode())
    await log.fold(lease.token, "e", 0, 3, b"info3", {"A": b"a3", "B": b"b2"}, [])
    snapshot = await log.load()
    assert (snapshot.base_seq, snapshot.base_info, snapshot.base) == (3, b"info3", {"A": b"a3", "B": b"b2"})
    assert [e.seq for e in snapshot.entries] == [4, 5]
    await log.fold(lease.token, "e", 3, 5, b"info5", {"C": b"c5"}, ["A"])
    snapshot = await log.load()
    assert snapshot.base == {"B": b"b2", "C": b"c5"}
    assert (snapshot.base_seq, snapshot.seq, snapshot.entries) == (5, 5, [])
    # Committing continues after a full fold.
    await log.commit(lease.token, "e", 6, b"cs6")
    assert [e.seq for e in (await log.load()).entries] == [6]


async def test_a_fold_is_refused_past_a_held_version_from_the_wrong_base_or_by_a_stale_leader(redis, keys):
    log = ChangeLog(redis, keys)
    await log.open("e")
    lease = await leader(redis, keys)
    for seq in range(1, 5):
        await log.commit(lease.token, "e", seq, b"x")
    await log.hold(2, 60)
    assert await log.held() == {2}
    for fence, base, to, reason in [(lease.token, 0, 3, "held"), (lease.token, 1, 2, "base"),
                                    (1, 0, 2, "fence"), (lease.token, 0, 9, "seq")]:
        with pytest.raises(CommitRejected) as refused:
            await log.fold(fence, "e", base, to, b"", {}, [])
        assert refused.value.reason == reason
    await log.fold(lease.token, "e", 0, 2, b"info2", {"A": b"a"}, [])  # up to the held version is fine
    assert (await log.load()).base_seq == 2


async def test_an_expired_hold_no_longer_blocks_a_fold(redis, keys):
    log = ChangeLog(redis, keys)
    await log.open("e")
    lease = await leader(redis, keys)
    for seq in range(1, 4):
        await log.commit(lease.token, "e", seq, b"x")
    await log.hold(1, 1.0)
    await log.hold(1, 0.01)  # never shortens a hold
    with pytest.raises(CommitRejected):
        await log.fold(lease.token, "e", 0, 3, b"", {}, [])
    await wait_for(lambda: _none(log.held()), timeout=3, message="the hold to expire")
    await log.fold(lease.token, "e", 0, 3, b"i", {}, [])
