"""Three instances over one Redis behave as one service (CONTRACT §7): real processes, loopback, real Redis.

Each test runs the simulated market in this process and `python -m app` instances with STORE=redis under
a key prefix of their own. Faults on Redis itself are in tests/test_cluster_faults.py.
"""

from __future__ import annotations

import time

import anyio
import httpx
import pytest

from app.demo.market import Market
from app.demo.server import serve_market
from tests.cluster_support import RATE_LIMITS, Cluster, Stream, max_in_any_window
from tests.redis_support import delete_prefix
from tests.support import wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

VIEW = "sort=volume&limit=25"


async def seq_of(client: httpx.AsyncClient, instance) -> int:
    return (await instance.health(client) or {}).get("seq", -1)


async def test_three_instances_serve_the_one_leaders_versions(redis_url):
    async with serve_market(Market(seed=11, n_tokens=120), tick_interval=1.0) as market:
        cluster = Cluster(market, redis_url, n=3).start()
        try:
            async with httpx.AsyncClient() as client:
                await cluster.wait_ready(client)
                leader = await cluster.leader(client)
                followers = [i for i in cluster.instances if i is not leader]
                healths = await cluster.healths(client)
                assert len({h["epoch"] for h in healths}) == 1
                assert sum(h["role"] == "leader" for h in healths) == 1

                # A version the leader commits is served by every follower within 1 s.
                lags = []
                for _ in range(3):
                    base = await seq_of(client, leader)
                    seen = await wait_for(lambda b=base: _newer(client, leader, b), timeout=10, interval=0.02,
                                          message="a new version on the leader")
                    committed = time.monotonic()
                    for follower in followers:
                        await wait_for(lambda f=follower, s=seen: _at_least(client, f, s), timeout=3,
                                       interval=0.02, message="the follower to serve it")
                        lags.append(time.monotonic() - committed)
                assert max(lags) < 1.0, lags

                # Same versions: at one seq every instance answers the same page, byte for byte.
                pages = await _same_seq_pages(client, cluster.instances, f"/api/tokens?{VIEW}&limit=100")
                assert len(pages) == 3 and len({p for p in pages}) == 1

                # A cursor walk that crosses instances sees one version, every record once, in order.
                url = "/api/tokens?sort=liquidity&limit=7"
                first = (await client.get(cluster.instances[0].url + url)).json()
                walk, cursor, hop = list(first["data"]), first["next_cursor"], 1
                while cursor:
                    page = (await client.get(cluster.instances[hop % 3].url + "/api/tokens",
                                             params={"sort": "liquidity", "limit": "7", "cursor": cursor}))
                    assert page.status_code == 200, page.text
                    body = page.json()
                    assert (body["epoch"], body["seq"]) == (first["epoch"], first["seq"])
                    walk += body["data"]
                    cursor, hop = body["next_cursor"], hop + 1
                addresses = [r["token_address"] for r in walk]
                assert len(addresses) == first["total"] == len(set(addresses)) and hop > 2
                liquidity = [r["liquidity_usd"] for r in walk if r["liquidity_usd"] is not None]
                assert liquidity == sorted(liquidity, reverse=True)

                # An SSE stream resumed on another instance continues with one bridging delta.
                stream = Stream(client, f"{followers[0].url}/api/stream?{VIEW}")
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(stream.run)
                    await wait_for(lambda: len(stream.deltas()) >= 2, timeout=20, message="two deltas")
                    tasks.cancel_scope.cancel()
                resumed = Stream(client, f"{followers[1].url}/api/stream?{VIEW}", last_event_id=stream.last_id)
                resumed.rows, resumed.epoch, resumed.seq = stream.rows, stream.epoch, stream.seq
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(resumed.run)
                    await wait_for(lambda: resumed.events, timeout=10, message="the resume")
                    tasks.cancel_scope.cancel()
                kind, data = resumed.events[0]
                assert kind == "delta" and data["prev_seq"] == stream.seq and resumed.error is None

                # Alerts answer the same everywhere.
                alerts = await _same_seq_pages(client, cluster.instances, "/api/alerts?limit=1000")
                assert len({a for a in alerts}) == 1
        finally:
            cluster.close()
            delete_prefix(redis_url, cluster.prefix)


