"""The merge rules of CONTRACT §2: pools -> one record per mint."""

import pytest

from app.ingest.merge import POOL_TTL_S, TokenState, main_pool, merge
from app.model import WSOL_MINT, PoolObservation, TokenInfo, WindowStats

MINT = "9abcMintAddressXXXXXXXXXXXXXXXXXXXXXXpump"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
SOL = 150.0


def pool(address, source="dexscreener", at=100.0, **kw):
    base = dict(source=source, pool_address=address, base_address=MINT, observed_at=at, base_name="Doge",
                base_symbol="DOGE", quote_address=WSOL_MINT, protocol="PumpSwap")
    base.update(kw)
    return PoolObservation(**base)


def test_main_pool_by_liquidity_gives_price_and_identity_while_volumes_sum():
    state = TokenState(MINT)
    state.add_pool(pool("PoolA", liquidity_usd=1000.0, price_usd=0.002, created_at=1767225600.0,
                        protocol="Raydium", market_cap_usd=2e6, fdv_usd=3e6,
                        stats={"24h": WindowStats(100.0, 5.0, 10, 4), "1h": WindowStats(10.0, -2.0, 1, 1)}))
    state.add_pool(pool("PoolB", source="geckoterminal", liquidity_usd=5000.0, price_usd=0.001,
                        created_at=1767312000.0, protocol="Meteora DLMM",
                        stats={"24h": WindowStats(300.0, 9.0, 20, 6), "5m": WindowStats(1.0, 0.5, None, 2)}))
    record = merge(state, SOL, now=1767400000.0)
    assert record["pair_address"] == "PoolB"
    assert record["price_usd"] == 0.001
    assert record["protocol"] == "Meteora DLMM"
    assert record["created_at"] == "2026-01-02T00:00:00Z"
    assert record["liquidity_usd"] == 6000.0
    assert record["stats"]["24h"] == {"volume_usd": 400.0, "volume_sol": 2.666666667, "price_change": 9.0,
                                      "buys": 30, "sells": 10}  # 400 / 150 to 10 significant digits
    assert record["stats"]["1h"]["price_change"] is None  # the main pool has no 1h window
    assert record["stats"]["5m"]["buys"] is None and record["stats"]["5m"]["sells"] == 2
    assert record["transaction_count"] == 40
    assert record["volume_sol"] == pytest.approx(400.0 / SOL)
    assert record["price_1hr_change"] is None
    assert record["sources"] == ["dexscreener", "geckoterminal"]
    # the main pool has no market cap and no FDV, and nothing else stands in: unknown, never made up
    assert record["market_cap_usd"] is None and record["fdv_usd"] is None


def test_every_sol_figure_uses_the_cycle_sol_price():
    state = TokenState(MINT)
    state.add_pool(pool("PoolA", liquidity_usd=3000.0, price_usd=0.0006, market_cap_usd=600000.0,
                        stats={"24h": WindowStats(900.0, 1.0, 1, 1)}))
    record = merge(state, SOL, now=1.0)
    assert record["price_sol"] * SOL == pytest.approx(record["price_usd"], rel=1e-12)
    assert record["market_cap_sol"] == pytest.approx(4000.0)
    assert record["liquidity_sol"] == pytest.approx(20.0)
    assert record["stats"]["24h"]["volume_sol"] == pytest.approx(6.0)
    unknown = merge(state, None, now=1.0)
    assert unknown["price_sol"] is None and unknown["price_usd"] == 0.0006  # no SOL price: no made-up SOL figure


def test_same_pool_from_two_sources_counts_once_and_fresher_wins():
    state = TokenState(MINT)
    state.add_pool(pool("Same", source="dexscreener", at=100.0, liquidity_usd=10.0,
                        stats={"24h": WindowStats(50.0, 1.0, 1, 1)}))
    state.add_pool(pool("Same", source="geckoterminal", at=200.0, liquidity_usd=12.0,
                        stats={"24h": WindowStats(70.0, 2.0, 2, 2)}))
    state.add_pool(pool("Same", source="dexscreener", at=150.0, liquidity_usd=99.0))  # older: ignored
    record = merge(state, SOL, now=1.0)
    assert record["stats"]["24h"]["volume_usd"] == 70.0
    assert record["liquidity_usd"] == 12.0
    assert record["sources"] == ["geckoterminal"]


