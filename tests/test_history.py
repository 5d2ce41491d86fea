"""7d figures (daily candles and the service's own history), and the last snapshot across a restart."""

from __future__ import annotations

import logging
import time

import httpx
import pytest

from app.demo.market import Market
from app.demo.server import serve_market
from app.history import DAY_S, KEEP_EVERY_S, STEP_S, THIN_AFTER_S, memory_history, open_state, origin_of
from app.model import SOURCES
from tests.stores import memory_store
from tests.support import fast_settings, running_service, wait_for

pytestmark = pytest.mark.anyio

A = "A" * 43 + "1"
B = "B" * 43 + "1"
T0 = 1_790_000_000.0  # a fake "now"


def rec(price: float | None, volume: float | None) -> dict:
    return {"price_usd": price, "stats": {"24h": {"volume_usd": volume}}}


def price_a(t: float) -> float:
    return 1.0 + (t - T0) / DAY_S * 0.1


def volume_a(t: float) -> float:
    return 1000.0 + (t - T0) / 3600.0


async def fill(history, start: float, end: float, step: float, tokens=(A,),
               b_from: float | None = None) -> None:
    t = start
    while t <= end + 1e-6:
        records = {a: rec(price_a(t), volume_a(t)) for a in tokens}
        if b_from is not None and t >= b_from:
            records[B] = rec(5.0, 10.0)
        assert await history.record(records, t)
        t += step


# ---------------------------------------------------------------------------------------------------
# Unit: derivation, downsampling, persistence


async def test_eight_days_of_samples_give_7d_figures_and_six_days_give_none():
    history = memory_history()
    start, end = T0 - 8 * DAY_S, T0
    await fill(history, start, end, 1800.0, b_from=end - 6 * DAY_S)
    figures = await history.seven_day(A, end)
    assert figures is not None
    assert figures["price_change"] == pytest.approx((price_a(end) / price_a(end - 7 * DAY_S) - 1) * 100)
    assert figures["volume_usd"] == pytest.approx(sum(volume_a(end - k * DAY_S) for k in range(7)))
    # B was sampled for six days only: nothing, never a made-up figure.
    assert await history.seven_day(B, end) is None
    many = await history.seven_day_many([A, B, "C" * 44], end)
    assert set(many) == {A}

    six = memory_history()
    await fill(six, end - 6 * DAY_S, end, 1800.0)
    assert await six.seven_day(A, end) is None
    # A history more than the tolerance behind "now" gives nothing either.
    assert await history.seven_day(A, end + 2 * 3600) is None


async def test_a_null_figure_in_the_samples_leaves_that_7d_figure_null():
    history = memory_history()
    t = T0 - 7 * DAY_S
    while t <= T0:
        volume = None if abs(t - (T0 - 3 * DAY_S)) < 1 else 50.0
        await history.record({A: rec(2.0 if t < T0 else 3.0, volume)}, t)
        t += 3600.0
    figures = await history.seven_day(A, T0)
    assert figures == {"volume_usd": None, "price_change": pytest.approx(50.0)}


