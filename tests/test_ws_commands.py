"""Every WebSocket command, however malformed (nulls, wrong types, anywhere), is answered and leaves the
connection open (CONTRACT §6): fuzzed with hypothesis against the real command handler and hub, then a
sample of the same over a real WebSocket."""

from __future__ import annotations

import json
import random
from typing import Any

import anyio
import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect as ws_connect

from app.api.limits import ClientLimiter
from app.api.metrics import Metrics
from app.demo.market import Market
from app.demo.server import serve_market
from app.query import VIEW_PARAMS
from app.streams.frames import WS
from app.streams.hub import Hub
from app.streams.ws import CommandError, _handle, handle
from tests.stores import memory_store
from tests.support import fast_settings, running_service, wait_for

MINT = "So11111111111111111111111111111111111111112"

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=80),
    st.sampled_from(["subscribe", "unsubscribe", "ping", "volume", "24h", "desc", "1e308", "１２", "", " ", MINT]),
)
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=12), inner, max_size=5)), max_leaves=20)
view_objects = st.dictionaries(st.sampled_from(sorted(VIEW_PARAMS) + ["colour", ""]), json_values, max_size=6)
commands = st.one_of(
    json_values,  # anything at all
    st.fixed_dictionaries({"op": st.one_of(st.sampled_from(["subscribe", "unsubscribe", "ping"]), json_values)},
                          optional={"id": st.one_of(st.text(max_size=70), json_values), "view": st.one_of(
                              view_objects, json_values), "tokens": st.one_of(st.lists(st.one_of(
                                  st.just(MINT), json_values), max_size=4), json_values),
                              "since": json_values, "extra": json_values}),
)


def make_hub() -> Hub:
    store = memory_store(epoch="e")
    store.apply({MINT: {"token_address": MINT, "liquidity_usd": 1.0, "stats": {}}})
    return Hub(store, Metrics(), 10, heartbeat_s=15, max_views=50, max_views_per_client=30)


def answer(hub: Hub, connection: Any, raw: str) -> dict[str, Any] | None:
    """What the client is told directly: a pong, an error, or None (a snapshot follows on the queue).
    Calls the handler under its catch-all: every shape must be handled on purpose, not by accident."""
    try:
        reply = _handle(hub, connection, raw, ClientLimiter(0, 1))
    except CommandError as exc:
        reply = exc.frame()
    return None if reply is None else orjson.loads(reply)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(commands, min_size=1, max_size=8))
def test_any_command_gets_an_answer_and_the_connection_stays_open(batch):
    hub = make_hub()
    connection = hub.connect(WS)
    for command in batch:
        raw = command if isinstance(command, str) and command.startswith(("{", "[")) else json.dumps(command)
        reply = answer(hub, connection, raw)
        if reply is not None:
            assert reply["type"] in ("pong", "error"), reply
            if reply["type"] == "error":
                assert isinstance(reply["code"], str) and reply["message"], reply
                assert reply["id"] is None or isinstance(reply["id"], (str, int)), reply
        assert connection.closed is None
        assert connection.take() is not None  # what was queued renders (snapshots of the new views)


def test_an_unforeseen_failure_is_an_error_message_too(monkeypatch, caplog):
    hub = make_hub()
    connection = hub.connect(WS)

    def broken(*args: Any, **kwargs: Any) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr(hub, "subscribe", broken)
    with pytest.raises(CommandError) as caught:
        handle(hub, connection, '{"op": "subscribe", "id": "a", "view": {}}')
    assert caught.value.code == "invalid_command" and connection.closed is None
    assert "failed unexpectedly" in caplog.text  # logged as the bug it is


