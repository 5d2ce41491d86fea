"""app.sources.jupiter: request builders and parsers on real-shaped payloads (upstreams.md §3)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.model import WSOL_MINT, TokenInfo, WindowStats
from app.sources import jupiter as jup
from app.sources.values import UpstreamFormatError
from tests.fuzzing import json_values, mutate
from tests.samples import MINT, NOW, OTHER, POOL, load, mint

FIRST_POOL = "Poo1AddrDWLFirst1111111111111111111111111"



def token(**changes) -> dict:
    item = load("jupiter_tokens_v2.json")[0]
    item.update(changes)
    return item



# --- requests ---------------------------------------------------------------------------------------


def test_constants():
    assert jup.PRICE_BATCH == 50
    assert jup.SEARCH_BATCH == 100
    assert jup.DISCOVERY_CATEGORIES == ("toptrending", "toptraded", "toporganicscore")
    assert jup.INTERVALS == ("5m", "1h", "6h", "24h")


def test_headers():
    assert jup.headers(None) == {}
    assert jup.headers("") == {}
    assert jup.headers("k-123") == {"x-api-key": "k-123"}


def test_top_and_recent_requests():
    assert jup.top_request("toptrending") == ("/tokens/v2/toptrending/1h", {"limit": 100})
    assert jup.top_request("toporganicscore", "5m", 50) == ("/tokens/v2/toporganicscore/5m", {"limit": 50})
    assert jup.recent_request() == ("/tokens/v2/recent", {})
    with pytest.raises(ValueError):
        jup.top_request("topmeme")
    with pytest.raises(ValueError):
        jup.top_request("toptraded", "7d")
    with pytest.raises(ValueError):
        jup.top_request("toptraded", "1h", 101)


def test_search_request_and_cap():
    assert jup.search_request([MINT, OTHER]) == ("/tokens/v2/search", {"query": f"{MINT},{OTHER}"})
    path, params = jup.search_request([mint(i) for i in range(100)])
    assert params["query"].count(",") == 99
    with pytest.raises(ValueError):
        jup.search_request([mint(i) for i in range(101)])
    with pytest.raises(ValueError):
        jup.search_request([])


def test_price_request_and_cap():
    assert jup.price_request([MINT, WSOL_MINT]) == ("/price/v3", {"ids": f"{MINT},{WSOL_MINT}"})
    assert jup.price_request([mint(i) for i in range(50)])[1]["ids"].count(",") == 49
    with pytest.raises(ValueError):
        jup.price_request([mint(i) for i in range(51)])
    with pytest.raises(ValueError):
        jup.price_request(["SOL"])


# --- tokens v2 --------------------------------------------------------------------------------------


def test_parse_tokens_full_example():
    result = jup.parse_tokens(load("jupiter_tokens_v2.json"), NOW)
    assert result.skipped == 0
    assert result == [
        TokenInfo(
            source="jupiter",
            address=MINT,
            observed_at=NOW,
            name="Doge Wif Laser",
            symbol="DWL",
            image_url="https://cdn.example/dwl.png",
            price_usd=0.0006101,
            liquidity_usd=61234.1,
            market_cap_usd=609200.0,
            fdv_usd=609800.0,
            created_at=1767225605.0,  # firstPool.createdAt, not the token's createdAt
            stats={
                "5m": WindowStats(pytest.approx(3120.5), 1.8, 41, 22),
                "1h": WindowStats(pytest.approx(48211.9), -4.2, 510, 380),
                "6h": WindowStats(pytest.approx(210334.2), 12.5, 2210, 1900),
                "24h": WindowStats(pytest.approx(903112.7), 88.1, 8123, 7011),
            },
            top_pool=POOL,
            protocol=None,  # graduated to its PumpSwap pool: pump.fun is where it came from
        )
    ]


def test_parse_tokens_null_stats_windows_absent():
    info = jup.parse_tokens([token(stats5m=None, stats6h={}, stats1h={"priceChange": None})], NOW)[0]
    assert set(info.stats) == {"24h"}


def test_parse_tokens_volume_needs_both_sides():
    item = token()
    item["stats5m"]["sellVolume"] = None
    item["stats1h"]["buyVolume"] = "abc"
    item["stats6h"]["buyVolume"] = "100.5"  # a string still reads as a number
    info = jup.parse_tokens([item], NOW)[0]
    assert info.stats["5m"].volume_usd is None and info.stats["5m"].buys == 41
    assert info.stats["1h"].volume_usd is None
    assert info.stats["6h"].volume_usd == pytest.approx(100.5 + 100334.2)


def test_parse_tokens_nullable_everything():
    item = {"id": MINT, "usdPrice": None, "mcap": -1, "fdv": "NaN", "liquidity": None, "firstPool": None,
            "audit": None, "launchpad": None, "graduatedPool": None, "createdAt": "2026-01-01T00:00:00Z"}
    info = jup.parse_tokens([item], NOW)[0]
    assert info == TokenInfo(source="jupiter", address=MINT, observed_at=NOW, created_at=1767225600.0)


def test_parse_tokens_created_at_falls_back_to_token_creation():
    item = token(firstPool={"id": FIRST_POOL, "createdAt": "garbage"})
    assert jup.parse_tokens([item], NOW)[0].created_at == 1767225600.0
    assert jup.parse_tokens([token(firstPool=None, createdAt=None)], NOW)[0].created_at is None


def test_parse_tokens_top_pool_falls_back_to_first_pool():
    assert jup.parse_tokens([token(graduatedPool=None)], NOW)[0].top_pool == FIRST_POOL
    assert jup.parse_tokens([token(graduatedPool=None, firstPool=None)], NOW)[0].top_pool is None


@pytest.mark.parametrize(("launchpad", "expected"), [("pump.fun", "Pump.fun"), ("met-dbc", "Met Dbc"), (None, None)])
def test_parse_tokens_protocol_from_launchpad_before_graduation(launchpad, expected):
    item = token(launchpad=launchpad, graduatedPool=None, graduatedAt=None)
    assert jup.parse_tokens([item], NOW)[0].protocol == expected


@pytest.mark.parametrize("graduated", [{}, {"graduatedPool": None}, {"graduatedAt": None}])
def test_a_graduated_token_has_no_launchpad_protocol(graduated):
    """After graduation the token trades on its graduated pool: its launchpad is history, not its DEX."""
    assert jup.parse_tokens([token(launchpad="pump.fun", **graduated)], NOW)[0].protocol is None


def test_parse_tokens_extra_keys_ignored_and_bad_items_counted():
    good = token(ctLikes=5, brandNewField={"x": 1})
    result = jup.parse_tokens([good, "junk", None, {"id": "bad"}, {"name": "no id"}, good], NOW)
    assert [t.address for t in result] == [MINT]
    assert result.skipped == 4


@pytest.mark.parametrize("payload", ["<html>", {"tokens": []}, None, {"data": []}])
def test_parse_tokens_wrong_top_level(payload):
    with pytest.raises(UpstreamFormatError):
        jup.parse_tokens(payload, NOW)


# --- price v3 ---------------------------------------------------------------------------------------


def test_parse_prices_flat_map():
    result = jup.parse_prices(load("jupiter_price_v3.json"), observed_at=NOW)
    assert result.skipped == 0
    by_mint = {info.address: info for info in result}
    assert by_mint[MINT] == TokenInfo(
        source="jupiter",
        address=MINT,
        observed_at=NOW,
        price_usd=0.0006101,
        liquidity_usd=61234.1,
        stats={"24h": WindowStats(price_change=88.4)},
    )
    assert by_mint[WSOL_MINT].price_usd == 148.02
    assert by_mint[WSOL_MINT].stats["24h"].price_change == -1.7


def test_parse_prices_nulls_and_bad_entries():
    payload = load("jupiter_price_v3.json")
    payload[MINT]["priceChange24h"] = None
    payload[MINT]["liquidity"] = -5
    payload["not-a-mint"] = {"usdPrice": 1.0}
    payload[OTHER] = "1.0"
    result = jup.parse_prices(payload, NOW)
    assert result.skipped == 2
    info = {i.address: i for i in result}[MINT]
    assert info.stats == {} and info.liquidity_usd is None and info.price_usd == 0.0006101


def test_parse_prices_empty_map():
    result = jup.parse_prices({}, NOW)
    assert result == [] and result.skipped == 0


def test_parse_prices_v2_shape_raises():
    v2 = {"data": {MINT: {"id": MINT, "type": "derivedPrice", "price": "0.0006101"}}, "timeTaken": 0.003}
    with pytest.raises(UpstreamFormatError):
        jup.parse_prices(v2, NOW)
    with pytest.raises(UpstreamFormatError):
        jup.parse_prices({"data": {}}, NOW)


@pytest.mark.parametrize("payload", ["<html>", [], None, 1])
def test_parse_prices_wrong_top_level(payload):
    with pytest.raises(UpstreamFormatError):
        jup.parse_prices(payload, NOW)


def test_parse_prices_null_price_is_none_and_an_unpriced_mint_is_absent():
    payload = load("jupiter_price_v3.json")
    payload[WSOL_MINT]["usdPrice"] = None
    prices = {info.address: info.price_usd for info in jup.parse_prices(payload, NOW)}
    assert prices == {MINT: 0.0006101, WSOL_MINT: None}  # OTHER, not in the answer, is not made up


def test_sol_price():
    assert jup.sol_price(load("jupiter_price_v3.json")) == 148.02
    assert jup.sol_price({MINT: {"usdPrice": 1.0}}) is None
    assert jup.sol_price({WSOL_MINT: {"usdPrice": 0}}) is None
    assert jup.sol_price({WSOL_MINT: None}) is None
    with pytest.raises(UpstreamFormatError):
        jup.sol_price({"data": {WSOL_MINT: {"price": "148.02"}}})


# --- fuzz: nothing but UpstreamFormatError ever escapes ----------------------------------------------



JSON = json_values([MINT, POOL, WSOL_MINT, "pump.fun", "NaN", "-1", "2026-01-01T00:00:00Z"])



@settings(max_examples=300, deadline=None)
@given(st.data())
def test_fuzz_parsers_raise_only_format_errors(data):
    name = data.draw(st.sampled_from(["jupiter_tokens_v2.json", "jupiter_price_v3.json"]))
    payload = mutate(data.draw, load(name), JSON)
    for parse in (lambda p: jup.parse_tokens(p, NOW), lambda p: jup.parse_prices(p, NOW), jup.sol_price):
        try:
            result = parse(payload)
        except UpstreamFormatError:
            continue
        if isinstance(result, list):
            assert result.skipped >= 0
            assert all(isinstance(item, TokenInfo) for item in result)
