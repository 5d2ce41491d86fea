"""The simulated market (app/demo) over real HTTP on loopback: shapes, caps, quirks, faults, ticking."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest

from app.demo.market import B58_ALPHABET, USDC_MINT, WSOL_MINT, Market, Token
from app.demo.server import RunningMarket, serve_market
from tests.support import wait_for

pytestmark = pytest.mark.anyio


def is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def is_decimal_str(x: Any) -> bool:
    if not isinstance(x, str) or "e" in x.lower():
        return False
    float(x)
    return True


def tracked(m: Market, pred: Callable[[Token], bool]) -> Token:
    return next(t for t in m.tokens if pred(t))


# ------------------------------------------------------------------------------------------------
# market state
# ------------------------------------------------------------------------------------------------
def test_market_is_deterministic_and_mints_look_real() -> None:
    a, b, c = Market(seed=3), Market(seed=3), Market(seed=4)
    assert [t.mint for t in a.tokens] == [t.mint for t in b.tokens]
    assert [t.mint for t in a.tokens] != [t.mint for t in c.tokens]
    assert len(a.tokens) == 300 and len({t.mint for t in a.tokens}) == 300
    for t in a.tokens:
        assert 32 <= len(t.mint) <= 44 and set(t.mint) <= set(B58_ALPHABET)
        assert 1 <= len(t.pools) <= 5  # up to 3 own, a quote-side pair, a junk-quoted pool
        for p in t.pools:
            assert 32 <= len(p.address) <= 44 and set(p.address) <= set(B58_ALPHABET)
    assert any(t.mint.endswith("pump") for t in a.tokens)
    assert 100 < a.sol_usd < 220
    assert {p.gt_dex for p in a.pools.values()} >= {
        "raydium", "raydium-clmm", "raydium-cpmm", "pumpswap", "pump-fun", "meteora", "meteora-dlmm", "orca"}
    quotes = [p.quote.mint for p in a.pools.values()]
    assert quotes.count(WSOL_MINT) > quotes.count(USDC_MINT) > 0


def test_tick_is_fast_and_moves_the_market() -> None:
    m = Market(seed=5)
    before = [t.price for t in m.tokens]
    sol = m.sol_usd
    best = float("inf")
    for _ in range(5):  # best of five batches, so a busy machine does not fail it
        start = time.perf_counter()
        m.tick(10)
        best = min(best, (time.perf_counter() - start) / 10)
    assert best < 0.010
    assert sum(1 for x, t in zip(before, m.tokens) if x != t.price) > 250
    assert m.sol_usd != sol
    for p in m.pools.values():
        assert p.vols == sorted(p.vols)  # m5 <= m15 <= m30 <= h1 <= h6 <= h24
        trades = [p.trades(i) for i in range(6)]
        assert [b for b, _ in trades] == sorted(b for b, _ in trades)


# ------------------------------------------------------------------------------------------------
# DexScreener
# ------------------------------------------------------------------------------------------------
async def test_dexscreener_shapes(srv: RunningMarket, client: httpx.AsyncClient) -> None:
    m, base = srv.market, srv.dexscreener_url
    for path, boosted in (("/token-profiles/latest/v1", False), ("/token-boosts/latest/v1", True),
                          ("/token-boosts/top/v1", True)):
        items = (await client.get(base + path)).json()
        assert isinstance(items, list) and items
        chains = {i["chainId"] for i in items}
        assert "solana" in chains and chains - {"solana"}, path  # other chains to filter out
        for item in items:
            assert {"url", "chainId", "tokenAddress", "icon", "header", "description", "links"} <= item.keys()
            assert ("amount" in item and "totalAmount" in item) == boosted

    mints = [t.mint for t in m.tokens[:30]]
    r = await client.get(f"{base}/tokens/v1/solana/{','.join(mints)}")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    pairs = r.json()
    assert isinstance(pairs, list) and pairs  # bare array
    assert {p["baseToken"]["address"] for p in pairs} & set(mints)
    for p in pairs:
        assert p["chainId"] == "solana" and isinstance(p["pairAddress"], str)
        assert isinstance(p["priceNative"], str) and is_decimal_str(p["priceNative"])
        assert p["priceUsd"] is None or is_decimal_str(p["priceUsd"])
        for _w, tx in p["txns"].items():
            assert type(tx["buys"]) is int and type(tx["sells"]) is int
        assert all(is_num(v) for v in p["volume"].values())
        assert all(is_num(v) for v in p["priceChange"].values())
        if "liquidity" in p:
            assert is_num(p["liquidity"]["usd"])
        assert p["fdv"] is None or is_num(p["fdv"])
        assert p["pairCreatedAt"] is None or type(p["pairCreatedAt"]) is int
        vol = [p["volume"][k] for k in ("m5", "h1", "h6", "h24") if k in p["volume"]]
        assert vol == sorted(vol)

    # 31 addresses is past the batch cap; unknown tokens are simply absent
    r = await client.get(f"{base}/tokens/v1/solana/{','.join([t.mint for t in m.tokens[:31]])}")
    assert r.status_code == 400
    unknown = "11111111111111111111111111111111"
    assert (await client.get(f"{base}/tokens/v1/solana/{unknown}")).json() == []

    pool = m.tokens[0].pools[-1].address
    body = (await client.get(f"{base}/latest/dex/pairs/solana/{pool}")).json()
    assert body["schemaVersion"] == "1.0.0" and body["pairs"][0]["pairAddress"] == pool
    assert (await client.get(f"{base}/latest/dex/pairs/solana/{unknown}")).json()["pairs"] is None
    tp = (await client.get(f"{base}/token-pairs/v1/solana/{m.tokens[0].mint}")).json()
    assert isinstance(tp, list) and tp


async def test_dexscreener_quirks(srv: RunningMarket, client: httpx.AsyncClient) -> None:
    m, base = srv.market, srv.dexscreener_url
    # A tracked token that is the QUOTE side of another token's pool comes back for its own mint.
    quoted = tracked(m, lambda t: any(not p.ds_hidden for p in t.quote_pools))
    pairs = (await client.get(f"{base}/tokens/v1/solana/{quoted.mint}")).json()
    assert any(p["quoteToken"]["address"] == quoted.mint and p["baseToken"]["address"] != quoted.mint
               for p in pairs)
    # Nulls and missing blocks/windows somewhere in the market (every pool, by address: never cut).
    everything: list[dict] = []
    pools = list(m.pools)
    for i in range(0, len(pools), 30):
        everything += (await client.get(f"{base}/latest/dex/pairs/solana/{','.join(pools[i:i + 30])}")).json()[
            "pairs"] or []
    assert any(p["priceUsd"] is None for p in everything)
    assert any(p["fdv"] is None or p["marketCap"] is None or p["pairCreatedAt"] is None for p in everything)
    assert any("labels" in p and p["labels"] is None for p in everything)
    assert any(p.get("labels") == ["CLMM"] for p in everything)
    assert any("info" not in p for p in everything) and any("info" in p for p in everything)
    assert any("boosts" not in p for p in everything)
    assert any("m5" not in p["volume"] for p in everything)
    assert any("liquidity" not in p for p in everything if p["dexId"] == "pumpfun")
    # SOL/USD from DexScreener: wSOL as base, quoted in USDC.
    sol_pools = ",".join(p.address for p in m.sol.pools)
    usdc = (await client.get(f"{base}/latest/dex/pairs/solana/{sol_pools}")).json()["pairs"]
    assert {p["quoteToken"]["address"] for p in usdc} == {USDC_MINT}
    for pair in usdc:
        assert pair["baseToken"]["address"] == WSOL_MINT
        assert float(pair["priceUsd"]) == pytest.approx(m.sol_usd, rel=0.01)


# ------------------------------------------------------------------------------------------------
# GeckoTerminal
# ------------------------------------------------------------------------------------------------
def check_gt_pool(pool: dict) -> None:
    assert pool["type"] == "pool" and pool["id"] == "solana_" + pool["attributes"]["address"]
    a = pool["attributes"]
    assert is_decimal_str(a["base_token_price_usd"]) and is_decimal_str(a["quote_token_price_usd"])
    assert is_decimal_str(a["fdv_usd"])
    for key in ("base_token_price_native_currency", "base_token_price_quote_token", "reserve_in_usd",
                "market_cap_usd"):
        assert a[key] is None or isinstance(a[key], str)
    assert set(a["volume_usd"]) == set(a["price_change_percentage"]) == set(a["transactions"]) == {
        "m5", "m15", "m30", "h1", "h6", "h24"}
    assert all(is_decimal_str(v) for v in a["volume_usd"].values())
    assert all(isinstance(v, str) for v in a["price_change_percentage"].values())
    for tx in a["transactions"].values():
        assert all(type(tx[k]) is int for k in ("buys", "sells", "buyers", "sellers"))
    rel = pool["relationships"]
    assert rel["base_token"]["data"]["id"].startswith("solana_")
    assert rel["dex"]["data"]["type"] == "dex"


async def test_geckoterminal_shapes(srv: RunningMarket, client: httpx.AsyncClient) -> None:
    m, base = srv.market, srv.geckoterminal_url
    inc = {"include": "base_token,quote_token,dex"}
    body = (await client.get(f"{base}/networks/solana/trending_pools", params={**inc, "page": 1})).json()
    assert len(body["data"]) == 20
    for pool in body["data"]:
        check_gt_pool(pool)
    kinds = {i["type"] for i in body["included"]}
    assert kinds == {"token", "dex"}
    ids = {i["id"] for i in body["included"]}
    for pool in body["data"]:
        assert pool["relationships"]["base_token"]["data"]["id"] in ids
        assert pool["relationships"]["dex"]["data"]["id"] in ids
    page2 = (await client.get(f"{base}/networks/solana/trending_pools", params={"page": 2, "duration": "1h"})).json()
    assert len(page2["data"]) == 20 and "included" not in page2
    new = (await client.get(f"{base}/networks/solana/new_pools", params={**inc, "page": 1})).json()
    created = [p["attributes"]["pool_created_at"] for p in new["data"]]
    assert created and created == sorted(created, reverse=True)

    addrs = [p.address for p in list(m.pools.values())[:31]]
    assert (await client.get(f"{base}/networks/solana/pools/multi/{','.join(addrs)}")).status_code == 400
    multi = (await client.get(f"{base}/networks/solana/pools/multi/{','.join(addrs[:30])}", params=inc)).json()
    assert multi["data"] and all(p["attributes"]["address"] in addrs for p in multi["data"])
    one = (await client.get(f"{base}/networks/solana/pools/{multi['data'][0]['attributes']['address']}")).json()
    check_gt_pool(one["data"])
    missing = await client.get(f"{base}/networks/solana/pools/11111111111111111111111111111111")
    assert missing.status_code == 404 and "errors" in missing.json()

    # tokens/multi: only each token's single most liquid pool; unknown addresses skipped
    mints = [t.mint for t in m.tokens[:29]] + ["11111111111111111111111111111111"]
    tm = (await client.get(f"{base}/networks/solana/tokens/multi/{','.join(mints)}",
                           params={"include": "top_pools"})).json()
    assert 0 < len(tm["data"]) <= 29
    for tok in tm["data"]:
        a = tok["attributes"]
        assert tok["id"] == "solana_" + a["address"]
        assert len(tok["relationships"]["top_pools"]["data"]) == 1
        assert is_decimal_str(a["price_usd"]) and is_decimal_str(a["total_reserve_in_usd"])
        assert set(a["volume_usd"]) == {"h24"}
        t = m.by_mint[a["address"]]
        assert ("launchpad_details" in a) == bool(t.on_curve)
    assert {p["id"] for p in tm["included"]} == {
        tok["relationships"]["top_pools"]["data"][0]["id"] for tok in tm["data"]}
    assert (await client.get(f"{base}/networks/solana/tokens/multi/{','.join(mints + [WSOL_MINT])}")).status_code == 400
    assert (await client.get(f"{base}/networks/solana/tokens/11111111111111111111111111111111")).status_code == 404
    single = (await client.get(f"{base}/networks/solana/tokens/{m.tokens[0].mint}")).json()
    assert single["data"]["attributes"]["address"] == m.tokens[0].mint

    sp = (await client.get(f"{base}/simple/networks/solana/token_price/{WSOL_MINT},{m.tokens[0].mint}",
                           params={"include_market_cap": "true", "include_24hr_vol": "true"})).json()
    attrs = sp["data"]["attributes"]
    assert sp["data"]["type"] == "simple_token_price"
    assert float(attrs["token_prices"][WSOL_MINT]) == pytest.approx(m.sol_usd, rel=0.01)
    assert set(attrs) == {"token_prices", "market_cap_usd", "h24_volume_usd"}

    pool = next(p for p in m.pools.values() if m.gt_visible(p) and p.created_at < m.now() - 12 * 86400)
    oh = (await client.get(f"{base}/networks/solana/pools/{pool.address}/ohlcv/day",
                           params={"aggregate": 1, "limit": 8, "currency": "usd", "token": "base"})).json()
    rows = oh["data"]["attributes"]["ohlcv_list"]
    assert len(rows) == 8 and [r[0] for r in rows] == sorted((r[0] for r in rows), reverse=True)
    assert all(is_num(x) for r in rows for x in r)
    assert all(r[3] <= min(r[1], r[4]) and r[2] >= max(r[1], r[4]) for r in rows)
    assert rows[0][4] == pytest.approx(pool.price_usd)
    assert oh["meta"]["base"]["address"] == pool.base.mint


async def test_geckoterminal_quirks(srv: RunningMarket, client: httpx.AsyncClient) -> None:
    m, base = srv.market, srv.geckoterminal_url
    seen: list[dict] = []
    visible = [p.address for p in m.pools.values() if m.gt_visible(p)]
    for i in range(0, len(visible), 30):
        seen += (await client.get(f"{base}/networks/solana/pools/multi/{','.join(visible[i:i + 30])}")).json()["data"]
    assert len(seen) == len(visible)
    attrs = [p["attributes"] for p in seen]
    nulls = sum(a["market_cap_usd"] is None for a in attrs)
    assert nulls > len(attrs) / 2 and nulls < len(attrs)  # null for most, not all
    assert any(a["reserve_in_usd"] and a["reserve_in_usd"].startswith("-") for a in attrs)
    # a fresh pump-fun pool has null native price, quote price and reserve
    m.tick()  # a launch becomes visible after a few ticks; force one
    fresh = m.launch()
    m.tick(4)
    pool = fresh.pools[0]
    body = (await client.get(f"{base}/networks/solana/pools/{pool.address}")).json()["data"]["attributes"]
    assert body["base_token_price_native_currency"] is None
    assert body["base_token_price_quote_token"] is None and body["reserve_in_usd"] is None


# ------------------------------------------------------------------------------------------------
# Jupiter
# ------------------------------------------------------------------------------------------------
JUP_KEYS = {"id", "name", "symbol", "icon", "decimals", "tokenProgram", "createdAt", "twitter", "website", "dev",
            "circSupply", "totalSupply", "launchpad", "graduatedPool", "graduatedAt", "holderCount", "fdv", "mcap",
            "usdPrice", "priceBlockId", "liquidity", "stats5m", "stats1h", "stats6h", "stats24h", "firstPool",
            "audit", "organicScore", "organicScoreLabel", "isVerified", "tags", "updatedAt"}
STAT_KEYS = {"priceChange", "holderChange", "liquidityChange", "volumeChange", "buyVolume", "sellVolume",
             "buyOrganicVolume", "sellOrganicVolume", "numBuys", "numSells", "numTraders", "numOrganicBuyers",
             "numNetBuyers"}


async def test_jupiter_shapes(srv: RunningMarket, client: httpx.AsyncClient) -> None:
    m, base = srv.market, srv.jupiter_url
    unpriced = tracked(m, lambda t: t.jup_known and not m.jup_priced(t))
    ids = [WSOL_MINT, unpriced.mint] + [t.mint for t in m.tokens[:48]]
    r = await client.get(f"{base}/price/v3", params={"ids": ",".join(dict.fromkeys(ids))})
    assert r.status_code == 200
    for h in ("x-ratelimit-remaining", "x-ratelimit-current", "x-ratelimit-reset"):
        assert r.headers[h].isdigit()
    prices = r.json()
    assert "data" not in prices and unpriced.mint not in prices  # flat map; unpriceable left out
    assert prices[WSOL_MINT]["usdPrice"] == pytest.approx(m.sol_usd)
    for entry in prices.values():
        assert is_num(entry["usdPrice"]) and is_num(entry["liquidity"]) and type(entry["decimals"]) is int
        assert entry["blockId"] is None or type(entry["blockId"]) is int
    many = ",".join(t.mint for t in m.tokens[:51])
    assert (await client.get(f"{base}/price/v3", params={"ids": many})).status_code == 400

    mints = [t.mint for t in m.tokens[:100]]
    items = (await client.get(f"{base}/tokens/v2/search", params={"query": ",".join(mints)})).json()
    assert isinstance(items, list) and len(items) > 90
    nulls = 0
    for item in items:
        assert set(item) == JUP_KEYS
        for w in ("5m", "1h", "6h", "24h"):
            stats = item[f"stats{w}"]
            if stats is None:
                nulls += 1
            else:
                assert set(stats) == STAT_KEYS and type(stats["numBuys"]) is int
        assert item["firstPool"] is None or set(item["firstPool"]) == {"id", "createdAt"}
    assert nulls > 0
    more = ",".join(t.mint for t in m.tokens[:101])
    assert (await client.get(f"{base}/tokens/v2/search", params={"query": more})).status_code == 400

    for cat in ("toporganicscore", "toptraded", "toptrending"):
        lst = (await client.get(f"{base}/tokens/v2/{cat}/1h", params={"limit": 100})).json()
        assert len(lst) == 100 and not {WSOL_MINT, USDC_MINT} & {i["id"] for i in lst}
        assert len((await client.get(f"{base}/tokens/v2/{cat}/24h")).json()) == 50
    assert (await client.get(f"{base}/tokens/v2/toptraded/5m", params={"limit": 101})).status_code == 400
    recent = (await client.get(f"{base}/tokens/v2/recent")).json()
    assert 25 <= len(recent) <= 30


async def test_tokens_known_to_only_some_sources(srv: RunningMarket, client: httpx.AsyncClient) -> None:
    m = srv.market
    jup_only = tracked(m, lambda t: t.jup_known and all(p.ds_hidden and p.gt_hidden for p in t.pools))
    assert (await client.get(f"{srv.dexscreener_url}/tokens/v1/solana/{jup_only.mint}")).json() == []
    gt = (await client.get(f"{srv.geckoterminal_url}/networks/solana/tokens/multi/{jup_only.mint}")).json()
    assert gt["data"] == []
    jup = (await client.get(f"{srv.jupiter_url}/tokens/v2/search", params={"query": jup_only.mint})).json()
    assert [i["id"] for i in jup] == [jup_only.mint]
    ds_only = tracked(m, lambda t: not t.jup_known)
    assert (await client.get(f"{srv.jupiter_url}/tokens/v2/search", params={"query": ds_only.mint})).json() == []
    assert (await client.get(f"{srv.dexscreener_url}/tokens/v1/solana/{ds_only.mint}")).json()


# ------------------------------------------------------------------------------------------------
# discovery, ticking
# ------------------------------------------------------------------------------------------------
async def test_discovery_first_calls_cover_most_tokens(srv: RunningMarket, client: httpx.AsyncClient) -> None:
    m = srv.market
    found: set[str] = set()
    for path in ("/token-profiles/latest/v1", "/token-boosts/latest/v1", "/token-boosts/top/v1"):
        found |= {i["tokenAddress"] for i in (await client.get(srv.dexscreener_url + path)).json()
                  if i["chainId"] == "solana"}
    for path in ("/tokens/v2/toptrending/1h", "/tokens/v2/toptraded/1h", "/tokens/v2/toporganicscore/1h"):
        found |= {i["id"] for i in (await client.get(srv.jupiter_url + path, params={"limit": 100})).json()}
    found |= {i["id"] for i in (await client.get(srv.jupiter_url + "/tokens/v2/recent")).json()}
    for path in ("/networks/solana/trending_pools", "/networks/solana/new_pools"):
        body = (await client.get(srv.geckoterminal_url + path, params={"page": 1})).json()
        for p in body["data"]:  # a pool oriented the other way round is its quote token's
            base, quote = (p["relationships"][side]["data"]["id"].removeprefix("solana_")
                           for side in ("base_token", "quote_token"))
            found.add(quote if base in (WSOL_MINT, USDC_MINT) and quote not in (WSOL_MINT, USDC_MINT) else base)
    initial = {t.mint for t in m.tokens[:300]}
    assert len(found & initial) >= 220
    assert found <= m.discoverable() | {WSOL_MINT}
    assert len(m.discoverable() & initial) >= 270


async def test_tick_changes_prices_over_http(srv: RunningMarket, client: httpx.AsyncClient) -> None:
    m = srv.market
    mints = [t.mint for t in m.tokens[:50]]
    before = (await client.get(f"{srv.jupiter_url}/price/v3", params={"ids": ",".join(mints)})).json()
    r = await client.post(f"{srv.base_url}/_control/tick", json={"n": 2})
    assert r.json()["tick"] == 2
    after = (await client.get(f"{srv.jupiter_url}/price/v3", params={"ids": ",".join(mints)})).json()
    changed = [k for k in before if k in after and before[k]["usdPrice"] != after[k]["usdPrice"]]
    assert len(changed) > 40


async def test_background_ticking(client: httpx.AsyncClient) -> None:
    async with serve_market(Market(seed=2, n_tokens=60), tick_interval=0.02) as running:
        await wait_for(lambda: running.market.tick_no >= 3, timeout=3.0, message="three ticks")
        state = (await client.get(f"{running.base_url}/_control/state")).json()
        assert state["tick"] >= 3


# ------------------------------------------------------------------------------------------------
# faults and the request log
# ------------------------------------------------------------------------------------------------
async def test_faults_and_recovery(srv: RunningMarket, client: httpx.AsyncClient) -> None:
    m = srv.market
    urls = {
        "dexscreener": f"{srv.dexscreener_url}/token-profiles/latest/v1",
        "geckoterminal": f"{srv.geckoterminal_url}/networks/solana/new_pools",
        "jupiter": f"{srv.jupiter_url}/tokens/v2/recent",
    }
    for source, url in urls.items():
        m.faults.set(source, "429", retry_after=7)
        r = await client.get(url)
        assert r.status_code == 429 and r.headers["retry-after"] == "7"
        if source == "geckoterminal":
            assert r.json()["status"]["error_code"] == 429
        if source == "jupiter":
            assert "x-ratelimit-remaining" in r.headers

        m.faults.set(source, "html")
        r = await client.get(url)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")

        m.faults.set(source, "500")
        assert (await client.get(url)).status_code == 500

        m.faults.set(source, "truncated")
        r = await client.get(url)
        assert r.status_code == 200
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(r.content)

        m.faults.clear(source)
        r = await client.get(url)
        assert r.status_code == 200 and isinstance(r.json(), (list, dict))

    # the log holds every request, faulted ones included
    statuses = [s for _, _, s in m.requests["geckoterminal"]]
    assert statuses == [429, 200, 500, 200, 200]
    assert m.requests["geckoterminal"][0][1] == "/networks/solana/new_pools"

    # rate and times
    m.faults.set("jupiter", "500", rate=0.0)
    assert (await client.get(urls["jupiter"])).status_code == 200
    m.faults.set("jupiter", "500", times=1)
    assert (await client.get(urls["jupiter"])).status_code == 500
    assert (await client.get(urls["jupiter"])).status_code == 200
    with pytest.raises(ValueError):
        m.faults.set("jupiter", "teapot")


async def test_slow_fault(srv: RunningMarket, client: httpx.AsyncClient) -> None:
    srv.market.faults.set("dexscreener", "slow", delay=0.3)
    start = time.monotonic()
    r = await client.get(f"{srv.dexscreener_url}/token-boosts/top/v1")
    assert r.status_code == 200 and time.monotonic() - start >= 0.29
    with pytest.raises(httpx.ReadTimeout):
        await client.get(f"{srv.dexscreener_url}/token-boosts/top/v1", timeout=0.05)
    srv.market.faults.clear()


async def test_control_endpoints(srv: RunningMarket, client: httpx.AsyncClient) -> None:
    ctl = srv.control_url
    r = await client.post(f"{ctl}/faults", json={"source": "geckoterminal", "kind": "429", "retry_after": 3})
    assert r.status_code == 200 and r.json()["faults"]["geckoterminal"]["kind"] == "429"
    r = await client.get(f"{srv.geckoterminal_url}/networks/solana/trending_pools")
    assert r.status_code == 429 and r.headers["retry-after"] == "3"
    assert (await client.post(f"{ctl}/faults", json={"source": "nope", "kind": "429"})).status_code == 400
    r = await client.post(f"{ctl}/faults", json={"source": "geckoterminal", "kind": None})
    assert r.json()["faults"] == {}
    assert (await client.get(f"{srv.geckoterminal_url}/networks/solana/trending_pools")).status_code == 200
    counts = (await client.get(f"{ctl}/requests")).json()
    assert counts["geckoterminal"]["total"] == 2
    assert counts["geckoterminal"]["by_status"] == {"429": 1, "200": 1}
    assert counts["dexscreener"]["total"] == 0

    # an enforced budget answers real 429s past the limit (DexScreener's pairs/tokens group; its feeds are
    # another group, 60/min)
    srv.market.rate_limits["dexscreener"] = 2
    pairs = f"{srv.dexscreener_url}/tokens/v1/solana/{srv.market.tokens[0].mint}"
    codes = [(await client.get(pairs)).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    assert (await client.get(f"{srv.dexscreener_url}/token-boosts/top/v1")).status_code == 200
