"""app.query: parsing views, the sorted/filtered index against a plain brute force, cursors, pages."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.query import (
    CURSOR_TTL_S,
    VIEW_PARAMS,
    Page,
    QueryError,
    View,
    ViewCache,
    filtered,
    ordered,
    page,
    page_parts,
    parse_query,
    parse_view,
)
from app.store.base import Version
from tests.stores import memory_store

SECRET = b"test-secret"
NOW = 1_800_000_000.0  # 2027-01-15
WINDOWS = ["5m", "1h", "6h", "24h", "7d"]
PROTOCOLS = ["Raydium", "Raydium CLMM", "PumpSwap", "Pump.fun", "Meteora DLMM", "Orca", "Lifinity V2", None]
CREATED = [None] + [
    datetime.fromtimestamp(NOW - hours * 3600, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for hours in (0.5, 1, 2, 5, 24, 24 * 7, 24 * 400)
] + ["2027-01-15T07:00:00.500Z"]
FIGURES = [None, None, 0, 1, 2.5, 10, 1000, 1e6, 123456.789]
CHANGES = [None, -50.0, -1, 0, 1, 3.5, 88.1]
COUNTS = [None, 0, 1, 5, 10]


class Clock:
    def __init__(self, t: float = NOW) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


# ------------------------------------------------------------------------------------------- records


def make_record(address: str, pick) -> dict:
    """A §2 record with values drawn by `pick(options)` (hypothesis `draw` or random.choice)."""
    stats = {}
    for window in WINDOWS:
        stats[window] = {
            "volume_usd": pick(FIGURES),
            "volume_sol": None,
            "price_change": pick(CHANGES),
            "buys": pick(COUNTS),
            "sells": pick(COUNTS),
        }
    return {
        "token_address": address,
        "token_name": pick([None, "Doge Wif Laser", "Bonk", "cat in a hat", "Pepe", "MOON dog"]),
        "token_ticker": pick([None, "DWL", "BONK", "CAT", "PEPE", "moon"]),
        "price_sol": None,
        "market_cap_sol": None,
        "volume_sol": None,
        "liquidity_sol": None,
        "transaction_count": None,
        "price_1hr_change": None,
        "protocol": pick(PROTOCOLS),
        "price_usd": pick(FIGURES),
        "market_cap_usd": pick(FIGURES),
        "fdv_usd": pick(FIGURES),
        "liquidity_usd": pick(FIGURES),
        "pair_address": None,
        "created_at": pick(CREATED),
        "image_url": None,
        "stats": stats,
        "sources": ["dexscreener"],
        "updated_at": "2027-01-15T08:00:00Z",
    }


ADDRESS_CHARS = "abcABC123xyzXYZ"
addresses_st = st.lists(
    st.text(ADDRESS_CHARS, min_size=1, max_size=5), min_size=0, max_size=60, unique=True
)


@st.composite
def datasets(draw):
    addresses = draw(addresses_st)
    pick = lambda options: draw(st.sampled_from(options))  # noqa: E731
    return {a: make_record(a, pick) for a in addresses}


PROTOCOL_INPUTS = ["raydium", "ORCA", "pump.fun", "Meteora DLMM", "lifinity v2", "nope"]


@st.composite
def view_params(draw):
    params: dict[str, str] = {}
    if draw(st.booleans()):
        params["sort"] = draw(st.sampled_from(
            ["volume", "price_change", "txns", "market_cap", "liquidity", "fdv", "created", "price"]
        ))
    if draw(st.booleans()):
        params["window"] = draw(st.sampled_from(WINDOWS))
    if draw(st.booleans()):
        params["order"] = draw(st.sampled_from(["asc", "desc"]))
    if draw(st.booleans()):
        params["limit"] = str(draw(st.integers(1, 100)))
    for name in ("min_liquidity_usd", "min_volume_usd", "min_market_cap_usd", "max_market_cap_usd"):
        if draw(st.integers(0, 4)) == 0:
            params[name] = draw(st.sampled_from(["0", "1", "2.5", "1000", "5e5", "123456.789"]))
    if draw(st.integers(0, 4)) == 0:
        params["max_age_h"] = draw(st.sampled_from(["0.5", "1", "2", "24", "168.5"]))
    if draw(st.integers(0, 4)) == 0:
        params["protocol"] = ",".join(
            draw(st.lists(st.sampled_from(PROTOCOL_INPUTS), min_size=1, max_size=3))
        )
    if draw(st.integers(0, 4)) == 0:
        params["q"] = draw(st.sampled_from(["a", "AB", "x", "bonk", "Cat", " dog ", "1", "laser"]))
    return params


# ------------------------------------------------------------------------------- brute-force reference


def iso_seconds(text):
    if text is None:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def sort_value(record, sort, window):
    stats = record["stats"][window]
    if sort == "volume":
        return stats["volume_usd"]
    if sort == "price_change":
        return stats["price_change"]
    if sort == "txns":
        if stats["buys"] is None and stats["sells"] is None:
            return None
        return (stats["buys"] or 0) + (stats["sells"] or 0)
    if sort == "created":
        return iso_seconds(record["created_at"])
    field = {
        "market_cap": "market_cap_usd", "liquidity": "liquidity_usd", "fdv": "fdv_usd", "price": "price_usd",
    }  # fmt: skip
    return record[field[sort]]


def passes(record, view: View, now):
    def at_least(value, minimum):
        return minimum is None or (value is not None and value >= minimum)

    if not at_least(record["liquidity_usd"], view.min_liquidity_usd):
        return False
    if not at_least(record["stats"][view.window]["volume_usd"], view.min_volume_usd):
        return False
    if not at_least(record["market_cap_usd"], view.min_market_cap_usd):
        return False
    if view.max_market_cap_usd is not None and (
            record["market_cap_usd"] is None or record["market_cap_usd"] > view.max_market_cap_usd):
        return False
    if view.max_age_h is not None:
        created = iso_seconds(record["created_at"])
        if created is None or created < int(now) - view.max_age_h * 3600:
            return False
    if view.protocol:
        wanted = [p.lower() for p in view.protocol]
        if record["protocol"] is None or record["protocol"].lower() not in wanted:
            return False
    if view.q is not None:
        q = view.q.lower()
        name = (record["token_name"] or "").lower()
        ticker = (record["token_ticker"] or "").lower()
        if not (record["token_address"].lower().startswith(q) or q in name or q in ticker):
            return False
    return True


def brute(records, view: View, now=NOW):
    rows = [r for r in records.values() if passes(r, view, now)]
    known = [r for r in rows if sort_value(r, view.sort, view.window) is not None]
    unknown = [r for r in rows if sort_value(r, view.sort, view.window) is None]
    known.sort(key=lambda r: r["token_address"])
    # Python's sort is stable, also with reverse=True: equal values keep address-ascending order.
    known.sort(key=lambda r: sort_value(r, view.sort, view.window), reverse=view.order == "desc")
    unknown.sort(key=lambda r: r["token_address"])
    return [r["token_address"] for r in known + unknown]


def version_of(records) -> Version:
    return Version("e", 1, records, {a: orjson.dumps(r) for a, r in records.items()}, NOW)


# ------------------------------------------------------------------------------------ property tests


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(datasets(), view_params())
def test_filtered_matches_brute_force(records, params):
    view = parse_view(params)
    version = version_of(records)
    expected = brute(records, view)
    assert filtered(version, view, NOW) == expected
    assert filtered(version, view, NOW) == expected  # from the cache
    # The unfiltered index is every address exactly once.
    assert sorted(ordered(version, view.sort, view.window, view.order)) == sorted(records)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(datasets(), view_params())
def test_page_respects_limit_and_total(records, params):
    store = memory_store(clock=Clock())
    if records:
        store.apply({a: dict(r) for a, r in records.items()})
    view = parse_view(params)
    expected = brute(records, view)
    first = page(store, view, None, NOW, secret=SECRET)
    assert first.total == len(expected)
    assert first.addresses == expected[: view.limit]
    assert len(first.addresses) <= view.limit
    assert (first.next_cursor is not None) == (len(expected) > view.limit)
    body = orjson.loads(b"".join(page_parts(first, view)))
    assert body["total"] == len(expected)
    assert [r["token_address"] for r in body["data"]] == expected[: view.limit]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(view_params())
def test_as_dict_round_trips_and_keys_are_canonical(params):
    view = parse_view(params)
    assert parse_view(view.as_dict()) == view
    assert parse_view(view.as_dict()).key == view.key
    assert parse_view(orjson.loads(orjson.dumps(view.as_dict()))) == view
    again, extra = parse_query(list(reversed(list(params.items()))))
    assert again == view and again.key == view.key and extra == {}
    assert set(view.as_dict()) == VIEW_PARAMS


# ----------------------------------------------------------------------------------------- cursor walk


def mutate(rng: random.Random, records: dict, counter: list[int]) -> tuple[dict, list[str]]:
    """Random upserts (changed and new records) and removals against `records`."""
    pick = rng.choice
    upserts: dict = {}
    addresses = list(records)
    for address in rng.sample(addresses, k=min(len(addresses), rng.randint(0, 8))):
        upserts[address] = make_record(address, pick)
    for _ in range(rng.randint(0, 4)):
        counter[0] += 1
        address = f"new{counter[0]}"
        upserts[address] = make_record(address, pick)
    doomed = rng.sample(addresses, k=min(len(addresses), rng.randint(0, 4)))
    removals = [a for a in doomed if a not in upserts]
    return upserts, removals


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1), view_params(), st.integers(1, 7))
def test_cursor_walk_sees_one_version_while_data_changes(seed, params, limit):
    rng = random.Random(seed)
    clock = Clock()
    store = memory_store(clock=clock, hold_s=5.0)
    initial = {f"t{i:02d}{rng.choice('aAbB')}": None for i in range(rng.randint(0, 60))}
    initial = {a: make_record(a, rng.choice) for a in initial}
    if initial:
        store.apply({a: dict(r) for a, r in initial.items()})
    params = dict(params, limit=str(limit))
    view = parse_view(params)
    start = store.latest()
    expected = brute(dict(start.records), view, clock.t)

    seen: list[str] = []
    cursor = None
    counter = [0]
    walk_start = clock.t
    while True:
        result = page(store, view, cursor, clock.t, secret=SECRET)
        assert result.version is start
        assert result.total == len(expected)
        assert len(result.addresses) <= view.limit
        seen.extend(result.addresses)
        cursor = result.next_cursor
        if cursor is None:
            break
        # The data changes underneath, time passes (the walk stays within 5 minutes of its first page).
        clock.t += rng.uniform(0, 300 / (len(expected) // view.limit + 1))
        for _ in range(rng.randint(0, 2)):
            current = dict(store.latest().records)
            upserts, removals = mutate(rng, current, counter)
            store.apply(upserts, removals)
        assert clock.t - walk_start < 3600
    assert seen == expected
    assert len(set(seen)) == len(seen)


def test_cursor_walk_can_change_page_size():
    rng = random.Random(7)
    store = memory_store(clock=Clock())
    store.apply({f"a{i:03d}": make_record(f"a{i:03d}", rng.choice) for i in range(50)})
    view = parse_view({"sort": "liquidity"})
    expected = filtered(store.latest(), view)
    first = page(store, parse_view({"sort": "liquidity", "limit": "7"}), None, NOW, secret=SECRET)
    bigger = parse_view({"sort": "liquidity", "limit": "100"})
    rest = page(store, bigger, first.next_cursor, NOW, secret=SECRET)
    assert first.addresses + rest.addresses == expected
    assert rest.next_cursor is None and rest.offset == 7


# ------------------------------------------------------------------------------------- bad parameters


@pytest.mark.parametrize(
    "params, param",
    [
        ({"foo": "1"}, "foo"),
        ({"sort": "volumes"}, "sort"),
        ({"sort": ""}, "sort"),
        ({"sort": "Volume"}, "sort"),
        ({"window": "2h"}, "window"),
        ({"order": "up"}, "order"),
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "x"}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"limit": "1.5"}, "limit"),
        ({"limit": ""}, "limit"),
        ({"min_liquidity_usd": "-1"}, "min_liquidity_usd"),
        ({"min_volume_usd": "-0.5"}, "min_volume_usd"),
        ({"min_market_cap_usd": "abc"}, "min_market_cap_usd"),
        ({"max_market_cap_usd": "-3"}, "max_market_cap_usd"),
        ({"min_liquidity_usd": "NaN"}, "min_liquidity_usd"),
        ({"min_liquidity_usd": "nan"}, "min_liquidity_usd"),
        ({"min_liquidity_usd": "inf"}, "min_liquidity_usd"),
        ({"min_liquidity_usd": "1e999"}, "min_liquidity_usd"),
        ({"min_liquidity_usd": "1_000"}, "min_liquidity_usd"),
        ({"min_liquidity_usd": ""}, "min_liquidity_usd"),
        ({"max_age_h": "0"}, "max_age_h"),
        ({"max_age_h": "-2"}, "max_age_h"),
        ({"protocol": ""}, "protocol"),
        ({"protocol": " , "}, "protocol"),
        ({"q": ""}, "q"),
        ({"q": "   "}, "q"),
        ({"q": "x" * 101}, "q"),
    ],
)
def test_bad_query_parameters(params, param):
    with pytest.raises(QueryError) as caught:
        parse_query(list(params.items()))
    error = caught.value
    assert error.param == param and error.status == 400 and error.code == "invalid_param"
    body = orjson.loads(error.body())
    assert body == {"error": {"code": "invalid_param", "message": error.message, "param": param}}
    assert param in error.message


@pytest.mark.parametrize(
    "params, param",
    [
        ({"limit": True}, "limit"),
        ({"limit": 0}, "limit"),
        ({"limit": 2.5}, "limit"),
        ({"min_liquidity_usd": math.nan}, "min_liquidity_usd"),
        ({"min_liquidity_usd": math.inf}, "min_liquidity_usd"),
        ({"min_liquidity_usd": -1}, "min_liquidity_usd"),
        ({"min_volume_usd": [1, 2]}, "min_volume_usd"),
        ({"max_age_h": 0}, "max_age_h"),
        ({"sort": 3}, "sort"),
        ({"protocol": [1]}, "protocol"),
        ({"protocol": 5}, "protocol"),
        ({"q": 5}, "q"),
        ({"bogus": None}, "bogus"),
    ],
)
def test_bad_websocket_values(params, param):
    with pytest.raises(QueryError) as caught:
        parse_view(params)
    assert caught.value.param == param


def test_messages_say_what_is_allowed():
    with pytest.raises(QueryError) as caught:
        parse_view({"sort": "x"})
    assert caught.value.message == (
        "sort must be one of volume, price_change, txns, market_cap, liquidity, fdv, created, price"
    )
    with pytest.raises(QueryError) as caught:
        parse_view({"limit": "500"})
    assert "1 to 100" in caught.value.message


def test_duplicate_parameter():
    with pytest.raises(QueryError) as caught:
        parse_query([("sort", "volume"), ("sort", "price")])
    assert caught.value.param == "sort" and caught.value.code == "invalid_param"
    with pytest.raises(QueryError) as caught:
        parse_query([("cursor", "a"), ("cursor", "b")], allowed_extra=["cursor"])
    assert caught.value.param == "cursor"
    with pytest.raises(QueryError) as caught:
        parse_view({"sort": ["volume", "price"]})
    assert caught.value.param == "sort"


def test_extras_and_defaults():
    view, extra = parse_query([("cursor", "abc"), ("sort", "price")], allowed_extra=("cursor", "since"))
    assert extra == {"cursor": "abc"} and view.sort == "price"
    with pytest.raises(QueryError) as caught:
        parse_query([("cursor", "abc")])
    assert caught.value.param == "cursor"
    assert parse_view({"since": "x:1"}, allowed_extra=["since"]) == View()
    assert View().as_dict() == {
        "sort": "volume", "window": "24h", "order": "desc", "limit": 30,
        "min_liquidity_usd": None, "min_volume_usd": None, "min_market_cap_usd": None,
        "max_market_cap_usd": None, "max_age_h": None, "protocol": None, "q": None,
    }  # fmt: skip


def test_normalisation():
    a = parse_view({"protocol": "orca,RAYDIUM clmm,pump.fun,lifinity v2,Orca", "q": "  BoNk ",
                    "min_liquidity_usd": "1e3", "limit": "05"})
    b = parse_view({"protocol": ["Pump.fun", "Lifinity V2", "Raydium CLMM", "orca"], "q": "bonk",
                    "min_liquidity_usd": 1000.0, "limit": 5})
    assert a == b and a.key == b.key and a.filter_key == b.filter_key
    assert a.as_dict()["protocol"] == ["Lifinity V2", "Orca", "Pump.fun", "Raydium CLMM"]
    assert a.as_dict()["min_liquidity_usd"] == 1000 and a.limit == 5 and a.q == "bonk"
    assert parse_view({"min_liquidity_usd": "2.5"}).min_liquidity_usd == 2.5
    assert a.key != parse_view({"protocol": "orca"}).key
    assert a.filter_key == parse_view(dict(a.as_dict(), limit=99)).filter_key
    assert parse_view({"protocol": []}).protocol == ()


# ------------------------------------------------------------------------------------------- cursors


def walk_store(n=40, clock=None, **kwargs):
    rng = random.Random(1)
    store = memory_store(clock=clock or Clock(), **kwargs)
    store.apply({f"m{i:03d}": make_record(f"m{i:03d}", rng.choice) for i in range(n)})
    return store


def test_tampered_cursor_is_invalid():
    store = walk_store()
    view = parse_view({"limit": "5"})
    cursor = page(store, view, None, NOW, secret=SECRET).next_cursor
    assert cursor
    middle = len(cursor) // 2
    tampered = cursor[:middle] + ("A" if cursor[middle] != "A" else "B") + cursor[middle + 1 :]
    for bad in (tampered, cursor[:-4], cursor + "AAAA", "", "!!!", "a" * 5000, "é"):
        with pytest.raises(QueryError) as caught:
            page(store, view, bad, NOW, secret=SECRET)
        error = caught.value
        assert (error.status, error.code, error.param) == (400, "invalid_cursor", "cursor")
    with pytest.raises(QueryError) as caught:
        page(store, view, cursor, NOW, secret=b"another secret")
    assert caught.value.code == "invalid_cursor"


def test_cursor_of_another_view_is_invalid():
    store = walk_store()
    cursor = page(store, parse_view({"limit": "5"}), None, NOW, secret=SECRET).next_cursor
    others = ({"sort": "price"}, {"order": "asc"}, {"window": "1h"}, {"q": "m"}, {"min_liquidity_usd": "0"})
    for other in others:
        with pytest.raises(QueryError) as caught:
            page(store, parse_view(dict(other, limit="5")), cursor, NOW, secret=SECRET)
        assert (caught.value.status, caught.value.code) == (400, "invalid_cursor")
    # The same filters with another page size are the same view.
    assert page(store, parse_view({"limit": "9"}), cursor, NOW, secret=SECRET).offset == 5


def test_old_cursor_expires():
    clock = Clock()
    store = walk_store(clock=clock)
    view = parse_view({"limit": "5"})
    cursor = page(store, view, None, NOW, secret=SECRET).next_cursor
    assert page(store, view, cursor, NOW + CURSOR_TTL_S - 1, secret=SECRET).addresses
    with pytest.raises(QueryError) as caught:
        page(store, view, cursor, NOW + CURSOR_TTL_S + 1, secret=SECRET)
    assert (caught.value.status, caught.value.code) == (410, "cursor_expired")
    assert orjson.loads(caught.value.body())["error"]["code"] == "cursor_expired"


def test_cursor_of_a_dropped_version_expires():
    clock = Clock()
    store = walk_store(clock=clock, hold_s=1.0)
    view = parse_view({"limit": "5"})
    first = page(store, view, None, NOW, secret=SECRET)
    seq = first.version.seq
    rng = random.Random(3)
    # The store's own clock runs past every hold; the cursor itself is still young.
    for _ in range(3):
        clock.t += 400
        store.apply({"m000": make_record("m000", rng.choice) | {"price_usd": clock.t}})
    assert store.get(seq) is None
    with pytest.raises(QueryError) as caught:
        page(store, view, first.next_cursor, NOW + 10, secret=SECRET)
    assert (caught.value.status, caught.value.code) == (410, "cursor_expired")


def test_held_version_survives_commits():
    clock = Clock()
    store = walk_store(clock=clock, hold_s=1.0)
    view = parse_view({"limit": "5"})
    first = page(store, view, None, clock.t, secret=SECRET)
    rng = random.Random(4)
    for _ in range(5):
        clock.t += 50
        store.apply({"m001": make_record("m001", rng.choice) | {"price_usd": clock.t}})
    second = page(store, view, first.next_cursor, clock.t, secret=SECRET)
    assert second.version is first.version and second.offset == 5


def test_cursor_of_another_epoch_expires():
    store = walk_store()
    view = parse_view({"limit": "5"})
    cursor = page(store, view, None, NOW, secret=SECRET).next_cursor
    restarted = walk_store()  # the same records in a new history (a restart)
    assert restarted.epoch != store.epoch
    with pytest.raises(QueryError) as caught:
        page(restarted, view, cursor, NOW, secret=SECRET)
    assert (caught.value.status, caught.value.code) == (410, "cursor_expired")


def test_age_filtered_walk_keeps_its_reference_time():
    rng = random.Random(5)
    store = memory_store(clock=Clock())
    records = {f"c{i:03d}": make_record(f"c{i:03d}", rng.choice) for i in range(60)}
    store.apply({a: dict(r) for a, r in records.items()})
    view = parse_view({"max_age_h": "2", "sort": "created", "limit": "3"})
    expected = brute(records, view, NOW)
    assert len(expected) > 3
    seen, cursor, now = [], None, NOW
    while True:
        result = page(store, view, cursor, now, secret=SECRET)
        seen += result.addresses
        cursor = result.next_cursor
        now += 300 / (len(expected) // 3 + 1)  # tokens age meanwhile; the walk still sees its first instant
        if cursor is None:
            break
    assert seen == expected


# --------------------------------------------------------------------------------------------- bodies


def test_page_body_structure():
    store = walk_store(n=12)
    view = parse_view({"limit": "5", "sort": "price", "order": "asc"})
    version = store.latest()
    cache = ViewCache()
    first = page(store, view, None, NOW, secret=SECRET, cache=cache)
    body = b"".join(page_parts(first, view, cache))
    expected = {
        "data": [version.records[a] for a in first.addresses],
        "next_cursor": first.next_cursor,
        "epoch": version.epoch,
        "seq": version.seq,
        "total": 12,
    }
    assert orjson.loads(body) == orjson.loads(orjson.dumps(expected))
    assert list(orjson.loads(body)) == ["data", "next_cursor", "epoch", "seq", "total"]
    assert cache.get(version, ("head", view.key, None)) is not None
    # A cached first page still carries a fresh cursor.
    later = page(store, view, None, NOW + 100, secret=SECRET, cache=cache)
    again = orjson.loads(b"".join(page_parts(later, view, cache)))
    assert again["next_cursor"] == later.next_cursor != first.next_cursor
    assert again["data"] == expected["data"]
    # The last page has no cursor.
    last = page(store, view, page(store, view, first.next_cursor, NOW, secret=SECRET).next_cursor, NOW,
                secret=SECRET)
    decoded = orjson.loads(b"".join(page_parts(last, view)))
    assert decoded["next_cursor"] is None and len(decoded["data"]) == 2


def test_encode_empty_page():
    store = memory_store(clock=Clock())
    view = View()
    result = page(store, view, None, NOW, secret=SECRET)
    assert isinstance(result, Page)
    assert orjson.loads(b"".join(page_parts(result, view))) == {
        "data": [], "next_cursor": None, "epoch": store.epoch, "seq": 0, "total": 0,
    }  # fmt: skip


def test_nan_figures_sort_as_null():
    records = {
        "a": make_record("a", lambda o: o[0]) | {"price_usd": math.nan},
        "b": make_record("b", lambda o: o[0]) | {"price_usd": 1.0},
        "c": make_record("c", lambda o: o[0]) | {"price_usd": math.inf},
    }
    version = version_of(records)
    assert ordered(version, "price", "24h", "desc") == ["b", "a", "c"]
    assert ordered(version, "price", "24h", "asc") == ["b", "a", "c"]