@pytest.mark.parametrize("command", [
    {"op": "subscribe", "id": "w", "tokens": [None]},
    {"op": "subscribe", "id": "w", "tokens": [MINT, None]},
    {"op": "subscribe", "id": "w", "tokens": [[MINT]]},
    {"op": "subscribe", "id": "w", "tokens": [{"a": 1}]},
    {"op": "subscribe", "id": "w", "tokens": None},
    {"op": "subscribe", "id": "v", "view": None},
    {"op": "subscribe", "id": "v", "view": {"sort": None, "limit": None}},
    {"op": "subscribe", "id": "v", "view": {"limit": [None]}},
    {"op": "subscribe", "id": "v", "view": {"min_liquidity_usd": 10**30}},
    {"op": "subscribe", "id": "v", "view": {"protocol": [None]}},
    {"op": "subscribe", "id": "v", "view": {"q": {"x": 1}}},
    {"op": "subscribe", "id": None},
    {"op": None},
    {"op": ["subscribe"]},
    {"op": {"a": 1}, "id": "x"},
    {"op": "subscribe", "id": "x" * 65},
    {"op": "subscribe", "id": 2**64},
    {"op": "subscribe", "id": "v", "since": 5},
    {"op": "subscribe", "id": "v", "view": {"min_liquidity_usd": "１２"}},
    None, 0, "text", [], [None],
])
def test_known_shapes_that_broke_connections_get_an_error(command):
    hub = make_hub()
    connection = hub.connect(WS)
    reply = answer(hub, connection, json.dumps(command))
    if command.get("view") in ({"sort": None, "limit": None}, {"limit": [None]}, {"min_liquidity_usd": 10**30}) \
            if isinstance(command, dict) else False:
        assert reply is None  # null means "not given" (CONTRACT §3 defaults); a huge number is still a number
    else:
        assert reply is not None and reply["type"] == "error" and reply["code"], reply
    assert connection.closed is None


def random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(8 if depth < 3 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False, 0, -1, 2**63, 1.5e300, "", "１２", MINT, "subscribe"])
    if kind == 2:
        return rng.randint(-(10**20), 10**20)
    if kind == 3:
        return "".join(rng.choice("ab:1 é\x00{") for _ in range(rng.randrange(12)))
    if kind == 4:
        return rng.random() * 1e6
    if kind == 5:
        return [random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = ["op", "id", "view", "tokens", "since", *sorted(VIEW_PARAMS), "x"]
    return {rng.choice(keys): random_json(rng, depth + 1) for _ in range(rng.randrange(5))}


@pytest.mark.anyio
@pytest.mark.timeout(90)
async def test_over_a_real_websocket_every_bad_command_is_answered_and_the_connection_stays(tmp_path):
    rng = random.Random(9)
    sent: list[str] = []
    for _ in range(300):
        command = random_json(rng)
        if rng.random() < 0.7:
            command = {"op": rng.choice(["subscribe", "unsubscribe", "ping", None, 3]),
                       "id": rng.choice(["a", "b", None, 7, ""]),
                       rng.choice(["view", "tokens", "since"]): random_json(rng)}
        sent.append(json.dumps(command))
    market = Market(seed=43, n_tokens=30)
    async with serve_market(market, tick_interval=None) as upstream:
        settings_ = fast_settings(upstream, data_dir=str(tmp_path), client_rate_limit=0.0)
        async with running_service(settings_) as (base, app), httpx.AsyncClient() as client:
            await wait_for(lambda: _ready(client, base), timeout=20, message="ready")
            async with ws_connect(base.replace("http", "ws") + "/ws", max_size=None) as ws:
                unanswered = 0
                for raw in sent:
                    command = json.loads(raw)
                    op = command.get("op") if isinstance(command, dict) else None
                    await ws.send(raw)
                    await ws.send('{"op":"ping"}')  # every command is answered before this pong
                    answers, pongs = 0, 0
                    with anyio.fail_after(10):
                        while pongs < (2 if op == "ping" else 1):
                            message = orjson.loads(await ws.recv())
                            pongs += message["type"] == "pong"
                            answers += message["type"] in ("error", "snapshot", "delta")
                    if op not in ("ping", "unsubscribe"):  # a good unsubscribe has no answer (§6)
                        unanswered += answers == 0
                assert unanswered == 0 and ws.close_code is None
            assert not [c for c in app.state.service.hub.connections if c.closed]


async def _ready(client: httpx.AsyncClient, base: str) -> bool:
    try:
        return (await client.get(f"{base}/ready")).status_code == 200
    except httpx.HTTPError:
        return False
