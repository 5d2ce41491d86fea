"""The memory backend beyond the contract: it releases what no one holds, and what it holds is bounded."""

from __future__ import annotations

from app import query
from app.store.base import HOLD_S
from app.store.memory import MAX_HELD, MAX_HOLD_S
from tests.stores import Clock, memory_store

A = "A" * 40 + "pump"
STATS = {"5m": {"price_change": None, "volume_usd": None}, "1h": {"volume_usd": None}}


def rec(price: float, address: str = A) -> dict:
    return {"token_address": address, "price_usd": price, "stats": STATS, "updated_at": "t"}


def test_expiry_releases_every_version_no_one_holds_not_only_the_oldest():
    clock = Clock()
    store = memory_store(clock=clock)
    seqs = [store.apply({A: rec(n)}).seq for n in range(1, 6)]  # seqs 1-5, all at one instant
    store.hold(seqs[1], MAX_HOLD_S)  # a cursor on seq 2
    clock.t += HOLD_S + 1
    latest = store.apply({A: rec(99.0)})
    assert store.get(seqs[1]) is not None  # held
    assert [store.get(s) for s in (1, 3, 4)] == [None] * 3  # older and newer alike released
    assert store.get(5) is not None  # superseded just now: in its window
    assert store.get(latest.seq) is latest and store.held() == 3
    clock.t += MAX_HOLD_S
    store.apply({A: rec(100.0)})
    assert store.get(seqs[1]) is None


def test_a_hold_is_capped_in_time_and_in_number():
    clock = Clock()
    store = memory_store(clock=clock)
    first = store.apply({A: rec(1.0)})
    store.hold(first.seq, 1e9)  # asks for ever: gets MAX_HOLD_S
    held = [first.seq]
    for n in range(MAX_HELD + 20):  # more distinct holds than the cap
        held.append(store.apply({A: rec(n + 2.0)}).seq)
        store.hold(held[-1])
    clock.t += HOLD_S + 1
    store.apply({A: rec(0.5)})
    assert store.held() <= MAX_HELD + 1  # the holds that fit, and the latest
    clock.t = first.committed_at + MAX_HOLD_S + 1
    store.apply({A: rec(0.25)})
    assert store.get(first.seq) is None


def test_a_slow_cursor_walk_pins_one_version_not_every_newer_one():
    """A walk of a page a minute for half an hour, each page re-holding its version (issue 9 measured
    memory growing without bound): the versions held stay those of the last HOLD_S, plus the walk's."""
    clock = Clock()
    store = memory_store(clock=clock)
    addresses = [f"{i:03d}" + "x" * 40 for i in range(50)]
    store.apply({a: rec(float(i), a) for i, a in enumerate(addresses)})
    view = query.parse_view({"sort": "price", "limit": "1"})
    result = query.page(store, view, None, clock.t, secret=b"s")
    walks, held = [[result.version.seq]], []
    for _ in range(30):
        for _ in range(6):  # a version every 10 s
            clock.t += 10
            store.apply({A: rec(clock.t)})
        try:
            result = query.page(store, view, result.next_cursor, clock.t, secret=b"s")
            walks[-1].append(result.version.seq)
        except query.QueryError as exc:  # 5 minutes after its first page: the client starts a new walk
            assert exc.status == 410
            result = query.page(store, view, None, clock.t, secret=b"s")
            walks.append([result.version.seq])
        held.append(store.held())
    assert len(walks) > 1 and all(len(set(walk)) == 1 for walk in walks)  # each walk saw one version
    assert max(held) <= int(HOLD_S // 10) + 2, held  # the hold window's versions, the walk's, the latest
