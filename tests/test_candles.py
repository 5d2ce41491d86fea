"""7d figures from daily candles (app.ingest.candles): a guaranteed share of GeckoTerminal's budget, live
views first, each token's candles asked by mint in its main pool among those GeckoTerminal knows."""

from __future__ import annotations

import bisect
import time
from datetime import datetime

import anyio
import httpx
import pytest

from app.config import load_settings
from app.demo.market import Market
from app.demo.server import serve_market
from app.ingest.allowance import split
from app.ingest.candles import CANDLE_EVERY_S
from app.ingest.scheduler import Ingest
from app.model import WSOL_MINT, PoolObservation, WindowStats
from app.sources import geckoterminal
from app.store.memory import MemoryStore
from tests.support import fast_settings, running_service, wait_for

pytestmark = pytest.mark.anyio

T0 = 1_790_000_000.0
DAY_S = 86400.0
JUNK = "JunkQuoteMintXXXXXXXXXXXXXXXXXXXXXXXXXXXX"


def test_the_default_budgets_keep_three_calls_a_minute_for_candles_that_discovery_cannot_take():
    ingest = Ingest(load_settings({}, dotenv=None), MemoryStore(), {})
    assert ingest.seven_day.allowance is None and "geckoterminal" not in ingest.shares  # no client, no candles
    # GeckoTerminal at its default 10/min: 3 for candles, its 3 discovery requests a minute, 4 for refresh.
    shares = split(10, 3.0, candles=True)
    assert (shares.candles, shares.discovery, shares.refresh) == (3.0, 3.0, 4.0)
    # A very short DISCOVERY_INTERVAL_S cannot starve candles (nor refresh).
    greedy = split(10, 60.0, candles=True)
    assert greedy.candles == 3.0 and greedy.refresh >= 1.0 and greedy.discovery <= 6.0
    # Big budgets: candles keep a useful share, not a third of everything.
    assert split(1200, 240.0, candles=True).candles == 30.0


def test_candles_go_to_watched_tokens_first_then_the_most_active_each_at_most_hourly():
    mints = [c * 43 + "9" for c in "CDEFG"]
    watched = [mints[4], "H" * 44, mints[3]]  # a watched token the ingest doesn't track is skipped
    ingest = Ingest(load_settings({}, dotenv=None), MemoryStore(), {}, clock=lambda: T0, watched=lambda: watched)
    for rank, mint in enumerate(mints):
        pools = [PoolObservation("geckoterminal", f"{mint[:40]}PZ{n + 1}9", mint, T0, liquidity_usd=liquidity,
                                 quote_address=quote, stats={"24h": WindowStats(volume_usd=1e6 / (rank + 1))})
                 for n, (liquidity, quote) in enumerate(((10.0, WSOL_MINT), (99.0, WSOL_MINT), (500.0, JUNK)))]
        # GeckoTerminal knows every pool but the SOL-quoted deepest one of the first token (seen on DexScreener).
        ingest.take_pools("geckoterminal", [p for p in pools if not (rank == 3 and p.pool_address.endswith("PZ29"))],
                          T0)
        if rank == 3:
            ingest.take_pools("dexscreener", [pools[1]], T0)
    days = ingest.seven_day
    assert days.next_token(T0) == mints[4]  # the most watched first
    assert days.pool_of(mints[4]).endswith("PZ29")  # §2: the deepest SOL-quoted pool, never the junk-quoted
    assert days.pool_of(mints[3]).endswith("PZ19")  # ... among the pools GeckoTerminal knows
    days.next_at[mints[4]] = T0 + CANDLE_EVERY_S
    assert days.next_token(T0) == mints[3]
    days.next_at[mints[3]] = T0 + CANDLE_EVERY_S
    assert days.next_token(T0) == mints[0]  # then by 24h volume
    for mint in mints:
        days.next_at[mint] = T0 + CANDLE_EVERY_S
    assert days.next_token(T0 + 60) is None
    assert days.next_token(T0 + CANDLE_EVERY_S) == mints[4]
    request = geckoterminal.ohlcv_request(days.pool_of(mints[0]), mints[0])
    assert request[1]["token"] == mints[0] and request[1]["include_empty_intervals"] == "true"


# ---------------------------------------------------------------------------------------------------
# Integration: the real service against the demo market


async def records_of(client, base, **params) -> list[dict]:
    out, cursor = [], None
    while True:
        query = {"limit": "100", **params} | ({"cursor": cursor} if cursor else {})
        body = (await client.get(f"{base}/api/tokens", params=query)).json()
        out.extend(body["data"])
        cursor = body["next_cursor"]
        if cursor is None:
            return out


def week_old(record: dict, now: float, days: float = 8.0) -> bool:
    """Whether the token's main pool is over `days` old (so a week of daily candles exists)."""
    created = record["created_at"]
    return created is not None and datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp() \
        < now - days * DAY_S