async def test_at_most_one_sample_per_token_per_step_and_old_samples_thinned():
    history = memory_history()
    assert await history.record({A: rec(1.0, 1.0)}, T0)
    assert not history.due(T0 + STEP_S / 2)
    assert not await history.record({A: rec(2.0, 1.0)}, T0 + STEP_S / 2)
    assert not await history.record({A: rec(2.0, 1.0)}, T0 + STEP_S - 1)
    assert await history.record({A: rec(2.0, 1.0)}, T0 + STEP_S)
    assert not await history.record({}, T0 + 2 * STEP_S)  # nothing to sample: nothing kept
    t = T0 + 2 * STEP_S
    end = T0 + 4 * 3600
    while t <= end:
        await history.record({A: rec(1.0, 1.0)}, t)
        t += STEP_S
    times = history.times()
    assert all(b - a >= STEP_S for a, b in zip(times, times[1:]))
    old = [x for x in times if end - x > THIN_AFTER_S]
    assert all(b - a >= KEEP_EVERY_S for a, b in zip(old, old[1:]))
    recent = [x for x in times if end - x <= THIN_AFTER_S]
    assert len(recent) == int(THIN_AFTER_S // STEP_S) + 1  # the last two hours at full resolution


async def test_history_and_snapshot_persist_across_instances(tmp_path):
    history, snapshots = open_state(tmp_path / "data", "origin-1")
    await fill(history, T0 - 8 * DAY_S, T0, 3600.0)
    expected = await history.seven_day(A, T0)
    times = history.times()
    store = memory_store()
    store.apply({A: {"token_address": A, "price_usd": 1.5, "stats": {}}})
    await snapshots.save(store.latest(), {"candles": {A: [T0, {"volume_usd": 1.0, "price_change": 2.0}]}}, T0)
    history.close()
    snapshots.close()

    again, snapshots = open_state(tmp_path / "data", "origin-1")
    assert again.times() == times
    assert await again.seven_day(A, T0) == expected
    snapshot = snapshots.load()
    assert snapshot.records == {A: {"token_address": A, "price_usd": 1.5, "stats": {}}}
    assert snapshot.extra["candles"][A][1] == {"volume_usd": 1.0, "price_change": 2.0}
    again.close()
    snapshots.close()

    # State saved from other upstreams (say, the demo market) is not restored.
    other, snapshots = open_state(tmp_path / "data", "origin-2")
    assert other.times() == [] and snapshots.load() is None
    other.close()
    snapshots.close()


async def test_unusable_data_dir_is_one_error_and_no_persistence(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    seen: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = seen.append  # type: ignore[method-assign]
    logger = logging.getLogger("app.history")
    logger.addHandler(handler)
    try:
        history, snapshots = open_state(blocker / "data", "o")
    finally:
        logger.removeHandler(handler)
    assert snapshots is None
    assert [r.levelno for r in seen] == [logging.ERROR] and "DATA_DIR" in seen[0].getMessage()
    assert await history.record({A: rec(1.0, 1.0)}, T0)  # history still works, in memory
    assert history.times() == [T0]


# ---------------------------------------------------------------------------------------------------
# Integration: the real service against the demo market


def candle_settings(upstream, data_dir, **limits):
    rate_limits = {"dexscreener": 3000, "geckoterminal": 1200, "jupiter": 1200} | limits
    return fast_settings(upstream, data_dir=str(data_dir)).with_(rate_limits=rate_limits)


async def records_of(client, base) -> list[dict]:
    out, cursor = [], None
    while True:
        params = {"limit": "100"} | ({"cursor": cursor} if cursor else {})
        body = (await client.get(f"{base}/api/tokens", params=params)).json()
        out.extend(body["data"])
        cursor = body["next_cursor"]
        if cursor is None:
            return out


async def test_own_history_gives_7d_figures_where_candles_do_not(tmp_path):
    market = Market(seed=3, n_tokens=60)
    async with serve_market(market, tick_interval=None) as upstream:
        # Without GeckoTerminal there are no candles at all (daily candles: tests/test_candles.py).
        settings = fast_settings(upstream, data_dir=str(tmp_path), sources=("dexscreener", "jupiter"))
        first = sorted(t.mint for t in market.jup_top("toptraded", "1h"))
        covered, short = first[0], first[1]
        history, _ = open_state(tmp_path, origin_of(settings))
        now = time.time() - 60
        for k in range(7, -1, -1):
            records = {covered: rec(2.0 + k, 100.0 * (k + 1))}
            if k < 7:
                records[short] = rec(1.0, 1.0)  # six days only
            assert await history.record(records, now - k * DAY_S)
        history.close()
        async with running_service(settings) as (base, app), httpx.AsyncClient() as client:
            assert app.state.service.ingest.seven_day.allowance is None  # no GeckoTerminal, no candle calls

            async def seven_day():
                response = await client.get(f"{base}/api/tokens/{covered}")
                return response.json()["stats"]["7d"] if response.status_code == 200 and \
                    response.json()["stats"]["7d"]["price_change"] is not None else None

            figures = await wait_for(seven_day, timeout=15, message="7d from the service's own history")
            # served as the record is: a percent change to 2 decimals, USD to cents (CONTRACT §2)
            assert figures["price_change"] == round((2.0 / 9.0 - 1) * 100, 2)
            assert figures["volume_usd"] == round(sum(100.0 * (k + 1) for k in range(7)), 2)
            other = (await client.get(f"{base}/api/tokens/{short}")).json()
            assert other["stats"]["7d"]["price_change"] is None and other["stats"]["7d"]["volume_usd"] is None
    assert not [p for _, p, _ in market.requests["geckoterminal"] if "/ohlcv/" in p]


async def test_restart_serves_the_last_snapshot_at_once_stale_until_refreshed(tmp_path):
    market = Market(seed=7, n_tokens=80)
    async with serve_market(market, tick_interval=None) as upstream:
        settings = candle_settings(upstream, tmp_path / "data")
        async with running_service(settings) as (base, app), httpx.AsyncClient() as client:
            ingest = app.state.service.ingest

            async def with_seven_day():
                records = await records_of(client, base)
                covered = [r for r in records if r["stats"]["7d"]["volume_usd"] is not None]
                return covered if len(covered) >= 2 and ingest.history.times() else None

            await wait_for(with_seven_day, timeout=20, interval=0.2, message="7d figures, a history sample")
        first = app.state.service
        saved = dict(first.store.latest().records)  # what the shutdown saved
        samples = first.ingest.history.times()
        seven = {a: r["stats"]["7d"] for a, r in saved.items() if r["stats"]["7d"]["volume_usd"] is not None}
        assert seven

        for source in SOURCES:
            market.faults.set(source, "500")
        async with running_service(settings) as (base, app), httpx.AsyncClient() as client:
            svc = app.state.service
            body = (await client.get(f"{base}/api/tokens", params={"limit": "100"})).json()
            assert body["total"] == len(saved) and body["epoch"] != first.store.epoch
            records = await records_of(client, base)
            assert {r["token_address"]: r for r in records} == saved
            health = (await client.get(f"{base}/health")).json()
            assert health["stale"] is True and health["status"] == "degraded"
            assert (await client.get(f"{base}/ready")).status_code == 200
            assert svc.ingest.history.times() == samples  # the price history survived
            assert set(saved) <= set(svc.ingest.tokens)  # refresh starts with the restored universe
            await wait_for(lambda: svc.ingest.cycles >= 3, timeout=10, message="cycles while faulted")
            assert (await client.get(f"{base}/health")).json()["stale"] is True
            page = (await client.get(f"{base}/api/tokens", params={"limit": "1"})).json()
            assert page["total"] == len(saved)

            market.faults.clear()

            async def fresh():
                health = (await client.get(f"{base}/health")).json()
                return health if health["stale"] is False else None

            await wait_for(fresh, timeout=20, message="stale false after the first fresh commit")
            after = {r["token_address"]: r for r in await records_of(client, base)}
            assert set(saved) <= set(after)  # no restored token dropped
            address = next(iter(seven))
            await wait_for(lambda: svc.ingest.tokens[address].pools, timeout=10, message="token refreshed")
            record = (await client.get(f"{base}/api/tokens/{address}")).json()
            assert record["stats"]["7d"]["volume_usd"] == seven[address]["volume_usd"]  # candles kept too
