"""What one client may cost: request rates per client (429 + Retry-After), the byte-bounded query caches,
and the limits' settings. Integration tests run the real service over loopback HTTP."""

from __future__ import annotations

import anyio
import httpx
import orjson
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from app.api.limits import ClientLimiter
from app.config import ConfigError, load_settings
from app.demo.market import Market
from app.demo.server import serve_market
from app.query import ViewCache, parse_view
from app.query.index import filtered
from tests.stores import memory_store
from tests.support import fast_settings, running_service, wait_for

pytestmark = pytest.mark.timeout(90)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


# ----------------------------------------------------------------------------------------- unit tests


def test_a_bucket_allows_its_burst_then_its_rate_and_says_how_long_to_wait():
    clock = Clock()
    limiter = ClientLimiter(rate=2.0, burst=5, clock=clock)
    assert [limiter.take("a") for _ in range(5)] == [0.0] * 5
    assert limiter.take("a") == pytest.approx(0.5)  # one token at 2/s
    assert limiter.take("b") == 0.0  # another client has its own bucket
    clock.t += 1.0  # two tokens back
    assert limiter.take("a") == 0.0 and limiter.take("a") == 0.0 and limiter.take("a") > 0
    clock.t += 100.0  # refilled to the burst, never beyond
    assert [limiter.take("a") for _ in range(6)].count(0.0) == 5
    assert limiter.refused == 3


def test_no_limit_at_rate_zero_and_the_buckets_kept_are_bounded():
    assert all(ClientLimiter(0, 1).take("a") == 0.0 for _ in range(1000))
    clock = Clock()
    limiter = ClientLimiter(rate=1.0, burst=2, max_clients=100, clock=clock)
    for i in range(1000):
        limiter.take(f"client{i}")
        clock.t += 0.001
    assert len(limiter._buckets) <= 100
    limiter.take("busy")
    limiter.take("busy")
    assert limiter.take("busy") > 0  # a client still being limited is not forgotten by the next one
    limiter.take("newcomer")
    assert limiter.take("busy") > 0


def test_the_view_cache_stays_within_its_bytes_however_many_distinct_queries():
    store = memory_store()
    store.apply({f"m{i:04d}": {"token_address": f"m{i:04d}", "liquidity_usd": i, "stats": {}} for i in range(2000)})
    cache = ViewCache(max_bytes=2 << 20)
    version = store.latest()
    for minimum in range(3000):
        view = parse_view({"min_liquidity_usd": str(minimum)})
        assert filtered(version, view, cache=cache) == filtered(version, view)  # same answer, cached or not
        assert cache.bytes <= cache.max_bytes
    assert cache.evicted > 0 and len(cache) < 3000
    # The newest entries are the ones kept.
    assert cache.get(version, ("filtered", parse_view({"min_liquidity_usd": "2999"}).filter_key, None)) is not None


def test_the_view_cache_lets_go_of_versions_a_minute_older_than_the_newest():
    store = memory_store(clock=Clock())
    cache = ViewCache(max_bytes=8 << 20, keep_s=60)
    store.apply({"m1": {"token_address": "m1", "liquidity_usd": 1, "stats": {}}})
    old = store.latest()
    filtered(old, parse_view({"min_liquidity_usd": "1"}), cache=cache)
    used = cache.bytes
    store._clock.t += 30
    store.apply({"m1": {"token_address": "m1", "liquidity_usd": 2, "stats": {}}})
    filtered(store.latest(), parse_view({}), cache=cache)
    assert cache.get(old, ("filtered", parse_view({"min_liquidity_usd": "1"}).filter_key, None)) is not None
    store._clock.t += 61
    store.apply({"m1": {"token_address": "m1", "liquidity_usd": 3, "stats": {}}})
    filtered(store.latest(), parse_view({}), cache=cache)
    assert cache.get(old, ("filtered", parse_view({"min_liquidity_usd": "1"}).filter_key, None)) is None
    assert cache.evicted >= used


def test_a_new_version_empties_idle_caches_without_any_query():
    from app.api.hot import HotPages

    clock = Clock()
    store = memory_store(clock=clock)
    store.apply({"m1": {"token_address": "m1", "liquidity_usd": 1, "stats": {}}})
    cache, hot = ViewCache(keep_s=60), HotPages(max_bytes=1 << 20)
    first = store.latest()
    filtered(first, parse_view({"min_liquidity_usd": "1"}), cache=cache)
    hot.put(first.epoch, first.seq, b"limit=1", b"x" * 1000, '"etag"')
    clock.t += 120
    store.apply({"m1": {"token_address": "m1", "liquidity_usd": 2, "stats": {}}})
    newer = store.latest()
    cache.retire(newer)  # what the runtime does for every new version (app.runtime, `retire`)
    assert cache.bytes == 0 and len(cache) == 0
    assert hot.retire(newer.epoch, newer.seq) > 1000 and hot.bytes == 0 and not hot.pages
    assert hot.retire(newer.epoch, newer.seq) == 0


@pytest.mark.parametrize("name,value", [
    ("MAX_VIEWS", "0"), ("MAX_VIEWS_PER_CLIENT", "x"), ("CLIENT_RATE_LIMIT", "-1"), ("CLIENT_RATE_BURST", "0"),
    ("QUERY_CACHE_MB", "lots"), ("REQUEST_TIMEOUT_S", "0"), ("MAX_HEADER_BYTES", "100"),
])
def test_a_bad_limit_setting_is_one_line_naming_it(name, value):
    with pytest.raises(ConfigError) as info:
        load_settings({name: value}, dotenv=None)
    assert str(info.value).startswith(f"{name}=") and "expected" in str(info.value) and "\n" not in str(info.value)


