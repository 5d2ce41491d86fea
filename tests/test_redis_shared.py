"""Shared state in a real Redis: one cursor secret, the leader's cycle summary, the ingest's token state."""

from __future__ import annotations

import dataclasses

import pytest

from app.ingest.merge import TokenState
from app.model import PoolObservation, TokenInfo, WindowStats
from app.redis.changelog import CommitRejected
from app.redis.connection import connect
from app.redis.lease import Lease
from app.redis.shared import SharedState
from app.redis.statecodec import StateCodec

pytestmark = pytest.mark.anyio

CODEC = StateCodec(TokenState)


def a_token() -> TokenState:
    pool = PoolObservation("dexscreener", "Pool1", "Mint1", 1700000000.5, base_symbol="AAA", price_usd=0.01,
                           liquidity_usd=1234.5, stats={"5m": WindowStats(10.0, -1.5, 3, None)})
    info = TokenInfo("jupiter", "Mint1", 1700000001.0, name="A", market_cap_usd=None,
                     stats={"24h": WindowStats(volume_usd=99.0)})
    return TokenState("Mint1", pools={"Pool1": pool}, infos={"jupiter": info}, profile_icon="https://i",
                      seven_day={"volume_usd": 5.0, "price_change": None})


async def test_every_instance_gets_the_same_cursor_secret(redis, keys, redis_url):
    other = connect(redis_url)
    try:
        first = await SharedState(redis, keys).secret()
        assert len(first) == 32
        assert await SharedState(other, keys).secret() == first
    finally:
        await other.aclose()


async def test_only_the_leader_publishes_the_cycle_summary(redis, keys):
    shared = SharedState(redis, keys)
    assert await shared.cycle() is None
    lease = Lease(redis, keys, "a", 30)
    await lease.acquire()
    await shared.publish_cycle(lease.token, b'{"leader": "a", "sol_usd": 150.5}')
    assert await shared.cycle() == b'{"leader": "a", "sol_usd": 150.5}'
    with pytest.raises(CommitRejected):
        await shared.publish_cycle(2, b'{"leader": "b"}')
    assert await shared.cycle() == b'{"leader": "a", "sol_usd": 150.5}'


async def test_the_ingest_state_round_trips_and_only_the_leader_writes_it(redis, keys):
    shared = SharedState(redis, keys)
    lease = Lease(redis, keys, "a", 30)
    await lease.acquire()
    token = a_token()
    await shared.save_ingest(lease.token, {"Mint1": CODEC.dumps(token), "Mint2": CODEC.dumps(TokenState("Mint2"))},
                             scheduler=b'{"round": 3}')
    await shared.save_ingest(lease.token, {}, removed=["Mint2"])
    with pytest.raises(CommitRejected):
        await shared.save_ingest(1, {"Mint3": b"{}"})
    tokens, scheduler = await shared.load_ingest()
    assert scheduler == b'{"round": 3}' and set(tokens) == {"Mint1"}
    assert CODEC.loads(tokens["Mint1"]) == token


def test_the_state_codec_tolerates_fields_added_or_dropped_between_versions():
    plain = CODEC.dumps(a_token()).replace(b'"profile_icon"', b'"new_field":7,"profile_icon"')
    assert CODEC.loads(plain) == a_token()
    older = CODEC.dumps(a_token()).replace(b'"profile_icon":"https://i",', b"")
    assert CODEC.loads(older) == dataclasses.replace(a_token(), profile_icon=None)


def test_the_state_codec_rebuilds_only_the_declared_classes():
    rebuilt = CODEC.loads(CODEC.dumps(a_token()))
    assert type(rebuilt.pools["Pool1"]) is PoolObservation and type(rebuilt.infos["jupiter"]) is TokenInfo
    assert type(rebuilt.pools["Pool1"].stats["5m"]) is WindowStats
    # A class name in the data picks nothing: the shape comes from TokenState's type hints alone.
    with pytest.raises(TypeError):
        CODEC.loads(b'{"address": "x", "pools": {"p": ["Popen", "sh"]}}')
    assert CODEC.loads(b'{"address": "x", "~": "Popen"}') == TokenState("x")
