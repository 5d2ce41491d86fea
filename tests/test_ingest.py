"""The service against the simulated market over real loopback HTTP: convergence, budgets, faults."""

from __future__ import annotations

import httpx
import pytest

from app.demo.market import Market
from app.demo.server import serve_market
from app.model import SOURCES
from tests.support import fast_settings, running_service, wait_for

pytestmark = pytest.mark.anyio


async def all_records(client: httpx.AsyncClient, base: str) -> list[dict]:
    """Walk the default view with cursors: every record of one version, in order."""
    records, cursor = [], None
    while True:
        params = {"limit": "100"} | ({"cursor": cursor} if cursor else {})
        body = (await client.get(f"{base}/api/tokens", params=params)).json()
        records.extend(body["data"])
        cursor = body["next_cursor"]
        if cursor is None:
            return records


async def test_converges_to_every_discoverable_token_exactly_once_with_consistent_figures():
    market = Market(seed=5, n_tokens=150)
    async with serve_market(market, tick_interval=None) as upstream:
        async with running_service(fast_settings(upstream)) as (base, app), httpx.AsyncClient() as client:
            wanted = market.discoverable()

            async def converged():
                records = await all_records(client, base)
                return records if wanted <= {r["token_address"] for r in records} else None

            records = await wait_for(converged, timeout=40, interval=0.3, message="every discoverable token")
            addresses = [r["token_address"] for r in records]
            assert len(addresses) == len(set(addresses))
            assert set(addresses) <= {t.mint for t in market.tokens}  # nothing invented, nothing foreign
            sol_usd = app.state.service.ingest.sol_usd
            assert sol_usd == pytest.approx(market.sol_usd, rel=0.05)  # read from the upstreams, not a constant
            for record in records:
                assert record["sources"] and set(record["sources"]) <= set(SOURCES)
                if record["price_usd"] is not None:
                    assert record["price_sol"] * sol_usd == pytest.approx(record["price_usd"], rel=1e-9)
                day = record["stats"]["24h"]
                if day["buys"] is not None and day["sells"] is not None:
                    assert record["transaction_count"] == day["buys"] + day["sells"]
                assert record["price_1hr_change"] == record["stats"]["1h"]["price_change"]
            volumes = [r["stats"]["24h"]["volume_usd"] for r in records]
            known = [v for v in volumes if v is not None]
            assert known == sorted(known, reverse=True)  # default view: 24h volume, descending, nulls last
            assert volumes[: len(known)] == known


@pytest.mark.parametrize("kind", ["429", "500", "html"])
async def test_fault_is_reported_in_health_last_data_kept_and_recovery_follows(kind):
    market = Market(seed=9, n_tokens=60)
    async with serve_market(market, tick_interval=None) as upstream:
        async with running_service(fast_settings(upstream)) as (base, app), httpx.AsyncClient() as client:
            await wait_for(lambda: _ready(client, base), timeout=20, message="ready")
            before = (await client.get(f"{base}/api/tokens", params={"limit": "100"})).json()
            for source in SOURCES:
                market.faults.set(source, kind, retry_after=1)

            async def all_failing():
                health = (await client.get(f"{base}/health")).json()
                sources = health["sources"]
                return health if all(s["ok"] is False and s["last_error"] for s in sources.values()) else None

            health = await wait_for(all_failing, timeout=20, message=f"{kind} reported for every source")
            for source in SOURCES:
                assert health["sources"][source]["last_error"]["message"]
            limit = 3 * app.state.service.settings.refresh_interval_s

            async def stale():
                health = (await client.get(f"{base}/health")).json()
                return health if health["age_s"] > limit else None

            degraded = await wait_for(stale, timeout=20, message="age_s past three refresh intervals")
            assert degraded["status"] == "degraded"
            during = (await client.get(f"{base}/api/tokens", params={"limit": "100"})).json()
            assert during["total"] == before["total"]  # the last good data is still served
            market.faults.clear()
            async def recovered_fully():
                health = await _health_status(client, base, "ok")
                return health if health and all(s["ok"] for s in health["sources"].values()) else None

            recovered = await wait_for(recovered_fully, timeout=30, message="every source recovered")
            assert recovered["age_s"] < 3 * app.state.service.settings.refresh_interval_s
            assert all(s["last_error"] for s in recovered["sources"].values())  # kept after later successes


async def test_no_upstream_ever_receives_more_than_its_budget_even_with_retries():
    market = Market(seed=11, n_tokens=120)
    limits = {"dexscreener": 12, "geckoterminal": 4, "jupiter": 6}
    rate_limits = ",".join(f"{k}={v}" for k, v in limits.items())
    async with serve_market(market, tick_interval=None) as upstream:
        settings = fast_settings(upstream)
        settings = settings.with_(rate_limits=dict(limits), refresh_interval_s=0.1, discovery_interval_s=0.3)
        for source in SOURCES:
            market.faults.set(source, "500", rate=0.3)  # failures provoke retries, which count too
        async with running_service(settings) as (base, app):
            ingest = app.state.service.ingest
            # Every source spends its whole budget, then keeps asking for more for many cycles.
            await wait_for(lambda: all(len(market.requests[s]) >= limits[s] for s in SOURCES), timeout=20,
                           message="every budget spent")
            spent_at = ingest.cycles
            await wait_for(lambda: ingest.cycles >= spent_at + 20, timeout=20, message="20 more cycles")
        for source, limit in limits.items():
            times = sorted(t for t, _path, _status in market.requests[source])
            assert len(times) == limit, f"{source}: {len(times)} requests within {rate_limits}"
            assert times[-1] - times[0] < 60  # all inside one window: exactly the budget, never more


async def _ready(client, base):
    return (await client.get(f"{base}/ready")).status_code == 200


async def _health_status(client, base, status):
    health = (await client.get(f"{base}/health")).json()
    return health if health["status"] == status else None


async def test_max_tokens_bounds_the_universe_and_keeps_the_most_active():
    market = Market(seed=13, n_tokens=150)
    async with serve_market(market, tick_interval=None) as upstream:
        settings = fast_settings(upstream, max_tokens=40)
        async with running_service(settings) as (base, app), httpx.AsyncClient() as client:
            ingest = app.state.service.ingest
            await wait_for(lambda: ingest.cycles >= 12, timeout=30, message="12 cycles")
            records = await all_records(client, base)
            assert 0 < len(records) <= 40
            assert len(ingest.tokens) <= 40
            # The least active go first: the market's busiest discoverable tokens (by 24h volume) stay.
            kept = {r["token_address"] for r in records}
            wanted = market.discoverable()
            busiest = sorted((t for t in market.tokens if t.mint in wanted), key=lambda t: t.volume(5),
                             reverse=True)[:10]
            assert {t.mint for t in busiest} <= kept
