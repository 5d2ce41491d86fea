"""app.sources.client over real loopback HTTP: the answer cache, Jupiter's pacing, rate-limit groups, short
paths in messages."""

from __future__ import annotations

import httpx
import pytest

from app.demo.market import WSOL_MINT, Market
from app.demo.server import serve_market
from app.sources.client import Pacer, UpstreamClient, describe

pytestmark = pytest.mark.anyio


class SteppingClock:
    """A monotonic clock that moves `step` seconds every time it is read."""

    def __init__(self, now: float = 100.0) -> None:
        self.now, self.step = now, 0.0

    def __call__(self) -> float:
        now = self.now
        self.now += self.step
        return now


@pytest.mark.parametrize("offset", [0.5, 0.7, 0.75, 0.8, 0.9, 0.95, 1.2])
async def test_a_cached_answer_expiring_while_it_is_read_is_a_miss_never_a_keyerror(offset):
    """`key in cache` then `cache[key]` read the clock twice: an entry expiring in between raised KeyError
    and lost that refresh step. Whenever the entry expires, the answer comes (from the cache or anew)."""
    async with serve_market(Market(seed=2, n_tokens=30), tick_interval=None) as market, httpx.AsyncClient() as http:
        clock = SteppingClock()
        client = UpstreamClient("jupiter", http, market.jupiter_url, 600, cache_ttl_s=1.0, clock=clock)
        params = {"ids": WSOL_MINT}
        first = await client.get_json("/price/v3", params)
        sent = len(market.market.requests["jupiter"])
        clock.now += offset
        clock.step = 0.3  # every reading of the clock is 0.3 s later than the one before
        again = await client.get_json("/price/v3", params)
        assert again.keys() == first.keys()
        fetched = len(market.market.requests["jupiter"]) - sent
        assert fetched == (0 if offset < 1.0 else 1)  # read once, at 100 + offset: fresh until 101


def test_pacing_keeps_its_spacing_and_slows_as_the_remaining_budget_falls():
    clock = SteppingClock()
    pacer = Pacer(2.0, clock)
    assert [pacer.reserve() for _ in range(3)] == [0.0, 2.0, 4.0]  # one slot every 2 s, never a burst
    pacer.give_back()
    assert pacer.reserve() == 4.0
    pacer = Pacer(2.0, clock)
    pacer.observe(httpx.Headers({"x-ratelimit-remaining": "20", "x-ratelimit-current": "10"}))
    assert [pacer.reserve() for _ in range(2)] == [0.0, 2.0]  # two thirds of the window left: full pace
    pacer = Pacer(2.0, clock)
    pacer.observe(httpx.Headers({"x-ratelimit-remaining": "6", "x-ratelimit-current": "24"}))
    assert [pacer.reserve() for _ in range(2)] == [0.0, pytest.approx(5.0)]  # a fifth left: 2.5x slower
    pacer = Pacer(2.0, clock)
    pacer.observe(httpx.Headers({"x-ratelimit-remaining": "1", "x-ratelimit-current": "29"}))
    assert [pacer.reserve() for _ in range(2)] == [0.0, pytest.approx(20.0)]  # nearly none: 10x slower


async def test_a_window_spent_elsewhere_pauses_until_its_reset():
    """Keyless Jupiter counts per IP: when x-ratelimit-remaining says 0, nothing more goes out until reset."""
    market = Market(seed=2, n_tokens=30)
    market.rate_limits["jupiter"] = 3
    async with serve_market(market, tick_interval=None) as running, httpx.AsyncClient() as http:
        client = UpstreamClient("jupiter", http, running.jupiter_url, 30, cache_ttl_s=0, spacing_s=0.01)
        for i in range(2):  # someone else spends most of the window (the same IP)
            await http.get(f"{running.jupiter_url}/tokens/v2/recent", params={"n": i})
        assert await client.get_json("/tokens/v2/recent")  # answered, with x-ratelimit-remaining: 0
        assert client.calls_affordable() == 0  # paused until x-ratelimit-reset, not hammering
        with pytest.raises(Exception, match="paused"):
            await client.get_json("/tokens/v2/recent", max_wait=0.5)
        assert len(market.requests["jupiter"]) == 3


def test_messages_and_logs_name_paths_without_their_address_lists():
    mints = ",".join(f"{c * 43}9" for c in "ABCDEFGH")
    assert describe(f"/tokens/v1/solana/{mints}") == "/tokens/v1/solana/{8 addresses}"
    assert describe(f"/networks/solana/pools/{'P' * 44}/ohlcv/day") == f"/networks/solana/pools/{'P' * 44}/ohlcv/day"
    assert describe("/token-profiles/latest/v1") == "/token-profiles/latest/v1"
