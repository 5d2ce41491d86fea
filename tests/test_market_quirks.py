"""The simulated market's real-world quirks, over real HTTP on loopback (upstreams.md): DexScreener's 30-pair
answers in no fixed order and its 60/min feed group, a junk-quoted pool's fictitious figures, GeckoTerminal's
pools oriented the other way round and its empty candle days, Jupiter's burst limit."""

from __future__ import annotations

import pytest

from app.demo.market import USDC_MINT, WSOL_MINT
from app.demo.model import JUNK_FACTOR

pytestmark = pytest.mark.anyio


# ------------------------------------------------------------------------------------------------
# DexScreener
# ------------------------------------------------------------------------------------------------
async def test_dexscreener_answers_hold_at_most_30_pairs_in_no_fixed_order(srv, client) -> None:
    m, base = srv.market, srv.dexscreener_url
    mints = [t.mint for t in m.tokens[:30]]
    truth = {p.address for mint in mints for p in (*m.by_mint[mint].pools, *m.by_mint[mint].quote_pools)
             if m.ds_visible(p)}
    assert len(truth) > 40  # 30 tokens have more pairs than one answer holds
    answers = [[p["pairAddress"] for p in (await client.get(f"{base}/tokens/v1/solana/{','.join(mints)}")).json()]
               for _ in range(3)]
    for answer in answers:
        assert len(answer) == 30 and set(answer) <= truth
    assert len({tuple(a) for a in answers}) == 3 and len({frozenset(a) for a in answers}) > 1  # no fixed order
    # some mints of the batch get none of their pairs: absent, yet they have pools
    cut = [mint for mint in mints if not any(m.pools[a].base.mint == mint or m.pools[a].quote.mint == mint
                                             for a in answers[0])]
    assert cut and all(m.ds_pools(m.by_mint[mint]) or m.by_mint[mint].quote_pools for mint in cut)
    # one token's pairs are capped at 30 too (wSOL is the quote of hundreds of pools)
    sol = (await client.get(f"{base}/token-pairs/v1/solana/{WSOL_MINT}")).json()
    assert len(sol) == 30
    # by pool address, one pair per address: 30 addresses, 30 pairs, whatever their tokens
    pools = sorted(truth)[:30]
    body = (await client.get(f"{base}/latest/dex/pairs/solana/{','.join(pools)}")).json()
    assert sorted(p["pairAddress"] for p in body["pairs"]) == pools
    assert (await client.get(f"{base}/latest/dex/pairs/solana/{','.join(sorted(truth)[:31])}")).status_code == 400


async def test_dexscreener_feeds_are_a_60_per_minute_group_of_their_own(srv, client) -> None:
    base = srv.dexscreener_url
    feeds = ("/token-profiles/latest/v1", "/token-boosts/latest/v1", "/token-boosts/top/v1")
    codes = [(await client.get(base + feeds[i % 3])).status_code for i in range(61)]
    assert codes == [200] * 60 + [429]
    r = await client.get(base + feeds[0])
    assert r.status_code == 429 and "retry-after" not in r.headers  # DexScreener documents none
    # the pairs group is counted apart
    assert (await client.get(f"{base}/tokens/v1/solana/{srv.market.tokens[0].mint}")).status_code == 200


async def test_a_junk_quoted_pool_reports_fictitious_liquidity_and_price(srv, client) -> None:
    m = srv.market
    t = next(t for t in m.tokens if any(p.junk for p in t.pools) and any(
        not p.junk and not p.completed and m.ds_visible(p) for p in t.pools))
    junk = next(p for p in t.pools if p.junk)
    real = m.main_pool(t)
    assert real.quote in (m.sol, m.usdc) and junk.liquidity < real.liquidity  # in truth a small pool
    pair = (await client.get(f"{srv.dexscreener_url}/latest/dex/pairs/solana/{junk.address}")).json()["pairs"][0]
    assert pair["quoteToken"]["address"] == m.junk.mint
    assert pair["liquidity"]["usd"] == pytest.approx(junk.liquidity * JUNK_FACTOR, rel=1e-6)
    assert pair["liquidity"]["usd"] > real.liquidity  # on paper deeper than the real main pool
    assert float(pair["priceUsd"]) == pytest.approx(t.price * JUNK_FACTOR, rel=0.02)
    gt = (await client.get(f"{srv.geckoterminal_url}/networks/solana/pools/{junk.address}")).json()["data"]
    assert float(gt["attributes"]["reserve_in_usd"]) == pytest.approx(junk.liquidity * JUNK_FACTOR, rel=1e-6)
    # one token has no pool either aggregator shows but its junk-quoted one
    assert any(all(p.junk for p in t.pools if m.ds_visible(p) or m.gt_visible(p))
               and any(m.ds_visible(p) for p in t.pools) for t in m.tokens)