def test_a_pool_with_an_unknown_figure_does_not_poison_the_sum():
    state = TokenState(MINT)
    state.add_pool(pool("A", liquidity_usd=None, stats={"24h": WindowStats(None, 1.0, 5, None)}))
    state.add_pool(pool("B", liquidity_usd=100.0, stats={"24h": WindowStats(20.0, 3.0, 1, 2)}))
    record = merge(state, SOL, now=1.0)
    assert record["liquidity_usd"] == 100.0
    assert record["stats"]["24h"]["volume_usd"] == 20.0
    assert record["stats"]["24h"]["buys"] == 6 and record["stats"]["24h"]["sells"] == 2


def test_price_from_native_when_usd_is_null_and_quote_is_sol():
    state = TokenState(MINT)
    state.add_pool(pool("A", liquidity_usd=100.0, price_usd=None, price_native=0.00001))
    assert merge(state, SOL, now=1.0)["price_usd"] == pytest.approx(0.0015)
    usdc = TokenState(MINT)
    usdc.add_pool(pool("A", liquidity_usd=100.0, price_usd=None, price_native=0.00001, quote_address=USDC))
    assert merge(usdc, SOL, now=1.0)["price_usd"] is None  # a USDC price is not a SOL price


def test_market_cap_and_fdv_fall_back_jupiter_then_gecko_never_fdv_for_mcap():
    state = TokenState(MINT)
    state.add_pool(pool("A", liquidity_usd=100.0, fdv_usd=None, market_cap_usd=None))
    state.infos["geckoterminal"] = TokenInfo("geckoterminal", MINT, 1.0, market_cap_usd=7.0, fdv_usd=8.0)
    record = merge(state, SOL, now=1.0)
    assert (record["market_cap_usd"], record["fdv_usd"]) == (7.0, 8.0)
    assert record["sources"] == ["dexscreener", "geckoterminal"]
    state.infos["jupiter"] = TokenInfo("jupiter", MINT, 1.0, market_cap_usd=5.0, fdv_usd=None)
    record = merge(state, SOL, now=1.0)
    assert (record["market_cap_usd"], record["fdv_usd"]) == (5.0, 8.0)
    assert record["sources"] == ["dexscreener", "geckoterminal", "jupiter"]
    only_fdv = TokenState(MINT)
    only_fdv.add_pool(pool("A", liquidity_usd=1.0, fdv_usd=9.0, market_cap_usd=None))
    assert merge(only_fdv, SOL, now=1.0)["market_cap_usd"] is None


def test_jupiter_stands_in_only_without_any_pool():
    info = TokenInfo("jupiter", MINT, 1.0, name="Doge", symbol="DOGE", image_url="https://i/x.png", price_usd=0.5,
                     liquidity_usd=1000.0, market_cap_usd=5e5, fdv_usd=6e5, created_at=1767225600.0,
                     protocol="Pump.fun",
                     stats={"24h": WindowStats(10.0, 4.0, 3, 2), "1h": WindowStats(1.0, -1.0, 1, 0)})
    state = TokenState(MINT)
    state.infos["jupiter"] = info
    record = merge(state, SOL, now=1.0)
    assert record["price_usd"] == 0.5 and record["liquidity_usd"] == 1000.0
    assert record["stats"]["24h"]["volume_usd"] == 10.0 and record["transaction_count"] == 5
    assert record["price_1hr_change"] == -1.0
    assert record["pair_address"] is None and record["sources"] == ["jupiter"]
    state.add_pool(pool("A", liquidity_usd=1.0, price_usd=0.4, stats={"24h": WindowStats(2.0, 1.0, 1, 1)}))
    record = merge(state, SOL, now=1.0)
    assert record["price_usd"] == 0.4 and record["liquidity_usd"] == 1.0
    assert record["stats"]["24h"]["volume_usd"] == 2.0


