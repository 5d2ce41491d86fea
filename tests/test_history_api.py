"""GET /api/tokens/{address}/history: a token's recorded series, bucketed per interval, errors as §4."""

from __future__ import annotations

import time

import httpx
import pytest

from app.demo.market import Market
from app.demo.server import serve_market
from app.history import DAY_S, STEP_S, THIN_AFTER_S, memory_history, open_state, origin_of
from app.history_series import points
from app.sources.values import iso
from tests.support import fast_settings, running_service, wait_for

pytestmark = pytest.mark.anyio

A = "A" * 43 + "1"
B = "B" * 43 + "1"
T0 = 1_790_000_040.0  # a fake "now", on a minute boundary


def rec(price: float | None, five: float | None, hour: float | None, day: float | None, at: float | None = None):
    record = {"price_usd": price, "stats": {"5m": {"volume_usd": five}, "1h": {"volume_usd": hour},
                                            "24h": {"volume_usd": day}}}
    if at is not None:
        record["updated_at"] = iso(at)
    return record


def price_at(t: float) -> float:
    return round(1.0 + (t - T0) / 3600.0, 6)


async def record_minutes(history, start: float, end: float, tokens=(A,)) -> None:
    t = start
    while t <= end:
        assert await history.record({a: rec(price_at(t), 5.0, 60.0, 1440.0) for a in tokens}, t)
        t += STEP_S


# ---------------------------------------------------------------------------------------------------
# Unit: the series and its buckets


