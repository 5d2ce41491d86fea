"""app.sources.geckoterminal: request builders and parsers on real-shaped payloads (upstreams.md §2)."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.model import WSOL_MINT, PoolObservation, TokenInfo, WindowStats
from app.sources import geckoterminal as gt
from app.sources.values import UpstreamFormatError
from tests.fuzzing import json_values, mutate
from tests.samples import MINT, NOW, OTHER, POOL, load, mint

OTHER_POOL = "3pQrPoo1CatUSDC22222222222222222222222222"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
DAY = 86400




def pools_doc() -> dict:
    return load("geckoterminal_pools.json")


def first_attrs(doc: dict) -> dict:
    return doc["data"][0]["attributes"]


def extra_pool(doc: dict, pool: str, base: str, quote: str, dex: str = "raydium", **attrs) -> dict:
    """Append a copy of the first pool with other addresses (tokens not in `included`)."""
    item = copy.deepcopy(doc["data"][0])
    item["id"] = f"solana_{pool}"
    item["attributes"]["address"] = pool
    item["attributes"].update(attrs)
    item["relationships"]["base_token"]["data"]["id"] = f"solana_{base}"
    item["relationships"]["quote_token"]["data"]["id"] = f"solana_{quote}"
    item["relationships"]["dex"]["data"]["id"] = dex
    doc["data"].append(item)
    return item


# --- requests ---------------------------------------------------------------------------------------


def test_constants():
    assert gt.BATCH == 30
    assert gt.NETWORK == "solana"
    assert gt.INCLUDE == "base_token,quote_token,dex"
    assert gt.HEADERS == {"Accept": "application/json;version=20230302"}


def test_discovery_requests():
    assert gt.trending_request() == (
        "/networks/solana/trending_pools",
        {"include": "base_token,quote_token,dex", "page": 1, "duration": "1h"},
    )
    assert gt.trending_request(3, "5m")[1] == {"include": gt.INCLUDE, "page": 3, "duration": "5m"}
    assert gt.new_pools_request(2) == ("/networks/solana/new_pools", {"include": gt.INCLUDE, "page": 2})
    with pytest.raises(ValueError):
        gt.trending_request(1, "7d")
    with pytest.raises(ValueError):
        gt.new_pools_request(0)


def test_batch_requests():
    assert gt.pools_multi_request([POOL, OTHER_POOL]) == (
        f"/networks/solana/pools/multi/{POOL},{OTHER_POOL}",
        {"include": gt.INCLUDE},
    )
    assert gt.tokens_multi_request([MINT]) == (f"/networks/solana/tokens/multi/{MINT}", {"include": "top_pools"})
    assert gt.simple_price_request([MINT, WSOL_MINT]) == (
        f"/simple/networks/solana/token_price/{MINT},{WSOL_MINT}", {})


@pytest.mark.parametrize("build", [gt.pools_multi_request, gt.tokens_multi_request, gt.simple_price_request])
def test_batch_caps(build):
    path, _ = build([mint(i) for i in range(30)])
    assert path.rsplit("/", 1)[1].count(",") == 29
    with pytest.raises(ValueError):
        build([mint(i) for i in range(31)])
    with pytest.raises(ValueError):
        build([])
    with pytest.raises(ValueError):
        build(["solana_" + MINT])


def test_ohlcv_request_names_the_token_by_mint_and_keeps_empty_days():
    assert gt.ohlcv_request(POOL, MINT) == (
        f"/networks/solana/pools/{POOL}/ohlcv/day",
        {"aggregate": 1, "limit": 8, "currency": "usd", "token": MINT, "include_empty_intervals": "true"},
    )
    assert gt.ohlcv_request(POOL, MINT, days=30)[1]["limit"] == 30
    with pytest.raises(ValueError):
        gt.ohlcv_request(POOL, MINT, days=0)
    with pytest.raises(ValueError):
        gt.ohlcv_request("../etc", MINT)
    with pytest.raises(ValueError):
        gt.ohlcv_request(POOL, "base")  # never `base`: the pool may be oriented the other way round


# --- pools ------------------------------------------------------------------------------------------


def test_parse_pools_full_example():
    result = gt.parse_pools(pools_doc(), NOW)
    assert result.skipped == 0
    assert result == [
        PoolObservation(
            source="geckoterminal",
            pool_address=POOL,
            base_address=MINT,
            observed_at=NOW,
            base_name="Doge Wif Laser",
            base_symbol="DWL",
            quote_address=WSOL_MINT,
            quote_symbol="SOL",
            protocol="Pump.fun",
            price_usd=0.0006098,
            price_native=0.00000412,
            liquidity_usd=61234.12,
            market_cap_usd=None,
            fdv_usd=609800.1,
            created_at=1767225600.0,
            image_url="https://cdn.example/dwl.png",
            stats={
                "5m": WindowStats(3120.5, 1.8, 41, 22),
                "1h": WindowStats(48211.9, -4.2, 510, 380),
                "6h": WindowStats(210334.2, 12.5, 2210, 1900),
                "24h": WindowStats(903112.7, 88.1, 8123, 7011),
            },
        )
    ]


def test_parse_pools_single_object_data():
    doc = pools_doc()
    doc["data"] = doc["data"][0]
    assert [o.pool_address for o in gt.parse_pools(doc, NOW)] == [POOL]


def test_parse_pools_without_included_takes_mint_from_id():
    doc = pools_doc()
    del doc["included"]
    obs = gt.parse_pools(doc, NOW)[0]
    assert obs.base_address == MINT and obs.quote_address == WSOL_MINT
    assert obs.base_name is None and obs.base_symbol is None and obs.image_url is None


def test_parse_pools_fresh_pumpfun_nulls_and_negative_reserve():
    doc = pools_doc()
    attrs = first_attrs(doc)
    attrs.update(
        base_token_price_native_currency=None,
        base_token_price_quote_token=None,
        reserve_in_usd="-1234.5",
        fdv_usd="abc",
        market_cap_usd="NaN",
        pool_created_at=None,
    )
    obs = gt.parse_pools(doc, NOW)[0]
    assert obs.price_native is None
    assert obs.liquidity_usd is None
    assert obs.fdv_usd is None and obs.market_cap_usd is None and obs.created_at is None
    assert obs.price_usd == 0.0006098  # the rest of the pool is still read


@pytest.mark.parametrize(("raw", "expected"), [
    ("2026-01-01T00:00:00+00:00", 1767225600.0),
    ("2026-01-01T00:00:00", 1767225600.0),
    ("1900-01-01T00:00:00Z", None),
    ("9999-12-31T00:00:00Z", None),
    ("yesterday", None),
])
def test_parse_pools_created_at(raw, expected):
    doc = pools_doc()
    first_attrs(doc)["pool_created_at"] = raw
    assert gt.parse_pools(doc, NOW)[0].created_at == expected


def test_parse_pools_missing_and_partial_windows():
    doc = pools_doc()
    attrs = first_attrs(doc)
    del attrs["volume_usd"]["h6"], attrs["price_change_percentage"]["h6"], attrs["transactions"]["h6"]
    attrs["volume_usd"]["h1"] = None
    attrs["transactions"]["h1"] = None
    del attrs["price_change_percentage"]
    obs = gt.parse_pools(doc, NOW)[0]
    assert set(obs.stats) == {"5m", "24h"}  # m15/m30 ignored; h1 has nothing left; h6 absent
    assert obs.stats["5m"] == WindowStats(3120.5, None, 41, 22)


def test_parse_pools_bad_items_skipped_and_counted():
    doc = pools_doc()
    good = doc["data"][0]
    eth = copy.deepcopy(good)
    eth["id"] = "eth_0x0d4a11d5eeaac28ec3f61d100daf4d40471f1852"
    eth["attributes"]["address"] = "0x0d4a11d5eeaac28ec3f61d100daf4d40471f1852"
    no_base = copy.deepcopy(good)
    no_base["id"] = f"solana_{OTHER_POOL}"
    no_base["attributes"]["address"] = OTHER_POOL
    del no_base["relationships"]["base_token"]
    bad_address = copy.deepcopy(good)
    bad_address["id"] = "solana_nope"
    bad_address["attributes"]["address"] = "nope"
    doc["data"] = ["junk", None, eth, no_base, bad_address, {"type": "token", "id": f"solana_{MINT}"}, good]
    result = gt.parse_pools(doc, NOW)
    assert [o.pool_address for o in result] == [POOL]
    assert result.skipped == 6


def test_parse_pools_empty_and_null_data():
    assert gt.parse_pools({"data": []}, NOW) == []
    assert gt.parse_pools({"data": None}, NOW) == []


@pytest.mark.parametrize(
    "payload",
    [
        "<html><body>Cloudflare</body></html>",
        [],
        {"errors": [{"status": "404", "title": "Not Found"}]},
        {"data": "x"},
        None,
    ],
)
def test_parse_pools_wrong_top_level(payload):
    with pytest.raises(UpstreamFormatError):
        gt.parse_pools(payload, NOW)


@pytest.mark.parametrize(
    ("dex", "expected"),
    [
        ("pump-fun", "Pump.fun"),
        ("pumpswap", "PumpSwap"),
        ("raydium", "Raydium"),
        ("raydium-clmm", "Raydium CLMM"),
        ("meteora", "Meteora"),
        ("meteora-dlmm", "Meteora DLMM"),
        ("orca", "Orca"),
        ("some_new_dex", "Some New Dex"),
    ],
)
def test_parse_pools_protocol(dex, expected):
    doc = pools_doc()
    doc["data"][0]["relationships"]["dex"]["data"]["id"] = dex
    assert gt.parse_pools(doc, NOW)[0].protocol == expected


def test_parse_pools_placeholder_image_is_none():
    doc = pools_doc()
    doc["included"][0]["attributes"]["image_url"] = "missing.png"
    assert gt.parse_pools(doc, NOW)[0].image_url is None


def test_sol_price_from_pools_median_of_wsol_quoted():
    doc = pools_doc()
    extra_pool(doc, OTHER_POOL, OTHER, WSOL_MINT, quote_token_price_usd="148.50")
    extra_pool(doc, mint(1), mint(2), WSOL_MINT, quote_token_price_usd="150.00")
    extra_pool(doc, mint(3), mint(4), USDC, quote_token_price_usd="1.0")  # not a SOL price
    assert gt.sol_price_from_pools(doc) == 148.50  # median of 148.02, 148.50, 150.00


def reversed_doc() -> dict:
    """The sample pool as GeckoTerminal may orient it: SOL as base, the token as quote."""
    doc = pools_doc()
    item = doc["data"][0]
    a = item["attributes"]
    a.update(name="SOL / DWL", base_token_price_usd="148.02", quote_token_price_usd="0.0006098",
             base_token_price_quote_token="242718.4", quote_token_price_base_token="0.00000412",
             fdv_usd="88000000000.0", market_cap_usd="70000000000.0")
    rel = item["relationships"]
    rel["base_token"], rel["quote_token"] = rel["quote_token"], rel["base_token"]
    return doc


def test_a_pool_oriented_the_other_way_round_is_the_quote_tokens_pool():
    obs = gt.parse_pools(reversed_doc(), NOW)[0]
    normal = gt.parse_pools(pools_doc(), NOW)[0]
    assert obs.base_address == MINT and obs.quote_address == WSOL_MINT and obs.pool_address == POOL
    assert (obs.base_name, obs.base_symbol, obs.image_url) == (normal.base_name, normal.base_symbol,
                                                               normal.image_url)
    assert obs.price_usd == 0.0006098 and obs.price_native == 0.00000412 and obs.liquidity_usd == 61234.12
    # GeckoTerminal's market cap, FDV and price changes there are SOL's: unknown for the token.
    assert obs.market_cap_usd is None and obs.fdv_usd is None
    for window, stats in normal.stats.items():  # a buy of SOL is a sell of the token
        assert obs.stats[window] == WindowStats(stats.volume_usd, None, stats.sells, stats.buys)
    # SOL/USDC stays SOL's pool (neither side is a meme token), and is a SOL price.
    doc = pools_doc()
    extra_pool(doc, OTHER_POOL, WSOL_MINT, USDC, base_token_price_usd="149.0")
    assert gt.parse_pools(doc, NOW)[1].base_address == WSOL_MINT
    assert gt.sol_price_from_pools(reversed_doc()) == 148.02


def test_top_pools_included_in_a_tokens_answer_are_read():
    doc = load("geckoterminal_tokens_multi.json")
    pool = pools_doc()["data"][0]
    doc["included"] = [pool, {"id": "pump-fun", "type": "dex", "attributes": {"name": "Pump.fun"}}]
    [obs] = gt.parse_top_pools(doc, NOW)
    expected = gt.parse_pools({"data": [pool]}, NOW)[0]  # no included tokens: mints from the ids
    assert obs == expected and obs.base_address == MINT and obs.price_usd == 0.0006098
    flipped = reversed_doc()["data"][0]
    doc["included"] = [flipped]
    assert gt.parse_top_pools(doc, NOW)[0].base_address == MINT
    assert gt.parse_top_pools(load("geckoterminal_tokens_multi.json"), NOW) == []
    with pytest.raises(UpstreamFormatError):
        gt.parse_top_pools({"errors": []}, NOW)


def test_sol_price_from_pools_none_without_sol_quote():
    doc = pools_doc()
    doc["data"][0]["relationships"]["quote_token"]["data"]["id"] = f"solana_{USDC}"
    doc["included"] = []
    assert gt.sol_price_from_pools(doc) is None
    assert gt.sol_price_from_pools({"data": []}) is None


# --- tokens -----------------------------------------------------------------------------------------


def test_parse_tokens_full_example():
    result = gt.parse_tokens(load("geckoterminal_tokens_multi.json"), NOW)
    assert result.skipped == 0
    assert result == [
        TokenInfo(
            source="geckoterminal",
            address=MINT,
            observed_at=NOW,
            name="Doge Wif Laser",
            symbol="DWL",
            image_url="https://cdn.example/dwl.png",
            price_usd=0.0006098,
            liquidity_usd=30617.0,
            market_cap_usd=None,
            fdv_usd=609800.1,
            stats={"24h": WindowStats(volume_usd=903112.7)},
            top_pool=POOL,
        )
    ]


def test_parse_tokens_single_and_sparse():
    doc = load("geckoterminal_tokens_multi.json")
    item = doc["data"][0]
    item["attributes"].update(volume_usd={"h24": None}, price_usd="abc", total_reserve_in_usd="-3")
    del item["attributes"]["address"]
    item["relationships"]["top_pools"]["data"] = []
    info = gt.parse_tokens({"data": item}, NOW)[0]
    assert info.address == MINT  # from the id
    assert info.stats == {} and info.price_usd is None and info.liquidity_usd is None
    assert info.top_pool is None


def test_parse_tokens_bad_items_counted():
    doc = load("geckoterminal_tokens_multi.json")
    good = doc["data"][0]
    doc["data"] = [good, 7, {"id": "solana_bad", "type": "token", "attributes": {}}, {"id": "eth_0xabc"}]
    result = gt.parse_tokens(doc, NOW)
    assert [t.address for t in result] == [MINT]
    assert result.skipped == 3


def test_parse_tokens_wrong_top_level():
    with pytest.raises(UpstreamFormatError):
        gt.parse_tokens([load("geckoterminal_tokens_multi.json")["data"][0]], NOW)


# --- simple price -----------------------------------------------------------------------------------


def test_parse_simple_prices():
    doc = load("geckoterminal_simple_price.json")
    prices = doc["data"]["attributes"]["token_prices"]
    prices[WSOL_MINT] = "148.02"
    prices[OTHER] = None
    prices["not-a-mint"] = "1.0"
    assert gt.parse_simple_prices(doc) == {MINT: 0.0006098, WSOL_MINT: 148.02}


@pytest.mark.parametrize("payload", ["<html>", {"data": {"attributes": {}}}, {"data": []}, []])
def test_parse_simple_prices_wrong_top_level(payload):
    with pytest.raises(UpstreamFormatError):
        gt.parse_simple_prices(payload)


# --- OHLCV ------------------------------------------------------------------------------------------


def test_parse_ohlcv_rows_in_order_sent():
    rows = gt.parse_ohlcv(load("geckoterminal_ohlcv_day.json"))
    assert len(rows) == 8 and rows.skipped == 0
    assert rows[0] == (1767139200.0, 0.0005, 0.00066, 0.00049, 0.00061, 100000.0)
    assert all(isinstance(v, float) for v in rows[0])
    assert [r[0] for r in rows] == sorted((r[0] for r in rows), reverse=True)


def test_parse_ohlcv_malformed_rows_skipped():
    doc = load("geckoterminal_ohlcv_day.json")
    good = doc["data"]["attributes"]["ohlcv_list"][0]
    doc["data"]["attributes"]["ohlcv_list"] = [
        good,
        [1767052800, 1, 2, 3],
        [1767052800, "NaN", 2, 1, 2, 5],
        ["x", 1, 2, 1, 2, 5],
        [1767052800, 1, 2, 1, 2, -5],
        "row",
        None,
    ]
    rows = gt.parse_ohlcv(doc)
    assert rows == [tuple(float(v) for v in good)]
    assert rows.skipped == 6


@pytest.mark.parametrize("payload", ["<html>", {"data": {"attributes": {"ohlcv_list": {}}}}, {"data": None}, []])
def test_parse_ohlcv_wrong_top_level(payload):
    with pytest.raises(UpstreamFormatError):
        gt.parse_ohlcv(payload)


def candles(n: int, newest: float) -> list[tuple[float, ...]]:
    """n daily candles, newest first: open 1+i, close 2+i, volume 10*(i+1) for i = age in days."""
    return [(newest - i * DAY, 1.0 + i, 9.0, 0.5, 2.0 + i, 10.0 * (i + 1)) for i in range(n)]


def test_seven_day_from_eight_candles():
    today = 1767139200.0  # 2025-12-31 00:00 UTC
    rows = candles(8, today)
    stats = gt.seven_day(rows, now=today + 3600)
    assert stats is not None
    assert stats.volume_usd == pytest.approx(10 + 20 + 30 + 40 + 50 + 60 + 70)
    # latest close 2.0 against the 7th candle's open 7.0
    assert stats.price_change == pytest.approx((2.0 / 7.0 - 1) * 100)
    assert stats.buys is None and stats.sells is None


def test_seven_day_real_payload():
    rows = gt.parse_ohlcv(load("geckoterminal_ohlcv_day.json"))
    stats = gt.seven_day(rows, now=1767139200.0 + 60)
    assert stats.volume_usd == pytest.approx(sum(100000.0 + i * 1000 for i in range(7)))
    assert stats.price_change == pytest.approx((0.00061 / 0.00056 - 1) * 100)


def test_seven_day_none_when_short_or_stale():
    today = 1767139200.0
    assert gt.seven_day(candles(6, today), now=today + 10) is None
    assert gt.seven_day([], now=today) is None
    # a week of candles that ended ten days ago does not describe the last seven days
    assert gt.seven_day(candles(8, today - 10 * DAY), now=today + 10) is None
    # a gap: 7 candles spanning 8 days
    gapped = [row for row in candles(8, today) if row[0] != today - 3 * DAY]
    assert gt.seven_day(gapped, now=today + 10) is None


def test_seven_day_order_independent():
    today = 1767139200.0
    rows = candles(7, today)
    assert gt.seven_day(list(reversed(rows)), now=today + 5) == gt.seven_day(rows, now=today + 5)


def test_seven_day_zero_open():
    today = 1767139200.0
    rows = candles(7, today)
    rows[-1] = (rows[-1][0], 0.0, 1.0, 0.0, 1.0, 70.0)
    stats = gt.seven_day(rows, now=today)
    assert stats.price_change is None and stats.volume_usd == pytest.approx(280.0)


# --- fuzz: nothing but UpstreamFormatError ever escapes ----------------------------------------------



JSON = json_values([MINT, POOL, f"solana_{MINT}", f"solana_{WSOL_MINT}", "eth_0x1", "NaN", "-1", "pump-fun"])



@settings(max_examples=300, deadline=None)
@given(st.data())
def test_fuzz_parsers_raise_only_format_errors(data):
    names = [
        "geckoterminal_pools.json",
        "geckoterminal_tokens_multi.json",
        "geckoterminal_simple_price.json",
        "geckoterminal_ohlcv_day.json",
    ]
    payload = mutate(data.draw, load(data.draw(st.sampled_from(names))), JSON)
    for parse in (
        lambda p: gt.parse_pools(p, NOW),
        gt.sol_price_from_pools,
        lambda p: gt.parse_tokens(p, NOW),
        lambda p: gt.parse_top_pools(p, NOW),
        gt.parse_simple_prices,
        gt.parse_ohlcv,
    ):
        try:
            result = parse(payload)
        except UpstreamFormatError:
            continue
        if isinstance(result, list):
            assert result.skipped >= 0
    try:
        rows = gt.parse_ohlcv(payload)
    except UpstreamFormatError:
        return
    gt.seven_day(rows, NOW)
