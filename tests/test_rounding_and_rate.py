"""Figures rounded once, at merge, and a calm SOL/USD rate (CONTRACT §2).

- `cents` and `sig10` round as the contract says (checked against decimal formatting, which is exact)
  and leave no more digits than they keep, so orjson writes `640742.68`, never `640742.6799999999`;
- a change below the rounding is no change: no new seq;
- the rate read each cycle is adopted only when it moves more than 0.1%; a version that adopts one
  changes every record's *_sol figures (records refreshed or not, restored ones too) and carries the
  rate; the others keep the adopted rate.
"""

from __future__ import annotations

import math
from decimal import Decimal

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app import diff, query
from app.config import load_settings
from app.ingest.figures import cents, rate_to_adopt, sig10, with_rate
from app.ingest.leader import changeset
from app.ingest.merge import TokenState, merge
from app.ingest.scheduler import Ingest
from app.model import WSOL_MINT, PoolObservation, TokenInfo, WindowStats
from app.store.memory import MemoryStore

MINT = "9abcMintAddressXXXXXXXXXXXXXXXXXXXXXXpump"
T0 = 1_790_000_000.0

figures = st.floats(min_value=-1e15, max_value=1e15, allow_nan=False, allow_infinity=False)
magnitudes = st.builds(lambda m, e: m * 10.0 ** e, st.floats(-10, 10, allow_nan=False), st.integers(-20, 20))


@given(st.one_of(figures, magnitudes))
def test_cents_is_the_nearest_hundredth_and_prints_as_one(x):
    r = cents(x)
    assert abs(r - x) <= 0.005 + 4e-16 * abs(x)  # the nearest hundredth (ties either way)
    assert Decimal(repr(r)).as_tuple().exponent >= -2  # written with at most two decimals


@given(st.one_of(figures, magnitudes, st.floats(min_value=1e-300, max_value=1e300)))
def test_sig10_keeps_ten_significant_digits_and_prints_with_no_more(x):
    r = sig10(x)
    assert len(Decimal(repr(r)).normalize().as_tuple().digits) <= 10  # written with at most 10 digits
    assert r == float(f"{x:.10g}") or abs(r - x) <= 5.000001e-10 * abs(x)  # the nearest (ties either way)


def test_rounding_of_the_odd_cases():
    assert cents(640742.6799999999) == 640742.68 and repr(cents(0.1 + 0.2)) == "0.3"
    assert cents(-4.2049999) == -4.2 and cents(0.0) == 0.0
    assert sig10(0.000001234567890123) == 1.23456789e-06 and sig10(0.0) == 0.0
    assert sig10(123456789012345.0) == 123456789000000.0 and sig10(-2.0 / 3.0) == -0.6666666667
    assert math.isinf(sig10(math.inf)) and math.isnan(sig10(math.nan))


def pool(**kw) -> PoolObservation:
    base = dict(source="dexscreener", pool_address="PoolA", base_address=MINT, observed_at=T0, base_name="Doge",
                base_symbol="DOGE", quote_address=WSOL_MINT, protocol="PumpSwap", price_usd=0.000609812345678912,
                liquidity_usd=61234.123456, market_cap_usd=609812.3456, fdv_usd=609812.3456,
                stats={"24h": WindowStats(640742.6799999999, 88.0999999, 8123, 7011),
                       "5m": WindowStats(3120.4999999, -1.8049999, 41, 22)})
    base.update(kw)
    return PoolObservation(**base)


def test_a_record_is_made_with_rounded_figures_and_sol_figures_from_them():
    state = TokenState(MINT)
    state.add_pool(pool())
    record = merge(state, 147.123, now=T0)
    assert (record["price_usd"], record["liquidity_usd"], record["market_cap_usd"]) == (0.0006098123457, 61234.12,
                                                                                        609812.35)
    assert record["stats"]["24h"]["volume_usd"] == 640742.68 and record["stats"]["24h"]["price_change"] == 88.1
    assert record["stats"]["5m"] == {"volume_usd": 3120.5, "volume_sol": sig10(3120.5 / 147.123),
                                     "price_change": -1.8, "buys": 41, "sells": 22}
    assert record["price_sol"] == sig10(record["price_usd"] / 147.123)
    assert record["liquidity_sol"] == sig10(61234.12 / 147.123) and record["volume_sol"] == sig10(640742.68 / 147.123)
    assert math.isclose(record["price_sol"] * 147.123, record["price_usd"], rel_tol=1e-9)


def test_a_change_below_the_rounding_is_no_change():
    store = MemoryStore(epoch="e", clock=lambda: T0)
    fence = store.lease.acquire("me")
    state = TokenState(MINT)
    state.add_pool(pool())
    version = anyio.run(store.commit, changeset(store.latest(), {MINT: merge(state, 150.0, T0)}, committed_at=T0,
                                                sol_usd=150.0), fence)
    noisy = TokenState(MINT)  # float noise and sub-cent moves, as two upstream answers in a row differ
    noisy.add_pool(pool(price_usd=0.000609812345679, liquidity_usd=61234.1234, market_cap_usd=609812.3451,
                        stats={"24h": WindowStats(640742.68000001, 88.1000001, 8123, 7011),
                               "5m": WindowStats(3120.5000001, -1.8000001, 41, 22)}))
    again = merge(noisy, 150.0, T0 + 10)
    assert changeset(version, {MINT: again}, committed_at=T0 + 10, sol_usd=150.0) is None
    moved = TokenState(MINT)
    moved.add_pool(pool(liquidity_usd=61234.13))  # a cent is a change
    assert changeset(version, {MINT: merge(moved, 150.0, T0 + 10)}, committed_at=T0 + 10, sol_usd=150.0) is not None


