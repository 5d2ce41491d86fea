"""app.sources.dexscreener: request builders and parsers on real-shaped payloads (upstreams.md §1)."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.model import WSOL_MINT, PoolObservation, WindowStats
from app.sources import dexscreener as ds
from app.sources.values import UpstreamFormatError
from tests.fuzzing import json_values, mutate
from tests.samples import MINT, NOW, OTHER, POOL, load, mint

OTHER_POOL = "3pQrPoo1CatUSDC22222222222222222222222222"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
USDT = "Es9vMFrzaCERmJfrF4H2FYD4KCoNkY11McCe8BenwNYB"



def pair(**changes) -> dict:
    item = copy.deepcopy(load("dexscreener_tokens_v1.json")[0])
    item.update(changes)
    return item



# --- requests ---------------------------------------------------------------------------------------


def test_constants():
    assert ds.BATCH == 30
    assert ds.CHAIN == "solana"
    assert ds.DISCOVERY_PATHS == (
        "/token-profiles/latest/v1",
        "/token-boosts/latest/v1",
        "/token-boosts/top/v1",
    )


def test_tokens_request_path():
    assert ds.tokens_request([MINT, OTHER]) == (f"/tokens/v1/solana/{MINT},{OTHER}", {})


def test_tokens_request_accepts_30_and_rejects_31_or_none():
    path, params = ds.tokens_request([mint(i) for i in range(30)])
    assert path.count(",") == 29 and params == {}
    with pytest.raises(ValueError):
        ds.tokens_request([mint(i) for i in range(31)])
    with pytest.raises(ValueError):
        ds.tokens_request([])


def test_tokens_request_rejects_non_addresses():
    with pytest.raises(ValueError):
        ds.tokens_request([MINT, "not/a/mint"])
    with pytest.raises(ValueError):
        ds.tokens_request(MINT)  # a bare string is not a list of mints


def test_tokens_request_drops_duplicates():
    assert ds.tokens_request([MINT, MINT, OTHER])[0] == f"/tokens/v1/solana/{MINT},{OTHER}"


def test_token_pairs_request():
    assert ds.token_pairs_request(MINT) == (f"/token-pairs/v1/solana/{MINT}", {})


# --- discovery --------------------------------------------------------------------------------------


def test_parse_discovery_profiles_and_boosts():
    assert ds.parse_discovery(load("dexscreener_profiles.json")) == [MINT]
    boosts = ds.parse_discovery(load("dexscreener_boosts.json"))
    assert boosts == [MINT] and boosts.skipped == 0


def test_parse_discovery_skips_other_chains_silently_and_dedups():
    profiles = load("dexscreener_profiles.json")
    base = profiles[0]
    payload = [
        {**base, "chainId": "ethereum", "tokenAddress": "0x6982508145454ce325ddbe47a25d4ec3d2311933"},
        {**base, "chainId": "bsc", "tokenAddress": OTHER},
        base,
        {**base, "tokenAddress": OTHER},
        base,
    ]
    result = ds.parse_discovery(payload)
    assert result == [MINT, OTHER]
    assert result.skipped == 0


def test_parse_discovery_counts_malformed_items():
    base = load("dexscreener_profiles.json")[0]
    payload = [base, "junk", None, {**base, "tokenAddress": "short"}, {"tokenAddress": OTHER}]
    result = ds.parse_discovery(payload)
    assert result == [MINT]
    assert result.skipped == 4


def test_parse_discovery_single_object_as_documented_example():
    assert ds.parse_discovery(load("dexscreener_profiles.json")[0]) == [MINT]


@pytest.mark.parametrize("payload", ["<html>Just a moment...</html>", {"schemaVersion": "1.0.0"}, None, 42])
def test_parse_discovery_wrong_top_level(payload):
    with pytest.raises(UpstreamFormatError):
        ds.parse_discovery(payload)


# --- pairs ------------------------------------------------------------------------------------------


def test_parse_pairs_full_example():
    result = ds.parse_pairs(load("dexscreener_tokens_v1.json"), observed_at=NOW, wanted={MINT})
    assert result.skipped == 0
    assert result == [
        PoolObservation(
            source="dexscreener",
            pool_address=POOL,
            base_address=MINT,
            observed_at=NOW,
            base_name="Doge Wif Laser",
            base_symbol="DWL",
            quote_address=WSOL_MINT,
            quote_symbol="SOL",
            protocol="PumpSwap",
            price_usd=0.0006098,
            price_native=0.00000412,
            liquidity_usd=61234.1,
            market_cap_usd=609800.0,
            fdv_usd=609800.0,
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


def test_parse_pairs_prices_are_strings_and_figures_are_floats():
    obs = ds.parse_pairs([pair(priceUsd="1.5", priceNative="0.01", fdv="2000", marketCap=1000)], NOW)[0]
    assert (obs.price_usd, obs.price_native, obs.fdv_usd, obs.market_cap_usd) == (1.5, 0.01, 2000.0, 1000.0)
    assert isinstance(obs.market_cap_usd, float)


def test_parse_pairs_zero_price_is_kept_as_number():
    assert ds.parse_pairs([pair(priceUsd="0")], NOW)[0].price_usd == 0.0


def test_parse_pairs_nulls_and_missing_blocks():
    item = pair(priceUsd=None, fdv=None, marketCap=None, pairCreatedAt=None, labels=None)
    for key in ("info", "boosts", "liquidity", "txns", "volume", "priceChange"):
        del item[key]
    obs = ds.parse_pairs([item], NOW)[0]
    assert obs.price_usd is None and obs.fdv_usd is None and obs.market_cap_usd is None
    assert obs.created_at is None and obs.image_url is None and obs.liquidity_usd is None
    assert obs.stats == {}
    assert obs.price_native == 0.00000412
    assert obs.protocol == "PumpSwap"


def test_parse_pairs_missing_window_is_absent():
    item = pair()
    del item["volume"]["m5"], item["priceChange"]["m5"], item["txns"]["m5"]
    del item["volume"]["h6"]
    obs = ds.parse_pairs([item], NOW)[0]
    assert set(obs.stats) == {"1h", "6h", "24h"}
    assert obs.stats["6h"] == WindowStats(None, 12.5, 2210, 1900)


def test_parse_pairs_bad_figures_become_none_one_by_one():
    item = pair(priceUsd="NaN", priceNative="abc", fdv=-5, marketCap="1e400")
    item["liquidity"]["usd"] = -100.0
    item["volume"]["h1"] = "abc"
    item["txns"]["h1"] = {"buys": -3, "sells": 2.5}
    item["priceChange"]["h24"] = "NaN"
    obs = ds.parse_pairs([item], NOW)[0]
    assert obs.price_usd is None
    assert obs.price_native is None
    assert obs.fdv_usd is None
    assert obs.market_cap_usd is None
    assert obs.liquidity_usd is None
    assert obs.stats["1h"] == WindowStats(None, -4.2, None, None)
    assert obs.stats["24h"] == WindowStats(903112.7, None, 8123, 7011)
    assert obs.stats["5m"] == WindowStats(3120.5, 1.8, 41, 22)


def test_parse_pairs_created_at_from_milliseconds():
    obs = ds.parse_pairs([pair(pairCreatedAt=1767225600123)], NOW)[0]
    assert obs.created_at == pytest.approx(1767225600.123)


@pytest.mark.parametrize("raw", [1e20, -5, 0, "soon", "1900-01-01T00:00:00Z", True])
def test_parse_pairs_implausible_created_at_is_none(raw):
    assert ds.parse_pairs([pair(pairCreatedAt=raw)], NOW)[0].created_at is None


def test_parse_pairs_quote_side_pair_dropped_not_counted():
    quote_side = pair(pairAddress=OTHER_POOL)
    quote_side["baseToken"] = {"address": OTHER, "name": "Cat Hat", "symbol": "CAT"}
    quote_side["quoteToken"] = {"address": MINT, "name": "Doge Wif Laser", "symbol": "DWL"}
    result = ds.parse_pairs([quote_side, pair()], NOW, wanted={MINT})
    assert [o.pool_address for o in result] == [POOL]
    assert result.skipped == 0
    # without `wanted`, both are pools (each of its own base token)
    assert [o.base_address for o in ds.parse_pairs([quote_side, pair()], NOW)] == [OTHER, MINT]


def test_parse_pairs_bad_items_skipped_and_counted():
    payload = [
        "junk",
        None,
        pair(chainId="ethereum"),
        pair(pairAddress="0xdeadbeef"),
        pair(baseToken={"name": "no address"}),
        pair(),
    ]
    result = ds.parse_pairs(payload, NOW)
    assert [o.pool_address for o in result] == [POOL]
    assert result.skipped == 5


def test_parse_pairs_duplicate_pool_kept_once():
    result = ds.parse_pairs([pair(), pair()], NOW)
    assert len(result) == 1 and result.skipped == 0


def test_parse_pairs_wrapper_and_null_pairs():
    wrapped = {"schemaVersion": "1.0.0", "pairs": [pair()]}
    assert [o.pool_address for o in ds.parse_pairs(wrapped, NOW)] == [POOL]
    empty = ds.parse_pairs({"schemaVersion": "1.0.0", "pairs": None}, NOW)
    assert empty == [] and empty.skipped == 0
    assert ds.parse_pairs({"schemaVersion": "1.0.0", "pair": None}, NOW) == []
    assert [o.pool_address for o in ds.parse_pairs({"schemaVersion": "1.0.0", "pair": pair()}, NOW)] == [POOL]


@pytest.mark.parametrize(
    "payload",
    [
        "<!DOCTYPE html><html>403</html>",
        {"schemaVersion": "1.0.0"},
        {"schemaVersion": "1.0.0", "pairs": "nope"},
        {"pairs": {"a": 1}},
        None,
        3.5,
    ],
)
def test_parse_pairs_wrong_top_level(payload):
    with pytest.raises(UpstreamFormatError):
        ds.parse_pairs(payload, NOW)


@pytest.mark.parametrize(
    ("dex_id", "labels", "expected"),
    [
        ("pumpfun", None, "Pump.fun"),
        ("pumpswap", ["v2"], "PumpSwap"),
        ("raydium", ["CLMM"], "Raydium CLMM"),
        ("raydium", ["CPMM"], "Raydium CPMM"),
        ("raydium", [], "Raydium"),
        ("meteora", ["DLMM"], "Meteora DLMM"),
        ("orca", ["wp"], "Orca"),
        ("lifinity-v2", None, "Lifinity V2"),
        (None, None, None),
    ],
)
def test_parse_pairs_protocol(dex_id, labels, expected):
    assert ds.parse_pairs([pair(dexId=dex_id, labels=labels)], NOW)[0].protocol == expected


def test_pumpfun_zero_liquidity_is_unknown_but_other_zero_kept():
    curve = pair(dexId="pumpfun")
    curve["liquidity"] = {"usd": 0}
    assert ds.parse_pairs([curve], NOW)[0].liquidity_usd is None
    empty = pair(dexId="raydium")
    empty["liquidity"] = {"usd": 0}
    assert ds.parse_pairs([empty], NOW)[0].liquidity_usd == 0.0


# --- SOL/USD ----------------------------------------------------------------------------------------


def sol_pair(pool: str, quote: str, price: str | None, liquidity: float | None) -> dict:
    item = pair(pairAddress=pool, dexId="raydium", priceUsd=price, priceNative=price)
    item["baseToken"] = {"address": WSOL_MINT, "name": "Wrapped SOL", "symbol": "SOL"}
    item["quoteToken"] = {"address": quote, "name": "x", "symbol": "X"}
    item["liquidity"] = {"usd": liquidity} if liquidity is not None else None
    return item


def test_sol_price_is_the_median_over_deep_stable_pairs():
    payload = [
        sol_pair(mint(1), USDC, "147.90", 1_000_000),
        sol_pair(mint(2), USDT, "148.02", 9_000_000),
        sol_pair(mint(4), USDC, "148.50", 5_000_000),
        sol_pair(mint(5), USDC, "120.00", 800_000),  # under a tenth of the deepest: too shallow to count
        sol_pair(mint(3), OTHER, "999.0", 99_000_000),  # not a stable quote
        pair(),  # SOL only as quote: not a SOL price
    ]
    assert ds.sol_price(payload) == 148.02  # median of 147.90, 148.02, 148.50; not the single deepest
    assert ds.sol_price(payload[1:3]) == pytest.approx((148.02 + 148.50) / 2)


def test_sol_price_none_without_stable_pairs():
    assert ds.sol_price([sol_pair(mint(3), OTHER, "999.0", 1e6), pair()]) is None
    assert ds.sol_price([]) is None
    assert ds.sol_price([sol_pair(mint(1), USDC, None, 1e6)]) is None
    assert ds.sol_price({"schemaVersion": "1.0.0", "pairs": None}) is None


def test_sol_price_unknown_liquidity_loses_to_known():
    payload = [sol_pair(mint(1), USDC, "150.0", None), sol_pair(mint(2), USDC, "148.0", 10.0)]
    assert ds.sol_price(payload) == 148.0
    assert ds.sol_price([sol_pair(mint(1), USDC, "150.0", None)]) == 150.0  # no depth known: all count


# --- the answer cap and the two rate-limit groups ------------------------------------------------------


def test_pairs_request_by_pool_address():
    assert ds.pairs_request([POOL, OTHER_POOL]) == (f"/latest/dex/pairs/solana/{POOL},{OTHER_POOL}", {})
    assert ds.pairs_request([mint(i) for i in range(30)])[0].count(",") == 29
    with pytest.raises(ValueError):
        ds.pairs_request([mint(i) for i in range(31)])


def test_read_pairs_counts_pairs_per_mint_on_either_side_and_flags_a_full_answer():
    quoted = pair(pairAddress=mint(40))
    quoted["baseToken"] = {"address": OTHER, "name": "o", "symbol": "O"}
    quoted["quoteToken"] = {"address": MINT, "name": "m", "symbol": "M"}
    answer = ds.read_pairs([pair(), quoted], NOW, wanted={MINT})
    assert [p.pool_address for p in answer.pools] == [POOL]  # only base-side pools are the mint's
    assert answer.per_mint == {MINT: 2} and answer.total == 2 and not answer.possibly_cut
    full = [pair(pairAddress=mint(i)) for i in range(ds.ANSWER_CAP)]
    assert ds.read_pairs(full, NOW, wanted={MINT}).possibly_cut
    wrapped = ds.read_pairs({"schemaVersion": "1.0.0", "pairs": None}, NOW, wanted={MINT})
    assert wrapped.total == 0 and wrapped.per_mint == {} and not wrapped.possibly_cut


def test_rate_groups():
    for path in ds.DISCOVERY_PATHS:
        assert ds.rate_group(path) == ds.LIST_GROUP
    for path in (ds.tokens_request([MINT])[0], ds.token_pairs_request(MINT)[0], ds.pairs_request([POOL])[0],
                 "/latest/dex/search"):
        assert ds.rate_group(path) == "main"
    assert ds.list_group_per_min(300) == 60 and ds.list_group_per_min(3000) == 60
    assert ds.list_group_per_min(150) == 30 and ds.list_group_per_min(1) == 1


# --- fuzz: nothing but UpstreamFormatError ever escapes ----------------------------------------------



JSON = json_values([MINT, POOL, WSOL_MINT, USDC, "solana", "NaN", "-1", "1e400", "pumpfun"])



@settings(max_examples=300, deadline=None)
@given(st.data())
def test_fuzz_parsers_raise_only_format_errors(data):
    payloads = [load("dexscreener_tokens_v1.json") * 2, load("dexscreener_profiles.json")]
    payloads.append({"schemaVersion": "1.0.0", "pairs": payloads[0]})
    payload = mutate(data.draw, data.draw(st.sampled_from(payloads)), JSON)
    for parse in (
        lambda p: ds.parse_pairs(p, NOW),
        lambda p: ds.parse_pairs(p, NOW, wanted={MINT}),
        ds.parse_discovery,
        ds.sol_price,
        lambda p: ds.read_pairs(p, NOW, wanted={MINT, WSOL_MINT, USDC}).pools,
    ):
        try:
            result = parse(payload)
        except UpstreamFormatError:
            continue
        if isinstance(result, list):
            assert result.skipped >= 0
            for item in result:
                assert isinstance(item, (str, PoolObservation))
