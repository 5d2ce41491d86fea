"""The hub's bounds, in memory and then over loopback: distinct views per process and per client (a clear
error past them, nothing lost), the fan-out cut into slices that leave the event loop free, alerts on the
same fast path as deltas."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import anyio
import httpx
import orjson
import pytest
from websockets.asyncio.client import connect as ws_connect

from app import query
from app.api.metrics import Metrics
from app.demo.market import Market
from app.demo.server import serve_market
from app.streams import fanout
from app.streams.direct import sse_chunk, ws_wire
from app.streams.frames import SSE, WS
from app.streams.hub import Hub, ViewLimitError
from tests.stores import WritableStore, memory_store
from tests.support import fast_settings, running_service, wait_for
from tests.test_diff import ADDRESSES, Client, expected, parse, record

pytestmark = pytest.mark.timeout(90)


def make_hub(**limits: Any) -> tuple[Hub, WritableStore]:
    store = memory_store(epoch="e", hold_s=1e9)
    hub = Hub(store, Metrics(), 1000, heartbeat_s=15, **limits)
    store.apply({a: record(a, liquidity_usd=i + 1) for i, a in enumerate(ADDRESSES)})
    return hub, store


def view(limit: int) -> query.View:
    return query.parse_view({"sort": "liquidity", "limit": str(limit)})


# ---------------------------------------------------------------------------------------- view limits


def test_past_the_process_cap_a_new_view_is_refused_and_the_subscription_it_would_replace_kept():
    hub, _ = make_hub(max_views=3)
    a, b = hub.connect(WS, "10.0.0.1"), hub.connect(WS, "10.0.0.2")
    for i in range(3):
        hub.subscribe(a, f"s{i}", view=view(i + 1))
    with pytest.raises(ViewLimitError) as caught:
        hub.subscribe(b, "x", view=view(10))
    assert (caught.value.status, caught.value.code) == (503, "too_many_views") and caught.value.retry_after
    hub.subscribe(b, "x", view=view(1))  # a view already open is always shared
    with pytest.raises(ViewLimitError):  # replacing b's "x" (a shared channel) frees nothing
        hub.subscribe(b, "x", view=view(10))
    assert b.subs["x"].channel.view == view(1)  # kept as it was
    hub.subscribe(a, "s2", view=view(10))  # a's "s2" was alone in its channel: replacing it frees the slot
    assert len(hub.channels) == 3
    hub.disconnect(a)
    assert list(hub.channels) == [f"v:{view(1).key}"]


def test_past_the_per_client_cap_that_client_is_refused_and_others_are_not():
    hub, _ = make_hub(max_views_per_client=2)
    one, two, other = hub.connect(SSE, "10.0.0.1"), hub.connect(WS, "10.0.0.1"), hub.connect(WS, "10.0.0.9")
    hub.subscribe(one, None, view=view(1))
    hub.subscribe(two, "a", view=view(2))
    hub.subscribe(two, "b", view=view(2))  # the same view again: not a new one
    with pytest.raises(ViewLimitError) as caught:
        hub.subscribe(two, "c", view=view(3))
    assert (caught.value.status, caught.value.code) == (429, "too_many_views")
    hub.subscribe(other, "c", view=view(3))  # another client is not affected
    hub.unsubscribe(two, "a")
    with pytest.raises(ViewLimitError):
        hub.subscribe(two, "c", view=view(3))  # "b" still holds view(2)
    hub.unsubscribe(two, "b")
    hub.subscribe(two, "c", view=view(3))  # now the client holds two views again
    hub.disconnect(one)
    hub.disconnect(two)
    assert hub._client_views == {"10.0.0.9": {f"v:{view(3).key}": 1}}


# ------------------------------------------------------------------------------------------- fan-out


def test_a_fan_out_over_many_views_is_cut_into_slices_and_a_new_version_mid_pass_restarts_it(monkeypatch):
    monkeypatch.setattr(fanout, "SLICE_S", 0.0005)
    hub, store = make_hub(max_views=5000, max_views_per_client=5000)
    clients: list[tuple[Any, Client]] = []
    views = [query.parse_view({"sort": sort, "min_liquidity_usd": str(m), "limit": str(3 + m % 5)})
             for sort in query.SORTS for m in range(25)]
    for v in views:
        connection = hub.connect(SSE)
        hub.subscribe(connection, None, view=v)
        client = Client(store, v)
        for event in parse(connection, connection.take()):
            client.on(event)
        clients.append((connection, client))

    async def run() -> tuple[float, int]:
        started = time.perf_counter()
        store.apply({ADDRESSES[0]: record(ADDRESSES[0], liquidity_usd=500.0)})
        first_slice = time.perf_counter() - started
        left = len(hub.fanout_pass.todo)
        store.apply({ADDRESSES[1]: record(ADDRESSES[1], liquidity_usd=900.0)})  # mid-pass
        turns = 0
        while hub.fanout_pass.todo:  # other work runs between slices: count the loop turns it had
            turns += 1
            await asyncio.sleep(0)  # noqa: ASYNC110 - polling the pass itself, turn by turn
        return first_slice, left, turns

    first_slice, left, turns = asyncio.run(run())
    assert left > 0 and first_slice < 0.05 and turns > 1  # publish returned long before the pass was done
    latest = store.latest()
    assert all(channel.version is latest for channel in hub.channels.values())
    for connection, client in clients:
        for event in parse(connection, connection.take()):
            client.on(event)  # every delta applies to what the client holds
        assert client.rows == expected(latest, client.view)


def test_an_alert_rides_with_its_delta_in_one_write_to_every_idle_subscriber():
    hub, store = make_hub()
    loop = asyncio.new_event_loop()

    class Writer:
        """What app.streams.direct's writers put on the socket: SSE frames in one chunk, WebSocket frames."""

        key = None

        def __init__(self, kind: str) -> None:
            self.kind = kind
            self.writes: list[bytes] = []

        def wire(self, frames: list) -> bytes:
            if self.kind == "sse":
                return sse_chunk(b"".join(frames))
            return b"".join(ws_wire(text) for text in frames)

        def write(self, data: bytes) -> bool:
            self.writes.append(data)
            return True

    connections = [hub.connect(framing) for framing in (SSE, SSE, WS, WS)]
    for connection in connections:
        hub.subscribe(connection, None if connection.kind == "sse" else "w", view=view(3))
        connection.take()
        connection.direct_writer = Writer(connection.kind)
        connection._waiter = loop.create_future()  # parked: its writer waits for frames
    moving = record(ADDRESSES[-1], liquidity_usd=99.0)
    store.apply({ADDRESSES[-1]: moving})
    moving = dict(moving, stats={**moving["stats"], "5m": {**moving["stats"]["5m"], "price_change": 12.0}})
    store.apply({ADDRESSES[-1]: moving})
    writes = [c.direct_writer.writes for c in connections]  # type: ignore[union-attr]
    assert all(len(w) == 2 for w in writes)  # one write per version, the second with its alert
    assert writes[0][1] is writes[1][1] and writes[2][1] is writes[3][1]  # the same bytes for all of a kind
    sse = writes[0][1].decode()
    assert sse.count("event: delta") == 1 and sse.count("event: alert") == 1
    assert sse.index("event: delta") < sse.index("event: alert")
    assert f"id: e:{store.latest().seq}\nevent: alert" in sse
    ws = writes[2][1]
    assert ws.count(b'"type":"alert"') == 1 and b'"alert_type":"price_move"' in ws
    assert hub.written_directly == {"sse": 4, "ws": 4} and all(not c.queue for c in connections)
    loop.close()