async def _newer(client: httpx.AsyncClient, instance, seq: int) -> int | None:
    now = await seq_of(client, instance)
    return now if now > seq else None


async def _at_least(client: httpx.AsyncClient, instance, seq: int) -> bool:
    return await seq_of(client, instance) >= seq


async def _same_seq_pages(client: httpx.AsyncClient, instances, path: str) -> list[bytes]:
    """The same request to every instance, answered at one seq (retried until the seqs agree)."""

    async def attempt() -> list[bytes] | None:
        before = [await seq_of(client, i) for i in instances]
        bodies = [(await client.get(i.url + path)).content for i in instances]
        after = [await seq_of(client, i) for i in instances]
        return bodies if len(set(before + after)) == 1 else None

    return await wait_for(attempt, timeout=20, interval=0.05, message="every instance at one seq")


async def test_killing_the_leader_hands_over_without_a_gap_or_an_overspent_budget(redis_url):
    market_model = Market(seed=12, n_tokens=150)
    async with serve_market(market_model, tick_interval=1.0) as market:
        cluster = Cluster(market, redis_url, n=3).start()
        try:
            async with httpx.AsyncClient() as client:
                await cluster.wait_ready(client)
                leader = await cluster.leader(client)
                followers = [i for i in cluster.instances if i is not leader]
                epoch = (await leader.health(client))["epoch"]
                streams = [Stream(client, f"{f.url}/api/stream?{VIEW}") for f in followers]
                async with anyio.create_task_group() as tasks:
                    for stream in streams:
                        tasks.start_soon(stream.run)
                    await wait_for(lambda: all(len(s.deltas()) >= 1 for s in streams), timeout=20,
                                   message="the streams to flow")
                    before = max(s.seq for s in streams)
                    leader.kill()
                    killed = time.monotonic()
                    successor = await cluster.leader(client, within=15)
                    took = time.monotonic() - killed
                    await wait_for(lambda: all(s.seq >= before + 3 for s in streams), timeout=20,
                                   message="versions from the new leader on every stream")
                    tasks.cancel_scope.cancel()
                assert successor is not leader
                assert took < 3 + 1 + 1.5, took  # LEADER_TTL_S + a refresh interval (+ the probe's polling)
                for stream in streams:
                    assert stream.error is None and stream.snapshots == 1 and stream.epoch == epoch
                assert (await successor.health(client))["epoch"] == epoch
        finally:
            cluster.close()
            delete_prefix(redis_url, cluster.prefix)
        # The market's own log: no upstream got more than its budget from the deployment in any 60 s.
        for source, limit in RATE_LIMITS.items():
            times = [t for t, _, _ in market_model.requests[source]]
            assert times and max_in_any_window(times) <= limit, (source, max_in_any_window(times), limit)


async def test_restarting_every_instance_keeps_the_epoch(redis_url):
    async with serve_market(Market(seed=13, n_tokens=80), tick_interval=1.0) as market:
        cluster = Cluster(market, redis_url, n=2).start()
        try:
            async with httpx.AsyncClient() as client:
                await cluster.wait_ready(client)
                await cluster.leader(client)
                health = await cluster.instances[0].health(client)
                for instance in cluster.instances:
                    instance.stop()
                restarted = [cluster.add(), cluster.add()]
                await cluster.wait_ready(client)
                await cluster.leader(client)
                await wait_for(lambda: _at_least(client, restarted[0], health["seq"] + 1), timeout=20,
                               message="new versions after the restart")
                for instance in restarted:
                    assert (await instance.health(client))["epoch"] == health["epoch"]
        finally:
            cluster.close()
            delete_prefix(redis_url, cluster.prefix)