# ------------------------------------------------------------------------------------------------
# GeckoTerminal
# ------------------------------------------------------------------------------------------------
async def test_geckoterminal_orients_some_pools_the_other_way_round(srv, client) -> None:
    m, base = srv.market, srv.geckoterminal_url
    p = next(p for p in m.pools.values() if p.gt_reversed and m.gt_visible(p) and p.quote is m.sol
             and p.created_at < m.now() - 10 * 86400)
    doc = (await client.get(f"{base}/networks/solana/pools/{p.address}", params={"include": "base_token"})).json()
    rel, a = doc["data"]["relationships"], doc["data"]["attributes"]
    assert rel["base_token"]["data"]["id"] == f"solana_{WSOL_MINT}"
    assert rel["quote_token"]["data"]["id"] == f"solana_{p.base.mint}"
    assert float(a["base_token_price_usd"]) == pytest.approx(m.sol_usd, rel=1e-6)
    assert float(a["quote_token_price_usd"]) == pytest.approx(p.price_usd, rel=1e-6)
    assert a["transactions"]["h24"]["buys"] == p.trades(5)[1]  # a buy of SOL is a sell of the token
    assert [i["id"] for i in doc["included"]] == [f"solana_{WSOL_MINT}"]
    # DexScreener shows the same pool the usual way round
    pair = (await client.get(f"{srv.dexscreener_url}/latest/dex/pairs/solana/{p.address}")).json()["pairs"][0]
    assert pair["baseToken"]["address"] == p.base.mint
    # candles: `token=base` would be SOL's; `token=<mint>` is the token's
    params = {"aggregate": 1, "limit": 8, "currency": "usd", "include_empty_intervals": "true"}
    ohlcv = f"{base}/networks/solana/pools/{p.address}/ohlcv/day"
    by_base = (await client.get(ohlcv, params={**params, "token": "base"})).json()["data"]["attributes"]
    by_mint = (await client.get(ohlcv, params={**params, "token": p.base.mint})).json()["data"]["attributes"]
    assert by_base["ohlcv_list"][0][4] == pytest.approx(m.sol_usd)
    assert by_mint["ohlcv_list"][0][4] == pytest.approx(p.price_usd)


async def test_a_day_without_trades_is_a_candle_only_with_include_empty_intervals(srv, client) -> None:
    m, base = srv.market, srv.geckoterminal_url
    found = None
    for p in m.pools.values():
        if not m.gt_visible(p) or p.created_at > m.now() - 20 * 86400:
            continue
        params = {"aggregate": 1, "limit": 14, "currency": "usd", "token": p.base.mint}
        url = f"{base}/networks/solana/pools/{p.address}/ohlcv/day"
        full = (await client.get(url, params={**params, "include_empty_intervals": "true"})).json()
        rows = full["data"]["attributes"]["ohlcv_list"]
        if any(row[5] == 0 for row in rows):
            found = (rows, (await client.get(url, params=params)).json()["data"]["attributes"]["ohlcv_list"])
            break
    assert found is not None, "no pool with a quiet day in the last two weeks"
    rows, without = found
    assert len(rows) == 14 and [r[0] for r in rows] == [rows[0][0] - 86400 * i for i in range(14)]
    empty = [r for r in rows if r[5] == 0]
    assert all(r[1] == r[2] == r[3] == r[4] for r in empty)  # flat: the price did not move
    traded = [r[0] for r in rows if r[5] > 0]  # without the flag the quiet days are simply missing
    assert [r[0] for r in without][: len(traded)] == traded and all(r[5] > 0 for r in without)


# ------------------------------------------------------------------------------------------------
# Jupiter
# ------------------------------------------------------------------------------------------------
async def test_jupiter_answers_a_quick_burst_past_5_calls_with_429(srv, client) -> None:
    srv.market.rate_limits["jupiter"] = 30  # keyless: 30/min, about one call per 2 s
    url = f"{srv.jupiter_url}/price/v3"
    responses = [await client.get(url, params={"ids": USDC_MINT}) for _ in range(6)]
    assert [r.status_code for r in responses] == [200] * 5 + [429]
    assert int(responses[-1].headers["x-ratelimit-remaining"]) == 24  # well inside the minute's budget
    assert "x-ratelimit-reset" in responses[-1].headers
