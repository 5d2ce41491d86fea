"""An upstream back after a long outage: fresh data within 30 s (scaled), and only cheap probes meanwhile.

Time is scaled by the refresh interval: at the default 10 s, a 5-minute outage is 30 intervals and the
30 s bound is 3 intervals. Here the interval is 1 s: a 30 s outage, data back within 3 s.
"""

from __future__ import annotations

import time
from datetime import datetime

import anyio
import httpx
import pytest

from app.demo.market import Market
from app.demo.server import serve_market
from app.model import SOURCES
from tests.support import fast_settings, running_service, wait_for

pytestmark = pytest.mark.anyio

INTERVAL_S = 1.0
OUTAGE_S = 30 * INTERVAL_S  # 5 minutes at the default 10 s
BOUND_S = 3 * INTERVAL_S  # 30 s at the default 10 s

# What a probe may be: one small request (upstreams' SOL price, or one pool).
PROBES = {
    "dexscreener": ("/latest/dex/pairs/solana/", "/token-pairs/v1/solana/So11111111111111111111111111111111111111112"),
    "geckoterminal": ("/simple/networks/solana/token_price/So11111111111111111111111111111111111111112",),
    "jupiter": ("/price/v3?ids=So11111111111111111111111111111111111111112",),
}


def since_iso(value: str | None) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else 0.0


async def test_data_is_back_within_30_s_of_an_upstreams_return_after_a_5_minute_outage():
    market = Market(seed=21, n_tokens=60)
    async with serve_market(market, tick_interval=0.5) as upstream:
        settings = fast_settings(upstream).with_(refresh_interval_s=INTERVAL_S, discovery_interval_s=5.0)
        async with running_service(settings) as (base, app), httpx.AsyncClient() as client:

            async def health():
                return (await client.get(f"{base}/health")).json()

            async def all_ok():
                h = await health()
                return h if h["status"] == "ok" and all(s["ok"] for s in h["sources"].values()) else None

            await wait_for(all_ok, timeout=30, interval=0.2, message="every source answering")
            for source in SOURCES:
                market.faults.set(source, "500")
            down = time.monotonic()

            async def all_open():
                h = await health()
                return all(s["circuit"] == "open" or s["circuit"] == "half_open" for s in h["sources"].values())

            await wait_for(all_open, timeout=20, interval=0.1, message="every circuit open")
            opened = time.monotonic()
            await anyio.sleep(max(0.0, OUTAGE_S - (opened - down)))  # the outage itself: the scenario, not a wait
            during = {s: [(t, path) for t, path, _ in market.requests[s] if opened + INTERVAL_S <= t] for s in SOURCES}
            market.faults.clear()
            back, back_wall = time.monotonic(), time.time()

            async def fresh():
                h = await health()
                fresh = all(s["ok"] and since_iso(s["last_success"]) >= back_wall for s in h["sources"].values())
                return h if fresh and h["status"] == "ok" else None

            await wait_for(fresh, timeout=BOUND_S * 3, interval=0.05, message="fresh data from every source")
            took = time.monotonic() - back
            seq = (await client.get(f"{base}/api/tokens", params={"limit": "1"})).json()["seq"]
            await wait_for(lambda: app.state.service.store.latest().seq > seq, timeout=BOUND_S * 3,
                           message="a new version with the fresh data")
    assert took <= BOUND_S, f"data back {took:.2f}s after the upstreams returned (bound {BOUND_S}s)"
    held = (back - opened - INTERVAL_S) / INTERVAL_S  # intervals with the circuits open
    for source, requests in during.items():
        # only probes, about one per interval: a dead upstream costs a small request now and then
        assert requests and len(requests) <= held * 1.5 + 3, (source, len(requests), held)
        assert all(path.startswith(PROBES[source]) for _, path in requests), (source, requests[:3])
