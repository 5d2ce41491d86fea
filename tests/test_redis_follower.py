"""Following the change log in a real Redis: join, follow, reload after a flush or a fold past us, stalls."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator

import anyio
import pytest

from app.redis.changelog import ChangeLog, LogEntry, LogSnapshot
from app.redis.connection import RedisHealth, connect
from app.redis.follower import Follower
from app.redis.keys import Keys
from app.redis.lease import Lease
from tests.support import wait_for

pytestmark = pytest.mark.anyio


class Replica:
    """The follower's view of a local store: the epoch, the seq, and every payload in order."""

    def __init__(self) -> None:
        self.epoch: str | None = None
        self.seq = 0
        self.payloads: list[bytes] = []
        self.resets = 0

    @property
    def log_epoch(self) -> str | None:
        return self.epoch

    @property
    def log_seq(self) -> int:
        return self.seq

    def reset(self, snapshot: LogSnapshot) -> None:
        self.epoch, self.seq, self.resets = snapshot.epoch, snapshot.base_seq, self.resets + 1
        self.payloads = [snapshot.base_info]
        for entry in snapshot.entries:
            self.apply(entry)

    def apply(self, entry: LogEntry) -> bool:
        assert entry.seq == self.seq + 1
        self.seq = entry.seq
        self.payloads.append(entry.payload)
        return True


@contextlib.asynccontextmanager
async def following(url: str, keys: Keys, timeout_s: float = 2.0) -> AsyncIterator[tuple[Follower, Replica]]:
    client = connect(url, timeout_s=timeout_s)
    replica = Replica()
    follower = Follower(ChangeLog(client, keys), replica, RedisHealth(), lambda: secrets.token_hex(4),
                        block_ms=300)
    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(follower.run)
            yield follower, replica
            tasks.cancel_scope.cancel()
    finally:
        await client.aclose()


async def writer(client, keys: Keys) -> tuple[ChangeLog, Lease, str]:
    log = ChangeLog(client, keys)
    epoch = await log.open("e1")
    lease = Lease(client, keys, "leader", 30)
    await lease.acquire()
    return log, lease, epoch


async def test_a_joining_instance_holds_every_version_in_the_window_then_follows(redis, keys, redis_url):
    log, lease, epoch = await writer(redis, keys)
    for seq in range(1, 5):
        await log.commit(lease.token, epoch, seq, b"cs%d" % seq)
    await log.fold(lease.token, epoch, 0, 2, b"base2", {"A": b"a"}, [])
    async with following(redis_url, keys) as (follower, replica):
        await wait_for(lambda: replica.seq == 4, message="the join")
        assert replica.payloads == [b"base2", b"cs3", b"cs4"] and replica.epoch == epoch
        await log.commit(lease.token, epoch, 5, b"cs5")
        await wait_for(lambda: replica.seq == 5, timeout=1, message="the next commit")
        assert replica.payloads[-1] == b"cs5" and replica.resets == 1


def test_a_commit_applied_locally_first_is_not_applied_twice():
    replica = Replica()
    replica.epoch = "e"
    follower = Follower(None, replica, RedisHealth(), lambda: "x")  # type: ignore[arg-type]
    replica.apply(LogEntry(1, b"mine"))  # the leader applies its own commit without waiting
    follower.take([LogEntry(1, b"mine"), LogEntry(2, b"next")])
    assert replica.payloads == [b"mine", b"next"]


async def test_an_instance_that_fell_behind_the_base_reloads(redis, keys):
    log, lease, epoch = await writer(redis, keys)
    await log.commit(lease.token, epoch, 1, b"cs1")
    replica = Replica()
    follower = Follower(log, replica, RedisHealth(), lambda: "x", block_ms=100)
    await follower.step()
    assert (replica.seq, replica.payloads) == (1, [b"", b"cs1"])
    # While this instance was away, the log moved on and folded past its position.
    for seq in range(2, 5):
        await log.commit(lease.token, epoch, seq, b"cs%d" % seq)
    await log.fold(lease.token, epoch, 0, 3, b"base3", {}, [])
    await follower.step()  # sees entry 4 after seq 1: a gap
    assert replica.seq == 1
    await follower.step()
    assert (replica.resets, replica.seq, replica.payloads) == (2, 4, [b"base3", b"cs4"])


async def test_a_flush_gives_every_follower_the_new_epoch(own_redis):
    keys = Keys("flushed")
    client = connect(own_redis.url)
    try:
        log, lease, epoch = await writer(client, keys)
        for seq in range(1, 4):
            await log.commit(lease.token, epoch, seq, b"old")
        async with following(own_redis.url, keys) as (_, replica):
            await wait_for(lambda: replica.seq == 3, message="the load")
            own_redis.flush()
            await wait_for(lambda: replica.epoch not in (None, epoch), timeout=5, message="a new epoch")
            assert replica.seq == 0 and replica.payloads == [b""]
            new_epoch = replica.epoch
            assert await log.open("proposed") == new_epoch  # the follower made it; everyone agrees on it
            await lease.acquire()
            await log.commit(lease.token, new_epoch, 1, b"new")
            await wait_for(lambda: replica.seq == 1, message="the new history")
    finally:
        await client.aclose()


async def test_a_stalled_redis_keeps_the_replica_and_it_catches_up_after(own_redis):
    keys = Keys("stalled")
    client = connect(own_redis.url)
    try:
        log, lease, epoch = await writer(client, keys)
        await log.commit(lease.token, epoch, 1, b"one")
        async with following(own_redis.url, keys, timeout_s=0.5) as (follower, replica):
            await wait_for(lambda: replica.seq == 1, message="the load")
            own_redis.pause()
            await wait_for(lambda: follower.health.ok is False, timeout=5, message="the stall to be noticed")
            assert replica.seq == 1 and replica.epoch == epoch  # still serving what it had
            own_redis.resume()
            await log.commit(lease.token, epoch, 2, b"two")
            await wait_for(lambda: replica.seq == 2 and follower.health.ok, timeout=10, message="the catch-up")
            assert replica.epoch == epoch and replica.payloads[-2:] == [b"one", b"two"]
    finally:
        own_redis.resume()
        await client.aclose()
