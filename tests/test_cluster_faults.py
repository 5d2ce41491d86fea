"""Redis itself failing under a running deployment (CONTRACT §7): stalled, flushed; and WEB_CONCURRENCY.

Each fault test runs its own `redis-server`, which it stops (SIGSTOP) or flushes; the shared one is never
touched beyond a test's own key prefix.
"""

from __future__ import annotations

import os
import tempfile
import time

import anyio
import httpx
import pytest

from app.demo.market import Market
from app.demo.server import serve_market
from tests.cluster_support import RATE_LIMITS, ROOT, Cluster, Stream, max_in_any_window, start_service, stop_service
from tests.redis_support import delete_prefix, free_port, unique_prefix
from tests.support import wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

VIEW = "sort=volume&limit=25"


async def test_a_stalled_redis_is_survived_and_caught_up_after(own_redis):
    model = Market(seed=21, n_tokens=80)
    async with serve_market(model, tick_interval=1.0) as market:
        cluster = Cluster(market, own_redis.url, n=2).start()
        try:
            async with httpx.AsyncClient() as client:
                await cluster.wait_ready(client)
                await cluster.leader(client)
                before = await cluster.healths(client)
                epoch = before[0]["epoch"]
                own_redis.pause()
                stalled = time.monotonic()
                # Every instance keeps serving its latest version, and says it is degraded.
                healths = await wait_for(lambda: _all_degraded(client, cluster), timeout=15,
                                         message="/health degraded everywhere")
                for instance, health in zip(cluster.instances, healths):
                    assert health["redis"]["ok"] is False and health["redis"]["last_error"]
                    page = await client.get(instance.url + f"/api/tokens?{VIEW}")
                    assert page.status_code == 200 and page.json()["epoch"] == epoch and page.json()["data"]
                sent = sum(len(v) for v in model.requests.values())
                # Past the lease: the old leader stepped down; nobody may call an upstream without the budget.
                await anyio.sleep(max(0.0, 3 + 1 - (time.monotonic() - stalled)))
                assert all(h["role"] == "follower" for h in await cluster.healths(client))
                assert sum(len(v) for v in model.requests.values()) <= sent + 3  # calls already in flight
                own_redis.resume()
                await cluster.leader(client, within=20)
                resumed = await wait_for(lambda: _all_past(client, cluster, max(h["seq"] for h in healths)),
                                         timeout=20, message="new versions everywhere")
                assert {h["epoch"] for h in resumed} == {epoch}
                assert all(h["redis"]["ok"] for h in resumed)
        finally:
            own_redis.resume()
            cluster.close()
        for source, limit in RATE_LIMITS.items():
            assert max_in_any_window([t for t, _, _ in model.requests[source]]) <= limit, source


async def _all_degraded(client: httpx.AsyncClient, cluster: Cluster) -> list[dict] | None:
    healths = await cluster.healths(client)
    return healths if all(h.get("status") == "degraded" and not h["redis"]["ok"] for h in healths) else None


async def _all_past(client: httpx.AsyncClient, cluster: Cluster, seq: int) -> list[dict] | None:
    healths = await cluster.healths(client)
    return healths if all(h.get("seq", -1) > seq and h.get("redis", {}).get("ok") for h in healths) else None


async def test_a_flushed_redis_starts_a_new_epoch_and_streams_get_a_snapshot(own_redis):
    async with serve_market(Market(seed=22, n_tokens=80), tick_interval=1.0) as market:
        cluster = Cluster(market, own_redis.url, n=2).start()
        try:
            async with httpx.AsyncClient() as client:
                await cluster.wait_ready(client)
                leader = await cluster.leader(client)
                follower = next(i for i in cluster.instances if i is not leader)
                before = await follower.health(client)
                old = before["epoch"]
                stream = Stream(client, f"{follower.url}/api/stream?{VIEW}")
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(stream.run)
                    await wait_for(lambda: stream.deltas(), timeout=20, message="the stream to flow")
                    own_redis.flush()
                    await wait_for(lambda: stream.epoch != old and stream.rows, timeout=20,
                                   message="a snapshot of the new epoch")
                    tasks.cancel_scope.cancel()
                assert stream.error is None and stream.snapshots == 2
                await wait_for(lambda: _one_new_epoch(client, cluster, old), timeout=20,
                               message="one new epoch everywhere")
                # The new history holds records at once (what the new leader knows; the rest return as the
                # budget allows: Redis forgot the budget's window, the upstreams did not, nor did the mirror).
                assert before["tokens"] > 0
        finally:
            cluster.close()


async def _one_new_epoch(client: httpx.AsyncClient, cluster: Cluster, old: str,
                         tokens: float = 1) -> list[dict] | None:
    healths = await cluster.healths(client)
    epochs = {h.get("epoch") for h in healths}
    fine = all(h.get("seq", 0) > 0 and h.get("tokens", 0) >= tokens for h in healths)
    return healths if len(epochs) == 1 and old not in epochs and fine else None


async def test_web_concurrency_serves_from_two_processes_on_one_port(redis_url):
    port, prefix = free_port(), unique_prefix("workers")
    env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(port), "STORE": "redis", "REDIS_URL": redis_url,
           "REDIS_PREFIX": prefix, "WEB_CONCURRENCY": "2", "REFRESH_INTERVAL_S": "1", "LEADER_TTL_S": "3",
           "DISCOVERY_INTERVAL_S": "5", "LOG_LEVEL": "warning", "PYTHONPATH": str(ROOT),
           "DATA_DIR": tempfile.mkdtemp(prefix="tokenstream-workers-")}
    process = start_service(env, "--demo")
    url = f"http://127.0.0.1:{port}"
    try:
        async def instances() -> dict[str, dict] | None:
            seen: dict[str, dict] = {}
            for _ in range(12):  # a new connection each time: the kernel spreads them over the workers
                async with httpx.AsyncClient() as client:
                    try:
                        health = (await client.get(url + "/health", timeout=2)).json()
                    except httpx.HTTPError:
                        return None
                seen[health["instance"]] = health
            ready = len(seen) == 2 and all(h["tokens"] > 0 for h in seen.values())
            return seen if ready else None

        seen = await wait_for(instances, timeout=60, interval=0.2, message="two workers serving")
        assert len({h["epoch"] for h in seen.values()}) == 1
        assert sorted(h["role"] for h in seen.values()) == ["follower", "leader"]
        assert len({h["leader"] for h in seen.values()}) == 1
    finally:
        stop_service(process)
        delete_prefix(redis_url, prefix)
