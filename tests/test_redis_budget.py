"""The deployment-wide budget in a real Redis: instances share one sliding window; no Redis, no call."""

from __future__ import annotations

import time

import anyio
import httpx
import pytest

from app.redis.budget import SharedBudget
from app.redis.connection import RedisHealth, connect
from app.redis.keys import Keys
from app.sources.client import MAIN, UpstreamClient, UpstreamError

pytestmark = pytest.mark.anyio


async def test_instances_share_one_window(redis, keys, redis_url):
    other = connect(redis_url)
    try:
        a = SharedBudget(redis, keys, "gecko", 5, instance="a")
        b = SharedBudget(other, keys, "gecko", 5, instance="b")
        taken = [await a.take(0), await b.take(0), await a.take(0), await b.take(0), await a.take(0)]
        assert taken == [True] * 5
        assert not await b.take(0) and not await a.take(0)  # both see the five the other sent
        await b.refresh()
        assert (a.used(), b.used(), a.available(), b.available()) == (5, 5, 0, 0)
        assert 59 < b.wait_time() <= 60.5
    finally:
        await other.aclose()


async def test_groups_have_separate_windows(redis, keys):
    lists = SharedBudget(redis, keys, "dexscreener:lists", 1)
    pairs = SharedBudget(redis, keys, "dexscreener", 1)
    assert await lists.take(0) and await pairs.take(0)
    assert not await lists.take(0)


async def test_room_comes_back_as_the_window_slides_and_take_waits_for_it(redis, keys):
    budget = SharedBudget(redis, keys, "jupiter", 2, window_s=1.0)  # 1.5 s with the slack
    assert await budget.take(0) and await budget.take(0)
    started = time.monotonic()
    assert not await budget.take(max_wait=0.2)  # would need ~1.5 s: gives up at once, spends nothing
    assert time.monotonic() - started < 0.2
    assert budget.used() == 2
    assert await budget.take(max_wait=5)
    assert 1.0 < time.monotonic() - started < 3.0


async def test_many_concurrent_takers_never_exceed_the_limit(redis, keys, redis_url):
    clients = [connect(redis_url) for _ in range(4)]
    budgets = [SharedBudget(c, keys, "dex", 25, instance=f"i{n}") for n, c in enumerate(clients)]
    results: list[bool] = []
    try:
        for client in clients:
            await client.ping()  # connections made first: the race below is the takes', not the connects'
        async with anyio.create_task_group() as tasks:
            for budget in budgets:
                for _ in range(15):
                    async def one(b: SharedBudget = budget) -> None:
                        results.append(await b.take(0))
                    tasks.start_soon(one)
        # Redis hands out exactly the 25 slots; a go-ahead answered too late (a loaded machine) is refused
        # by its taker, so the takers may use fewer, never more.
        assert await redis.zcard(keys.budget("dex")) == 25 and len(results) == 60
        assert 0 < results.count(True) <= 25
    finally:
        for client in clients:
            await client.aclose()


async def test_without_redis_nothing_is_taken(own_redis):
    client = connect(own_redis.url, timeout_s=0.3)
    health = RedisHealth()
    budget = SharedBudget(client, Keys("nobudget"), "dex", 100, health=health)
    try:
        assert await budget.take(0)
        assert health.ok
        own_redis.pause()
        assert not await budget.take(max_wait=5)  # stalled: no go-ahead
        assert health.ok is False and "budget dex" in health.last_error[0]
        own_redis.resume()
        own_redis.stop()
        assert not await budget.take(max_wait=5)  # gone: no go-ahead either
        assert health.as_json()["ok"] is False
    finally:
        await client.aclose()


async def test_a_slow_round_trip_is_not_a_go_ahead(own_redis):
    client = connect(own_redis.url, timeout_s=3)
    budget = SharedBudget(client, Keys("slow"), "dex", 100)
    results: list[bool] = []
    try:
        own_redis.pause()
        async with anyio.create_task_group() as tasks:
            async def take(max_wait: float) -> None:
                results.append(await budget.take(max_wait))
            tasks.start_soon(take, 0.0)
            tasks.start_soon(take, 5.0)
            await anyio.sleep(0.6)  # the stall itself, longer than the round trip a stamp may precede a call by
            own_redis.resume()
        # Both stamps were spent; neither stalled answer let a request go; the retry (fast) did.
        assert sorted(results) == [False, True]
        assert await client.zcard(Keys("slow").budget("dex")) == 3
    finally:
        own_redis.resume()
        await client.aclose()


async def test_a_paced_call_with_no_slot_in_time_spends_nothing_of_the_shared_budget(redis, keys):
    """Keyless Jupiter is paced (a slot every few seconds): a call that cannot get a slot within its wait
    fails as "paced", and the deployment's window still counts only the request that really went out."""
    answered = []
    transport = httpx.MockTransport(lambda request: answered.append(request) or httpx.Response(200, json={}))
    async with httpx.AsyncClient(transport=transport) as http:
        client = UpstreamClient("jupiter", http, "http://jupiter.test", 30, cache_ttl_s=0, spacing_s=5.0)
        budget = client.budgets[MAIN] = SharedBudget(redis, keys, "jupiter", 30)
        assert await client.get_json("/price/v3", {"ids": "a"}) == {}
        with pytest.raises(UpstreamError, match="paced: no slot in time"):
            await client.get_json("/price/v3", {"ids": "b"}, max_wait=1.0)  # the next slot is ~5 s away
        await budget.refresh()
        assert len(answered) == 1 and budget.used() == 1