async def test_one_point_per_interval_the_latest_sample_and_the_matching_window_volume():
    history = memory_history()
    await record_minutes(history, T0 - 3 * 3600, T0)
    series = await history.series(A)
    assert series is not None and await history.series(B) is None

    minutes = points(series, [], None, "1m", 1000, T0)
    recent = [p for p in minutes if T0 - _t(p["at"]) <= THIN_AFTER_S]
    assert len(recent) == THIN_AFTER_S // STEP_S + 1  # two hours at one a minute
    assert all(p["price_usd"] == price_at(_t(p["at"])) and p["volume_usd"] == 5.0 for p in minutes)
    assert all(p["source"] == "history" for p in minutes)
    older = [_t(p["at"]) for p in minutes if T0 - _t(p["at"]) > THIN_AFTER_S]
    assert older and all(b - a >= 1800 for a, b in zip(older, older[1:]))  # thinned to one per 30 minutes

    fives = points(series, [], None, "5m", 12, T0)
    assert len(fives) == 12
    assert T0 % 300 == 240 and all(_t(p["at"]) % 300 == 240 for p in fives)  # each bucket's last minute
    assert _t(fives[-1]["at"]) == T0
    hours = points(series, [], None, "1h", 1000, T0)
    assert {p["volume_usd"] for p in hours} == {60.0}  # a 1h point carries the 1h volume
    assert len(hours) == len({int(_t(p["at"]) // 3600) for p in hours})
    days = points(series, [], None, "1d", 1000, T0)
    assert {p["volume_usd"] for p in days} == {1440.0}


async def test_candles_fill_the_days_history_lacks_and_the_record_is_the_newest_point():
    history = memory_history()
    await record_minutes(history, T0 - 600, T0)
    today = T0 // DAY_S * DAY_S
    rows = [(today - k * DAY_S, 1.0, 2.0, 0.5, 10.0 + k, 1000.0 * k) for k in range(8)]
    history.remember_candles(A, rows, T0)
    candles = history.day_candles(A)
    assert [c[0] for c in candles] == sorted(r[0] for r in rows)

    days = points(await history.series(A), candles, None, "1d", 1000, T0)
    assert len(days) == 8
    assert [p["source"] for p in days] == ["candles"] * 7 + ["history"]  # today from the own samples
    assert days[0]["price_usd"] == 17.0 and days[0]["volume_usd"] == 7000.0
    assert _t(days[0]["at"]) == today - 6 * DAY_S  # a day's close is seen when the day ends
    # other intervals never use candles
    assert {p["source"] for p in points(await history.series(A), candles, None, "1h", 1000, T0)} == {"history"}

    live = rec(9.5, 7.0, 70.0, 1500.0, at=T0 + 30)
    minutes = points(await history.series(A), [], live, "1m", 3, T0 + 31)
    assert [p["source"] for p in minutes] == ["history", "history", "live"]
    assert minutes[-1] == {"at": iso(T0 + 30), "price_usd": 9.5, "volume_usd": 7.0, "source": "live"}
    fives = points(await history.series(A), [], live, "5m", 1000, T0 + 31)
    assert fives[-1]["source"] == "live" and fives[-1]["volume_usd"] == 7.0
    # a record not changed since the last sample adds nothing
    stale = rec(9.5, 7.0, 70.0, 1500.0, at=T0 - 5)
    assert points(await history.series(A), [], stale, "1m", 1000, T0)[-1]["source"] == "history"


async def test_the_series_is_read_from_data_dir_and_follows_new_samples(tmp_path):
    history, snapshots = open_state(tmp_path, "test")
    await record_minutes(history, T0 - 2.5 * 3600, T0 - 600, tokens=(A, B))
    history.close()
    snapshots.close()

    history, snapshots = open_state(tmp_path, "test")
    try:
        before = [p["at"] for p in points(await history.series(A), [], None, "1m", 1000, T0)]
        assert len(before) > 120
        revision = history.revision
        await record_minutes(history, T0 - 540, T0, tokens=(A,))  # B stops being sampled
        assert history.revision > revision
        after = points(await history.series(A), [], None, "1m", 1000, T0)
        assert after[-1]["at"] == iso(T0) and after[-1]["price_usd"] == price_at(T0)
        assert len(after) == len({p["at"] for p in after})
        assert set(before) - {p["at"] for p in after}  # thinned as the window moved
        assert (await history.series(B)) is not None  # B's older samples stay until they age out
    finally:
        history.close()
        snapshots.close()


def _t(at: str) -> float:
    from app.sources.values import timestamp

    value = timestamp(at)
    assert value is not None
    return value


# ---------------------------------------------------------------------------------------------------
# Integration: the endpoint over real HTTP


async def test_history_endpoint_answers_from_the_recorded_series_and_rejects_bad_queries(tmp_path):
    market = Market(seed=11, n_tokens=40)
    async with serve_market(market, tick_interval=None) as upstream:
        settings = fast_settings(upstream, data_dir=str(tmp_path))
        mints = sorted(t.mint for t in market.tokens)
        history, snapshots = open_state(tmp_path, origin_of(settings))
        now = float(round(time.time()))  # whole seconds: slot times are kept to the millisecond
        start = now - 3600
        t = start
        while t < now - STEP_S:
            assert await history.record({m: rec(price_at(t - start + T0), 5.0, 60.0, 1440.0) for m in mints}, t)
            t += STEP_S
        history.close()
        snapshots.close()
        async with running_service(settings) as (base, app), httpx.AsyncClient(base_url=base) as client:

            async def tracked():
                body = (await client.get("/api/tokens", params={"limit": "100"})).json()
                return [r["token_address"] for r in body["data"] if r["token_address"] in mints] or None

            address = (await wait_for(tracked, timeout=15, message="a seeded token tracked"))[0]
            response = await client.get(f"/api/tokens/{address}/history", params={"interval": "1m", "limit": "30"})
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["token_address"] == address and body["interval"] == "1m" and body["volume_window"] == "5m"
            series = body["points"]
            assert len(series) == 30
            times = [_t(p["at"]) for p in series]
            assert times == sorted(times) and len(set(int(x // 60) for x in times)) == 30
            seeded = [p for p in series if p["source"] == "history"]
            assert len(seeded) >= 28 and all(p["volume_usd"] == 5.0 for p in seeded[:-2])
            assert series[-1]["source"] in ("live", "history")

            default = (await client.get(f"/api/tokens/{address}/history")).json()
            assert default["interval"] == "5m" and 12 <= len(default["points"]) <= 14

            # the same version and query: the same bytes, and a 304 for its ETag
            again = await client.get(f"/api/tokens/{address}/history", params={"interval": "1m", "limit": "30"})
            if again.json()["seq"] == body["seq"]:
                assert again.content == response.content and again.headers["etag"] == response.headers["etag"]
            etag = again.headers["etag"]
            not_modified = await client.get(f"/api/tokens/{address}/history", params={"interval": "1m", "limit": "30"},
                                            headers={"If-None-Match": etag})
            assert not_modified.status_code in (200, 304)
            if not_modified.status_code == 304:
                assert not_modified.content == b""

            async def error(path: str, **params) -> dict:
                response = await client.get(path, params=params or None)
                assert response.status_code in (400, 404), response.text
                return {"status": response.status_code, **response.json()["error"]}

            path = f"/api/tokens/{address}/history"
            assert await error(path, interval="2m") == {
                "status": 400, "code": "invalid_param", "param": "interval",
                "message": "interval must be one of 1m, 5m, 1h, 1d"}
            for bad in ("0", "1001", "ten", "-1"):
                assert (await error(path, limit=bad))["param"] == "limit"
            assert await error(path, window="1h") == {"status": 400, "code": "invalid_param", "param": "window",
                                                      "message": "unknown parameter 'window'"}
            assert (await error(path + "?interval=1m&interval=5m"))["param"] == "interval"
            assert (await error("/api/tokens/not-base58-0OIl/history")) == {
                "status": 400, "code": "invalid_address", "param": "address",
                "message": "address must be base58 of 32 to 44 characters"}
            missing = await error(f"/api/tokens/{'9' * 44}/history")
            assert missing["status"] == 404 and missing["code"] == "not_found"


async def test_an_answer_is_built_once_per_version_and_query(tmp_path):
    market = Market(seed=12, n_tokens=20)
    async with serve_market(market, tick_interval=None) as upstream:
        settings = fast_settings(upstream, data_dir=str(tmp_path))
        async with running_service(settings) as (base, app), httpx.AsyncClient(base_url=base) as client:
            svc = app.state.service
            await wait_for(lambda: svc.store.latest().records, timeout=15, message="records")
            address = next(iter(svc.store.latest().records))
            history = svc.ingest.history
            calls = []
            original = history.series

            async def counted(addr):
                calls.append(addr)
                return await original(addr)

            history.series = counted

            async def same_state_twice():
                # the market does not tick, so the versions settle; retry while they still move
                calls.clear()
                first = await client.get(f"/api/tokens/{address}/history", params={"interval": "1h"})
                second = await client.get(f"/api/tokens/{address}/history", params={"interval": "1h"})
                return (first, second) if first.headers["etag"] == second.headers["etag"] else None

            first, second = await wait_for(same_state_twice, timeout=15, message="two answers at one state")
            assert first.status_code == second.status_code == 200
            assert first.content == second.content
            assert calls == [address]  # the second answer came from the encoded bytes
            assert first.json()["points"], "the record itself is a point"