def test_the_rate_is_adopted_only_past_a_tenth_of_a_percent():
    assert rate_to_adopt(None, 150.0) == 150.0
    assert rate_to_adopt(150.0, 150.149) is None and rate_to_adopt(150.0, 149.851) is None
    assert rate_to_adopt(150.0, 150.1501) == 150.1501 and rate_to_adopt(150.0, 149.8499) == 149.8499
    assert rate_to_adopt(150.0, None) is None and rate_to_adopt(150.0, 0.0) is None
    assert rate_to_adopt(None, 150.123456789123) == 150.1234568  # a price: 10 significant digits


def test_with_rate_recomputes_every_sol_figure_from_the_usd_ones():
    state = TokenState(MINT)
    state.add_pool(pool())
    record = merge(state, 150.0, T0)
    assert with_rate(record, 160.0, "later") == {**merge(state, 160.0, T0), "updated_at": "later"}
    assert record["price_sol"] == sig10(record["price_usd"] / 150.0)  # the original is not touched


# ---- the rate in the ingest ---------------------------------------------------------------------------

A, B, C = (f"{c * 40}pump" for c in "ABC")


def refresh(ingest: Ingest, address: str, price: float) -> None:
    """What a refresh does for one token: new figures, merged and committed in the next cycle."""
    state = ingest.tokens.setdefault(address, TokenState(address))
    state.infos["jupiter"] = TokenInfo("jupiter", address, T0, "Tok", "TOK", None, price, 1e5, 1e6, 1e6)
    ingest.mark_dirty(address)


def sol_figures(record: dict) -> list:
    return [record["price_sol"], record["market_cap_sol"], record["liquidity_sol"], record["volume_sol"]]


@pytest.mark.anyio
async def test_a_new_rate_rewrites_every_record_once_and_travels_with_the_version():
    store = MemoryStore(epoch="e")
    ingest = Ingest(load_settings({}, dotenv=None), store, {})  # no upstreams: cycles merge what is dirty
    ingest.fence = store.lease.acquire("me")
    # A record of an earlier term that this ingest keeps as it is until refreshed (adopted, no data yet).
    held = {"token_address": C, "token_name": "Held", "price_usd": 2.0, "price_sol": 2.0 / 150.0,
            "market_cap_usd": None, "market_cap_sol": None, "liquidity_usd": 300.0, "liquidity_sol": 2.0,
            "volume_sol": None, "stats": {"24h": {"volume_usd": None, "volume_sol": None}}, "updated_at": "t"}
    await store.commit(changeset(store.latest(), {C: held}, committed_at=T0, sol_usd=150.0), ingest.fence)
    ingest.adopt(store.latest())
    assert ingest.sol_usd == 150.0
    refresh(ingest, A, 1.0)
    refresh(ingest, B, 3.0)
    await ingest.cycle()
    v2 = store.latest()
    assert v2.sol_usd == 150.0 and v2.records[A]["price_sol"] == sig10(1.0 / 150.0)

    # SOL/USD moves 0.08%: read, not adopted. Only the refreshed token changes, at the adopted rate.
    assert ingest.take_sol_quote(150.12, T0) is None and ingest.sol_usd == 150.0
    refresh(ingest, A, 1.1)
    await ingest.cycle()
    v3 = store.latest()
    assert v3.seq == v2.seq + 1 and v3.changed == {A} and v3.sol_usd == 150.0
    assert v3.records[A]["price_sol"] == sig10(1.1 / 150.0) and v3.records[B] is v2.records[B]

    # It moves 0.2%: adopted. The next version rewrites every record's *_sol figures, nothing else.
    assert ingest.take_sol_quote(150.3, T0) == 150.3
    await ingest.cycle()
    v4 = store.latest()
    assert v4.seq == v3.seq + 1 and v4.changed == {A, B, C} and v4.sol_usd == 150.3
    for address in (A, B, C):
        old, new = v3.records[address], v4.records[address]
        assert {k: v for k, v in new.items() if k not in ("price_sol", "market_cap_sol", "liquidity_sol",
                                                            "volume_sol", "stats", "updated_at")} == \
            {k: v for k, v in old.items() if k not in ("price_sol", "market_cap_sol", "liquidity_sol",
                                                         "volume_sol", "stats", "updated_at")}
        assert sol_figures(new) != sol_figures(old)
        assert new["price_sol"] == sig10(new["price_usd"] / 150.3)
        assert new["liquidity_sol"] == sig10(new["liquidity_usd"] / 150.3)
    assert v4.records[C]["token_name"] == "Held"  # kept as it was, but at the version's rate

    # The rate travels: in /health's summary, in snapshots, and in the delta of the version that changed it
    # (live or bridging), not in others.
    assert store.summary().sol_usd == 150.3
    view = query.parse_view({})
    assert diff.snapshot(v4, diff.view_rows(v4, view), view.as_dict())["sol_usd"] == 150.3
    live = diff.delta(v3, diff.view_rows(v3, view), v4, diff.view_rows(v4, view))
    bridge = diff.delta(v2, diff.view_rows(v2, view), v4, diff.view_rows(v4, view))
    before = diff.delta(v2, diff.view_rows(v2, view), v3, diff.view_rows(v3, view))
    assert live["sol_usd"] == bridge["sol_usd"] == 150.3 and "sol_usd" not in before

    # Nothing else moves: no new version, however often the same rate is read.
    assert ingest.take_sol_quote(150.35, T0) is None
    await ingest.cycle()
    assert store.latest() is v4