# ---------------------------------------------------------------------------------- over real HTTP


@pytest.mark.anyio
async def test_one_client_opening_hundreds_of_views_is_refused_past_its_cap_while_health_stays_fast(tmp_path):
    market = Market(seed=44, n_tokens=150)
    async with serve_market(market, tick_interval=0.25) as upstream:
        settings = fast_settings(upstream, data_dir=str(tmp_path), client_rate_limit=0.0, max_views_per_client=100)
        async with running_service(settings) as (base, app), httpx.AsyncClient(base_url=base) as client:
            await wait_for(lambda: _ready(client), timeout=20, message="ready")
            latencies: list[float] = []
            outcome: dict[str, int] = {}

            async def health_poll() -> None:
                while True:
                    started = time.perf_counter()
                    assert (await client.get("/health")).status_code == 200
                    latencies.append(time.perf_counter() - started)
                    await anyio.sleep(0.02)

            async def one_connection(n: int) -> None:
                async with ws_connect(base.replace("http", "ws") + "/ws", max_size=None) as ws:
                    for i in range(20):
                        params = {"sort": "liquidity", "min_liquidity_usd": n * 20 + i, "limit": 50}
                        await ws.send(orjson.dumps({"op": "subscribe", "id": f"s{i}", "view": params}).decode())
                    answered = 0
                    while answered < 20:
                        message = orjson.loads(await ws.recv())
                        if message["type"] in ("snapshot", "error"):
                            answered += 1
                            key = message["type"] if message["type"] == "snapshot" else message["code"]
                            outcome[key] = outcome.get(key, 0) + 1
                    await ws.send('{"op": "ping"}')
                    while orjson.loads(await ws.recv())["type"] != "pong":
                        pass

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(health_poll)
                async with anyio.create_task_group() as clients:
                    for n in range(20):
                        clients.start_soon(one_connection, n)
                tasks.cancel_scope.cancel()
            assert outcome == {"snapshot": 100, "too_many_views": 300}
            latencies.sort()
            assert latencies and latencies[-1] < 0.5, latencies[-5:]
            await wait_for(lambda: not app.state.service.hub.channels, timeout=5, message="views closed")


async def _ready(client: httpx.AsyncClient) -> bool:
    try:
        return (await client.get("/ready")).status_code == 200
    except httpx.HTTPError:
        return False