def test_limit_settings_have_defaults_and_parse():
    s = load_settings({}, dotenv=None)
    assert (s.max_views, s.max_views_per_client, s.client_rate_limit, s.client_rate_burst) == (1000, 100, 50, 200)
    assert (s.query_cache_mb, s.request_timeout_s, s.max_header_bytes) == (64, 10, 16384)
    s = load_settings({"CLIENT_RATE_LIMIT": "0", "QUERY_CACHE_MB": "8.5", "MAX_VIEWS": "20"}, dotenv=None)
    assert (s.client_rate_limit, s.query_cache_mb, s.max_views) == (0, 8.5, 20)


# ---------------------------------------------------------------------------------- over real HTTP


@pytest.mark.anyio
async def test_a_client_past_its_rate_gets_429_with_retry_after_and_others_and_health_are_served(tmp_path):
    market = Market(seed=31, n_tokens=40)
    async with serve_market(market, tick_interval=None) as upstream:
        settings = fast_settings(upstream, data_dir=str(tmp_path), client_rate_limit=2.0, client_rate_burst=10)
        async with running_service(settings) as (base, app), httpx.AsyncClient(base_url=base) as client:
            await wait_for(lambda: _ready(client), timeout=20, message="ready")
            statuses = [(await client.get("/api/tokens?limit=1")).status_code for _ in range(12)]
            assert statuses.count(200) >= 9 and statuses[-1] == 429  # the burst (less /ready's polls), then 429
            refused = await client.get("/api/tokens?limit=2&sort=price")  # cached or not: refused before both
            assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
            assert refused.json()["error"]["code"] == "rate_limited" and refused.json()["error"]["message"]
            assert (await client.get("/health")).status_code == 200  # monitors are never limited
            assert (await client.get("/api/stream")).status_code == 429
            with pytest.raises(InvalidStatus) as caught:  # the WebSocket handshake too
                async with ws_connect(base.replace("http", "ws") + "/ws"):
                    pass
            assert caught.value.response.status_code == 429
            # Another client (another address) is served meanwhile.
            svc = app.state.service
            assert svc.limiter.take("192.0.2.7") == 0.0
            # After Retry-After, the client is served again.
            await anyio.sleep(int(refused.headers["retry-after"]))
            assert (await client.get("/api/tokens?limit=1")).status_code == 200


@pytest.mark.anyio
async def test_websocket_subscribes_count_against_the_rate_and_a_refused_one_keeps_the_connection(tmp_path):
    market = Market(seed=32, n_tokens=40)
    async with serve_market(market, tick_interval=None) as upstream:
        settings = fast_settings(upstream, data_dir=str(tmp_path), client_rate_limit=1.0, client_rate_burst=6)
        async with running_service(settings) as (base, app), httpx.AsyncClient(base_url=base) as client:
            await wait_for(lambda: _ready(client), timeout=20, message="ready")
            async with ws_connect(base.replace("http", "ws") + "/ws") as ws:
                replies = []
                for i in range(8):
                    await ws.send(orjson.dumps({"op": "subscribe", "id": f"s{i}", "view": {"limit": i + 1}}).decode())
                    while True:
                        message = orjson.loads(await ws.recv())
                        if message["type"] in ("snapshot", "error"):
                            replies.append(message)
                            break
                # The handshake took one token of six: five subscriptions, then refusals naming their id.
                assert [m["type"] for m in replies[:5]] == ["snapshot"] * 5
                errors = [(i, m) for i, m in enumerate(replies) if m["type"] == "error"]
                assert errors and all(e["code"] == "rate_limited" and e["retry_after"] >= 1 for _, e in errors)
                assert all(e["id"] == f"s{i}" for i, e in errors)
                assert len(app.state.service.hub.channels) == 8 - len(errors)
                await ws.send('{"op": "ping"}')
                while orjson.loads(await ws.recv())["type"] != "pong":
                    pass


@pytest.mark.anyio
async def test_distinct_queries_leave_the_caches_within_their_budget(tmp_path):
    market = Market(seed=33, n_tokens=150)
    async with serve_market(market, tick_interval=None) as upstream:
        settings = fast_settings(upstream, data_dir=str(tmp_path), query_cache_mb=1.0, client_rate_limit=0.0)
        async with running_service(settings) as (base, app), httpx.AsyncClient(base_url=base) as client:
            await wait_for(lambda: _ready(client), timeout=20, message="ready")
            svc = app.state.service
            for minimum in range(600):
                response = await client.get(f"/api/tokens?limit=100&min_liquidity_usd={minimum}&sort=fdv")
                assert response.status_code == 200
                assert svc.views.bytes <= svc.views.max_bytes == 1 << 20
                assert svc.hot.bytes <= svc.hot.max_bytes == 1 << 18
            assert svc.views.evicted > 0
            # A repeated query is still answered from the hot pages while they have room.
            assert svc.hot.pages


async def _ready(client: httpx.AsyncClient) -> bool:
    try:
        return (await client.get("/ready")).status_code == 200
    except httpx.HTTPError:
        return False
