"""The service against the simulated market over real loopback HTTP: convergence, budgets, faults."""

from __future__ import annotations

import logging
import re

import httpx
import pytest

from app.config import Settings
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


async def test_at_a_first_start_the_first_version_already_has_its_sol_figures():
    """No saved rate, the default budgets and intervals: keyless Jupiter's paced calls go to discovery in the
    first cycle and DexScreener's first wSOL scan may show no stablecoin pool, yet the first version the
    service serves has SOL/USD and every `*_sol` figure (null only where the USD figure is)."""
    market = Market(seed=5, n_tokens=150)
    async with serve_market(market, tick_interval=None) as upstream:
        settings = fast_settings(upstream, rate_limits=Settings().rate_limits, refresh_interval_s=10.0,
                                 discovery_interval_s=60.0, cache_ttl_s=30.0)
        async with running_service(settings) as (_, app):
            store = app.state.service.store
            first = await wait_for(lambda: store.get(1), timeout=40, message="the first version")
            assert first.sol_usd == pytest.approx(market.sol_usd, rel=0.01)
            priced = [r for r in first.records.values() if r["price_usd"] is not None]
            assert len(priced) > 50
            for record in priced:
                assert record["price_sol"] * first.sol_usd == pytest.approx(record["price_usd"], rel=1e-9)


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
    """Every call fails: retries and the circuit's probes (one every cycle) ask for far more than the budget,
    which still holds in any sliding 60 s, DexScreener's two rate-limit groups each on its own."""
    market = Market(seed=11, n_tokens=120)
    limits = {"dexscreener": 12, "geckoterminal": 4, "jupiter": 1200}
    async with serve_market(market, tick_interval=None) as upstream:
        settings = fast_settings(upstream).with_(rate_limits=dict(limits), refresh_interval_s=0.1,
                                                 discovery_interval_s=0.3, sources=("dexscreener", "geckoterminal"))
        for source in ("dexscreener", "geckoterminal"):
            market.faults.set(source, "500")
        async with running_service(settings) as (base, app):
            ingest = app.state.service.ingest
            await wait_for(lambda: len(pairs_group(market)) >= 12, timeout=30, message="the budget spent")
            spent_at = ingest.cycles
            await wait_for(lambda: ingest.cycles >= spent_at + 20, timeout=20, message="20 more cycles")
        feeds = [t for t, path, _ in market.requests["dexscreener"] if path.startswith(FEEDS)]
        for name, times, limit in (("dexscreener pairs", pairs_group(market), 12),
                                   ("dexscreener feeds", feeds, 12 * 60 // 300)):
            assert len(times) == limit, f"{name}: {len(times)} requests, budget {limit}"
            assert max(times) - min(times) < 60  # all inside one window: exactly the budget, never more
        assert 0 < len(market.requests["geckoterminal"]) <= 4


FEEDS = ("/token-profiles/", "/token-boosts/")


def pairs_group(market: Market) -> list[float]:
    return [t for t, path, _ in market.requests["dexscreener"] if not path.startswith(FEEDS)]


async def test_keyless_jupiter_is_paced_never_a_burst_and_dexscreener_feeds_keep_to_60_a_minute():
    """The market answers 429 to a 6th quick Jupiter call and to a 61st feed call in 60 s; the service gets
    neither: Jupiter one call per 60/limit seconds, the feeds skipped (not waited for) once 60 went out."""
    market = Market(seed=17, n_tokens=100)
    async with serve_market(market, tick_interval=None) as upstream:
        settings = fast_settings(upstream).with_(rate_limits={"dexscreener": 3000, "geckoterminal": 600,
                                                              "jupiter": 120}, discovery_interval_s=0.25)
        market.rate_limits["jupiter"] = 120  # the market enforces Jupiter's burst limit at this rate
        async with running_service(settings) as (base, app):
            await wait_for(lambda: len([1 for _, p, _ in market.requests["dexscreener"] if p.startswith(FEEDS)]) >= 60,
                           timeout=30, message="60 feed calls")
            ingest = app.state.service.ingest
            cycles = ingest.cycles
            await wait_for(lambda: ingest.cycles >= cycles + 8, timeout=20, message="8 more cycles")
    jupiter = sorted(t for t, _, _ in market.requests["jupiter"])
    feeds = [t for t, path, _ in market.requests["dexscreener"] if path.startswith(FEEDS)]
    assert [s for source in market.requests.values() for _, _, s in source if s == 429] == []
    assert len(feeds) == 60 and max(feeds) - min(feeds) < 60
    gaps = [b - a for a, b in zip(jupiter, jupiter[1:])]
    assert len(jupiter) > 10 and min(gaps) >= 60 / 120 * 0.8  # evenly spaced, never back to back


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
            # (by the 24h volume the aggregators show: a pool neither shows is no activity the service can see)
            shown = lambda t: sum(p.vols[5] for p in t.pools if market.ds_visible(p) or market.gt_visible(p))  # noqa: E731
            busiest = sorted((t for t in market.tokens if t.mint in wanted), key=shown, reverse=True)[:10]
            assert {t.mint for t in busiest} <= kept


async def test_info_log_is_one_line_per_cycle_with_the_calls_actually_made_and_no_upstream_urls(caplog):
    market = Market(seed=19, n_tokens=80)
    async with serve_market(market, tick_interval=None) as upstream:
        settings = fast_settings(upstream)
        with caplog.at_level(logging.DEBUG, logger="app"):
            async with running_service(settings) as (base, app):
                ingest = app.state.service.ingest
                await wait_for(lambda: ingest.cycles >= 12, timeout=30, message="12 cycles")
                for source in SOURCES:
                    market.faults.set(source, "500", times=1)  # a failure: a warning, still no address list
                cycles = ingest.cycles
                # right after a cycle ended (the next one starts at least 50 ms later): what the lines say
                # so far is everything that went out
                await wait_for(lambda: ingest.cycles >= cycles + 4, timeout=30, interval=0.002,
                               message="4 more cycles")
                sent = {source: len(market.requests[source]) for source in SOURCES}
                records, done = list(caplog.records), ingest.cycles
    # (the "app" logger's one start-up line says what the process serves; every other info line counts)
    info = [r for r in records if r.levelno == logging.INFO and r.name.startswith(("app.", "httpx"))]
    lines = [r.getMessage() for r in info if r.name == "app.ingest" and r.getMessage().startswith("cycle ")]
    assert len(lines) == done and len(lines) == len(info)  # one line per cycle, nothing else
    for record in records:
        if record.levelno >= logging.INFO:
            message = record.getMessage()
            assert upstream.base_url not in message and not ADDRESS_LIST.search(message), message
            assert record.levelno > logging.INFO or not ADDRESS.search(message), message
    # the calls each line reports are the requests the upstreams received
    for source in SOURCES:
        reported = sum(int(m.group(1)) for line in lines for m in re.finditer(rf"{source} (\d+) calls", line))
        assert reported == sent[source], source
    debug = [r.getMessage() for r in records if r.levelno == logging.DEBUG and "GET /" in r.getMessage()]
    assert debug and any(ADDRESS_LIST.search(m) for m in debug)  # the URLs are there at debug


ADDRESS = re.compile(r"[1-9A-HJ-NP-Za-km-z]{32,44}")
ADDRESS_LIST = re.compile(r"[1-9A-HJ-NP-Za-km-z]{32,44},[1-9A-HJ-NP-Za-km-z]{32,44}")


def test_dexscreener_batches_fit_under_the_answer_cap_as_last_known():
    """pack(): batches whose known pair counts sum to at most 29 (30 would be 'possibly cut'), at most 30
    mints each; a mint heavier than that goes alone (to /token-pairs/v1)."""
    from app.ingest.refresh_dexscreener import pack

    weights = [("a", 10), ("b", 10), ("c", 9), ("d", 1), ("e", 40), ("f", 2)]
    assert pack(weights, 29, 30) == [["a", "b", "c"], ["d"], ["e"], ["f"]]
    assert pack([(str(i), 0) for i in range(45)], 29, 30) == [[str(i) for i in range(30)],
                                                              [str(i) for i in range(30, 45)]]
    assert pack([], 29, 30) == []


async def test_tokens_with_many_pools_keep_every_pool_under_dexscreeners_30_pair_cap():
    """Six tokens with 14 pools each that only DexScreener shows: any /tokens/v1 batch holding two of them
    is cut at 30 pairs. Every pool still makes it into the record, and stays in it cycle after cycle."""
    from app.demo import shapes
    from app.demo.model import DEX_RAYDIUM

    market = Market(seed=23, n_tokens=60)
    heavy = [t for t in market.tokens if not t.on_curve and t.jup_known][:6]
    for t in heavy:
        for _ in range(14 - len(t.pools)):
            pool = market._add_pool(t, market.sol, DEX_RAYDIUM, t.created_at + 60, 5_000.0, 0.0)
            pool.vols = [100.0 * (i + 1) for i in range(6)]
            pool.q_null_price = pool.q_null_fields = pool.q_drop = pool.q_no_liquidity = None
            market._capture_gt(pool)
        for p in t.pools:
            p.gt_hidden, p.ds_hidden = True, False
    market.invalidate()

    def truth(t) -> float:
        return sum(shapes.ds_pair(market, p).get("liquidity", {}).get("usd") or 0.0
                   for p in t.pools if market.ds_visible(p))

    first_seen: dict[str, int] = {}  # heavy token -> cycle it was first served
    whole_at: dict[str, int] = {}  # -> cycle it was first served with every pool
    async with serve_market(market, tick_interval=None) as upstream:
        async with running_service(fast_settings(upstream)) as (base, app), httpx.AsyncClient() as client:
            ingest = app.state.service.ingest
            while len(whole_at) < len(heavy) or ingest.cycles < max(whole_at.values()) + 40:
                cycle = ingest.cycles
                await wait_for(lambda c=cycle: ingest.cycles > c, timeout=10, interval=0.01, message="a cycle")
                records = {r["token_address"]: r for r in await all_records(client, base)}
                for t in heavy:
                    if t.mint not in records:
                        continue
                    first_seen.setdefault(t.mint, cycle)
                    whole = records[t.mint]["liquidity_usd"] == pytest.approx(truth(t))
                    if t.mint in whole_at:  # pools by address, rescans, re-asks: once whole, always whole
                        assert whole, f"{t.symbol} lost pools at cycle {cycle}"
                    elif whole:
                        whole_at[t.mint] = cycle
                assert cycle < 200, f"only {len(whole_at)} of {len(heavy)} heavy tokens whole"
    # a cut answer is asked again at once (in halves), not at the next rescan (30 cycles later)
    assert all(whole_at[m] - first_seen[m] <= 10 for m in whole_at), (first_seen, whole_at)
    cut = [path for _, path, _ in market.requests["dexscreener"] if path.startswith("/tokens/v1/") and len(
        {p for mint in path.rsplit("/", 1)[1].split(",") for p in shapes.ds_token_pairs(market, mint)}) >= 30]
    assert cut  # the cap really cut answers
    assert any(path.startswith("/latest/dex/pairs/") for _, path, _ in market.requests["dexscreener"])