async def test_candles_give_7d_figures_to_the_most_active_tokens_within_their_share(tmp_path):
    market = Market(seed=5, n_tokens=150)
    async with serve_market(market, tick_interval=None) as upstream:
        settings = fast_settings(upstream, data_dir=str(tmp_path)).with_(
            rate_limits={"dexscreener": 3000, "geckoterminal": 1200, "jupiter": 1200})
        started = time.monotonic()
        async with running_service(settings) as (base, app), httpx.AsyncClient() as client:
            ingest = app.state.service.ingest

            async def top_three_covered():
                records = await records_of(client, base)
                top = [r for r in records if week_old(r, time.time())][:3]  # default view: 24h volume desc
                covered = len(top) == 3 and all(r["stats"]["7d"]["volume_usd"] is not None for r in top)
                return top if covered else None

            top = await wait_for(top_three_covered, timeout=30, interval=0.2, message="7d of the top three")
            # One token checked against the candle math, on the same candles.
            address = top[0]["token_address"]
            fetched_at, figures = ingest.seven_day.candles[address]
            path, params = geckoterminal.ohlcv_request(ingest.seven_day.pool_of(address), address)
            payload = (await client.get(upstream.geckoterminal_url + path, params=params)).json()
            expected = geckoterminal.seven_day(geckoterminal.parse_ohlcv(payload), fetched_at)
            record = (await client.get(f"{base}/api/tokens/{address}")).json()
            # (rounded at merge: percent to 2 decimals, USD to cents, SOL to 10 significant digits)
            assert record["stats"]["7d"]["price_change"] == pytest.approx(expected.price_change, abs=0.005)
            assert record["stats"]["7d"]["volume_usd"] == pytest.approx(expected.volume_usd, rel=1e-3)
            assert record["stats"]["7d"]["volume_sol"] == pytest.approx(
                record["stats"]["7d"]["volume_usd"] / ingest.sol_usd, rel=1e-9)
            assert record["stats"]["7d"]["volume_usd"] == pytest.approx(figures["volume_usd"], abs=0.005)
            # Young tokens: no week of candles, no history: null, never made up.
            young = [r for r in await records_of(client, base)
                     if r["created_at"] and not week_old(r, time.time(), days=5)]
            assert young and all(r["stats"]["7d"]["volume_usd"] is None for r in young)
        elapsed = time.monotonic() - started
        rounds = ingest._discovery_round
    requests = market.requests["geckoterminal"]
    ohlcv = [path for _, path, _ in requests if "/ohlcv/" in path]
    discovery = [t for t, path, _ in requests if "trending_pools" in path or "new_pools" in path]
    assert 3 <= len(ohlcv) <= ingest.shares["geckoterminal"].candles * elapsed / 60 + 2  # only from the candles' share
    assert all("include_empty_intervals=true" in path and "token=base" not in path for path in ohlcv)
    shares = ingest.shares["geckoterminal"]
    assert len(discovery) >= min(3 * (rounds - 1), shares.discovery * elapsed / 60 - 3)  # never starved
    times = sorted(t for t, _, _ in requests)
    limit = settings.rate_limits["geckoterminal"]
    assert all(bisect.bisect_left(times, t + 60) - i <= limit for i, t in enumerate(times))  # any 60 s window


async def test_a_live_7d_view_gets_its_figures_within_two_minutes_at_geckoterminal_10_a_minute(tmp_path):
    """Scaled: GeckoTerminal at 60/min (six times the default 10/min), so two minutes become 20 s.

    The view shows the oldest tokens (each has a week of candles) with their 7d figures; they are not the
    most active ones, which candles would serve first if nobody watched. Each row that needs candles gets
    its figures within the bound of first showing in the live view."""
    market = Market(seed=8, n_tokens=120)
    bound = 120 / (60 / 10)
    view = {"sort": "created", "order": "asc", "window": "7d", "limit": "4"}
    async with serve_market(market, tick_interval=None) as upstream:
        settings = fast_settings(upstream, data_dir=str(tmp_path)).with_(
            rate_limits={"dexscreener": 3000, "geckoterminal": 60, "jupiter": 1200},
            refresh_interval_s=0.5, discovery_interval_s=2.0)
        async with running_service(settings) as (base, app), httpx.AsyncClient(timeout=30) as client:
            shown: dict[str, float] = {}  # address -> first seen in the view without 7d figures
            covered: dict[str, float] = {}  # address -> seconds from first shown to figures

            async def watch() -> None:
                async with client.stream("GET", f"{base}/api/stream", params=view, timeout=None) as response:
                    async for _ in response.aiter_lines():
                        pass

            async def settled():
                rows = (await client.get(f"{base}/api/tokens", params=view)).json()["data"]
                now = time.monotonic()
                for r in rows:
                    if r["stats"]["7d"]["volume_usd"] is None:
                        shown.setdefault(r["token_address"], now)
                    elif r["token_address"] in shown:
                        covered.setdefault(r["token_address"], now - shown[r["token_address"]])
                due = [r for r in rows if week_old(r, time.time()) and gt_knows(market, r)]
                return len(rows) == 4 and len(due) >= 3 and all(r["token_address"] in covered for r in due)

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(watch)
                await wait_for(settled, timeout=45, interval=0.25, message="7d figures for the live view's rows")
                tasks.cancel_scope.cancel()
            ingest = app.state.service.ingest
            active = sorted(ingest.tokens.values(), key=lambda s: -s.activity())[:8]
    assert covered and max(covered.values()) <= bound, covered
    assert not set(covered) & {s.address for s in active}  # not what candles would fetch first unwatched


def gt_knows(market: Market, record: dict) -> bool:
    pool = market.pools.get(record["pair_address"] or "")
    return pool is not None and market.gt_visible(pool)
