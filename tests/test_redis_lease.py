"""The leader lease in a real Redis: one holder, renewal, expiry, takeover, and the local deadline."""

from __future__ import annotations

import anyio
import pytest

from app.redis.changelog import ChangeLog, CommitRejected
from app.redis.connection import connect
from app.redis.keys import Keys
from app.redis.lease import Lease, parse_lease
from tests.support import wait_for

pytestmark = pytest.mark.anyio


async def _is_b(pending) -> bool:
    return await pending == "b"


async def test_one_holder_at_a_time(redis, keys):
    a, b = Lease(redis, keys, "a", 5), Lease(redis, keys, "b", 5)
    assert await a.acquire() == "a" and a.held
    assert await b.acquire() == "a" and not b.held  # b sees who leads
    assert await b.holder() == "a"
    assert await a.renew() and a.held
    assert not await b.renew()


async def test_the_local_deadline_comes_before_redis_could_expire_the_lease(redis, keys):
    clock = [100.0]
    lease = Lease(redis, keys, "a", 10, clock=lambda: clock[0])
    await lease.acquire()
    assert lease.deadline <= 100.0 + 10 - lease.margin_s
    pttl = await redis.pttl(keys.leader)
    assert pttl > (lease.deadline - 100.0) * 1000  # Redis keeps it at least until our deadline
    clock[0] = lease.deadline
    assert not lease.held  # past the deadline we no longer lead, whatever Redis still says


async def test_an_expired_lease_passes_to_another_and_fences_the_old_holder(redis, keys):
    log = ChangeLog(redis, keys)
    await log.open("e")
    a, b = Lease(redis, keys, "a", 0.3), Lease(redis, keys, "b", 5)
    await a.acquire()
    await log.commit(a.token, "e", 1, b"by a")
    await wait_for(lambda: _is_b(b.acquire()), timeout=3, message="b to take the lease")
    assert b.token > a.token and parse_lease(await redis.get(keys.leader)) == (b.token, "b")
    with pytest.raises(CommitRejected) as refused:  # a wakes up late: its writes are refused
        await log.commit(a.token, "e", 2, b"stale")
    assert refused.value.reason == "fence"
    assert not await a.renew() and a.token is None
    await log.commit(b.token, "e", 2, b"by b")


async def test_release_hands_over_at_once(redis, keys):
    a, b = Lease(redis, keys, "a", 30), Lease(redis, keys, "b", 30)
    await a.acquire()
    await a.release()
    assert await b.acquire() == "b"


async def test_tokens_keep_growing_after_redis_lost_its_counter(own_redis):
    client = connect(own_redis.url)
    keys = Keys("lease")
    try:
        first = Lease(client, keys, "a", 30)
        await first.acquire()
        own_redis.flush()
        second = Lease(client, keys, "a", 30)  # same instance id, counter back at 1
        await second.acquire()
        assert second.token > first.token  # a new term's token is larger than every earlier one
        assert not await first.renew()
    finally:
        await client.aclose()


async def test_a_stalled_redis_cannot_be_renewed_and_the_leader_steps_down_by_its_deadline(own_redis):
    client = connect(own_redis.url, timeout_s=0.3)
    lease = Lease(client, Keys("stall"), "a", 1.0)
    try:
        await lease.acquire()
        own_redis.pause()
        with pytest.raises(Exception):  # noqa: B017 - a timeout of the client library, whatever its class
            await lease.renew()
        await wait_for(lambda: not lease.held, timeout=2, interval=0.02, message="the lease deadline")
    finally:
        own_redis.resume()
        await client.aclose()


async def test_leadership_steps_down_by_its_deadline_when_redis_stalls_and_leads_again_after(own_redis):
    from app.redis.connection import RedisHealth
    from app.redis.leadership import RedisLeadership

    client = connect(own_redis.url, timeout_s=0.3)
    health = RedisHealth()
    leadership = RedisLeadership(Lease(client, Keys("terms"), "a", 1.5), health, poll_s=0.2)
    try:
        async with anyio.create_task_group() as tasks:
            await tasks.start(leadership.run)
            token = await leadership.elected()
            assert leadership.leader == "a" and leadership.token == token
            own_redis.pause()
            with anyio.fail_after(3):  # the lease's local deadline ends the term (TTL 1.5 s)
                await leadership.lost(token)
            assert leadership.token is None and health.ok is False
            own_redis.resume()
            with anyio.fail_after(5):
                again = await leadership.elected()
            assert again > token and health.ok
            tasks.cancel_scope.cancel()
    finally:
        own_redis.resume()
        await client.aclose()
