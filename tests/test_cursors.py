"""Cursor walks cannot be stretched: a walk's version is held from its first page for CURSOR_TTL_S, later
pages renew nothing, and a cursor from a previous run is a 410 (docs/DECISIONS.md). Plus ASCII-only numbers."""

from __future__ import annotations

import asyncio
import random

import httpx
import pytest

from app.api import rest
from app.query import CURSOR_TTL_S, QueryError, page, parse_query, parse_view
from tests.stores import WritableStore, memory_store
from tests.test_query import Clock, make_record

SECRET = b"test-secret"


def moving_store(clock: Clock, n: int = 60) -> WritableStore:
    rng = random.Random(2)
    # Superseded versions are kept only 10 s (the store's own hold): what keeps one longer is a walk's hold.
    store = memory_store(clock=clock, hold_s=10.0)
    store.apply({f"m{i:03d}": make_record(f"m{i:03d}", rng.choice) for i in range(n)})
    return store


def commit(store: WritableStore, clock: Clock, seconds: float) -> None:
    clock.t += seconds
    store.apply({"m000": {"token_address": "m000", "price_usd": clock.t, "stats": {}}})


def test_a_slow_walk_holds_its_version_from_the_first_page_only_then_410():
    clock = Clock()
    store = moving_store(clock)
    view = parse_view({"limit": "5"})
    walk_start = clock.t
    result = page(store, view, None, clock.t, secret=SECRET)
    seq = result.version.seq
    # A page every 100 s while the data moves on: the walk keeps its version within the 5.5 minutes...
    for _ in range(3):
        commit(store, clock, 100)
        result = page(store, view, result.next_cursor, clock.t, secret=SECRET)
        assert result.version.seq == seq and store.get(seq) is not None
    assert clock.t - walk_start == 300
    # ... and those pages did not renew the hold: it ends CURSOR_TTL_S after the first page.
    commit(store, clock, CURSOR_TTL_S - 300 + 1)
    assert store.get(seq) is None  # released at the next commit, although the last page was 31 s ago
    with pytest.raises(QueryError) as caught:
        page(store, view, result.next_cursor, clock.t, secret=SECRET)
    assert (caught.value.status, caught.value.code) == (410, "cursor_expired")


def test_a_walk_is_answered_for_cursor_ttl_from_its_first_page_even_with_its_version_held_by_another():
    clock = Clock()
    store = moving_store(clock)
    view = parse_view({"limit": "5"})
    first = page(store, view, None, clock.t, secret=SECRET)
    commit(store, clock, 200)
    store.hold(first.version.seq, 10_000)  # held for longer by something else (another walk, a resume)
    second = page(store, view, first.next_cursor, clock.t, secret=SECRET)
    clock.t = first.version.committed_at + CURSOR_TTL_S + 1
    with pytest.raises(QueryError) as caught:  # the cursor carries its walk's start: still too old
        page(store, view, second.next_cursor, clock.t, secret=SECRET)
    assert caught.value.code == "cursor_expired" and "5 minutes" in caught.value.message


def test_versions_held_for_walks_are_bounded_by_the_ttl_whatever_clients_do():
    """A client starting walks all the time holds only the versions of the last CURSOR_TTL_S."""
    clock = Clock()
    store = moving_store(clock)
    view = parse_view({"limit": "5"})
    cursors = []
    for _ in range(100):  # 100 versions, 10 s apart, each with a walk started and followed every step
        cursors = [page(store, view, c, clock.t, secret=SECRET).next_cursor for c in cursors
                   if c is not None and _alive(store, view, c, clock.t)]
        cursors.append(page(store, view, None, clock.t, secret=SECRET).next_cursor)
        commit(store, clock, 10)
    held = [s for s in range(store.latest().seq + 1) if store.get(s) is not None]
    assert len(held) <= CURSOR_TTL_S / 10 + 2, held


def _alive(store: WritableStore, view, cursor: str, now: float) -> bool:
    try:
        page(store, view, cursor, now, secret=SECRET)
    except QueryError:
        return False
    return True


def test_a_cursor_from_a_previous_run_is_410_and_a_damaged_one_400():
    before = moving_store(Clock())  # the previous run: its own epoch and secret
    view = parse_view({"limit": "5"})
    cursor = page(before, view, None, 2e9, secret=b"the previous run's secret").next_cursor
    now = moving_store(Clock())
    assert now.epoch != before.epoch
    with pytest.raises(QueryError) as caught:
        page(now, view, cursor, 2e9, secret=SECRET)
    assert (caught.value.status, caught.value.code) == (410, "cursor_expired")
    assert "restarted" in caught.value.message
    ours = page(now, view, None, 2e9, secret=SECRET).next_cursor
    damaged = ours[:-3] + ("AAA" if not ours.endswith("AAA") else "BBB")
    for bad in (damaged, cursor[:-2], "A" * 80):
        with pytest.raises(QueryError) as caught:
            page(now, view, bad, 2e9, secret=SECRET)
        assert (caught.value.status, caught.value.code) == (400, "invalid_cursor")


@pytest.mark.parametrize("value", ["１２", "١٢", "1２", "१", "12.５", "1e２", "²"])
@pytest.mark.parametrize("name", ["min_liquidity_usd", "min_volume_usd", "min_market_cap_usd",
                                  "max_market_cap_usd", "max_age_h", "limit"])
def test_numbers_are_ascii_only_like_limit(name, value):
    with pytest.raises(QueryError) as caught:
        parse_query([(name, value)])
    assert caught.value.param == name and caught.value.status == 400


def test_alerts_limit_is_ascii_only_too():
    class Request:
        query_params = httpx.QueryParams({"limit": "１２"})

    response = asyncio.run(rest.alerts(Request()))  # type: ignore[arg-type]
    assert response.status_code == 400