def test_record_has_contract_fields_in_order_and_7d_nulls_without_history():
    state = TokenState(MINT)
    state.add_pool(pool("A", liquidity_usd=1.0))
    record = merge(state, SOL, now=1767225600.123)
    assert list(record)[:10] == ["token_address", "token_name", "token_ticker", "price_sol", "market_cap_sol",
                                 "volume_sol", "liquidity_sol", "transaction_count", "price_1hr_change", "protocol"]
    assert set(record["stats"]) == {"5m", "1h", "6h", "24h", "7d"}
    assert all(v is None for v in record["stats"]["7d"].values())
    assert record["updated_at"] == "2026-01-01T00:00:00.123Z"


def test_nothing_known_is_no_record():
    assert merge(TokenState(MINT), SOL, now=1.0) is None


def test_pools_stay_until_nobody_has_seen_them_for_30_minutes():
    """Absence from one answer is no evidence (DexScreener cuts answers at 30 pairs): pools only expire."""
    state = TokenState(MINT)
    state.add_pool(pool("A", source="dexscreener", at=0.0))
    state.add_pool(pool("B", source="geckoterminal", at=100.0))
    state.expire(POOL_TTL_S)
    assert set(state.pools) == {"A", "B"}
    state.expire(POOL_TTL_S + 50.0)
    assert set(state.pools) == {"B"}


JUNK = "JunkQuoteMintXXXXXXXXXXXXXXXXXXXXXXXXXXXX"


def test_main_pool_is_the_most_liquid_sol_usdc_or_usdt_pool_not_a_junk_quoted_one():
    """CONTRACT §2: a pool quoted in an illiquid token reports a huge, fictitious liquidity and price."""
    state = TokenState(MINT)
    state.add_pool(pool("Sol", liquidity_usd=1000.0, price_usd=0.002, quote_address=WSOL_MINT,
                        stats={"24h": WindowStats(10.0, 3.0, 1, 1)}))
    state.add_pool(pool("Usdc", liquidity_usd=2000.0, price_usd=0.0021, quote_address=USDC,
                        stats={"24h": WindowStats(20.0, 4.0, 1, 1)}))
    state.add_pool(pool("Junk", liquidity_usd=9e6, price_usd=0.09, quote_address=JUNK,
                        stats={"24h": WindowStats(5.0, 50.0, 1, 1)}))
    for candidate in (merge(state, SOL, now=1.0), merge(TokenState(MINT, pools=dict(state.pools)), SOL, now=1.0)):
        assert candidate["pair_address"] == "Usdc" and candidate["price_usd"] == 0.0021
        assert candidate["stats"]["24h"]["price_change"] == 4.0
        assert candidate["liquidity_usd"] == 9e6 + 3000.0  # every pool still counts in the sums
    assert main_pool(state).pool_address == "Usdc"
    two = TokenState(MINT, pools={k: state.pools[k] for k in ("Sol", "Junk")})  # the two-pool fast path
    assert merge(two, SOL, now=1.0)["pair_address"] == "Sol" and main_pool(two).pool_address == "Sol"


def test_a_token_without_a_sol_or_stablecoin_pool_takes_its_most_liquid_pool_of_any_quote():
    state = TokenState(MINT)
    state.add_pool(pool("Junk", liquidity_usd=500.0, price_usd=0.09, quote_address=JUNK))
    state.add_pool(pool("Unknown", liquidity_usd=900.0, price_usd=0.08, quote_address=None))
    assert merge(state, SOL, now=1.0)["pair_address"] == "Unknown"
    assert main_pool(state).pool_address == "Unknown"
