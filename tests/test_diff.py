"""The diff engine and the hub's fan-out, in memory: deltas reproduce the REST view at every seq.

Property tests draw random histories (commits of random upserts and removals, as the ingest makes them, of records with
random figures and nulls) and random views (query.parse_view of random parameters), and check that a
client applying what it is sent holds exactly `query.filtered(version, view, now=committed_at)[:limit]`
at every seq: with the bare diff functions, through the hub with random draining (so slow subscribers
get merged catch-up deltas), and after a resume from any held seq.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app import diff, query
from app.api.metrics import Metrics
from app.store.base import Version
from app.streams.connection import MAX_QUEUE_BYTES, Connection
from app.streams.direct import sse_chunk, ws_wire
from app.streams.frames import SSE, WS
from app.streams.hub import Hub
from tests.stores import WritableStore, memory_store

T0 = 1_790_000_000.0
ADDRESSES = [f"{c}{'x' * 31}Mint{i}" for i, c in enumerate("ABCDEFGHJKLMNPQR")]
NAMES = ["Doge Wif Laser", "Bonk Inu", "Cat", "Moon Shot", "dog"]
PROTOCOLS = ["PumpSwap", "Raydium", "Orca", "Meteora DLMM", None]
SMALL = [None, 0, 1, 2.5, 10, 1000, 123456.75]  # few values: ties and nulls are common
CHANGES = [None, -60.0, -5.0, -1.0, 0, 1.0, 5.0, 60.0]


# ------------------------------------------------------------------------------------------ strategies


def _stats(seed: int) -> dict[str, dict[str, Any]]:
    """One of a few stats objects: nulls and ties in every window."""
    pick = lambda values, k: values[(seed * 7 + k * 3) % len(values)]  # noqa: E731
    return {w: {"volume_usd": pick(SMALL, i), "volume_sol": pick(SMALL, i + 1), "price_change": pick(CHANGES, seed + i),
                "buys": pick([None, 0, 3, 40], seed + i), "sells": pick([None, 0, 7], i)}
            for i, w in enumerate(("5m", "1h", "6h", "24h", "7d"))}


STATS = [_stats(seed) for seed in range(12)]
AGES = [None, 0.1, 1, 5, 30]
CREATED = [None if h is None else datetime.fromtimestamp(T0 - h * 3600, tz=UTC).isoformat() for h in AGES]


@st.composite
def records(draw: Any, address: str) -> dict[str, Any]:
    small = st.sampled_from(SMALL)
    stats = orjson.loads(orjson.dumps(draw(st.sampled_from(STATS))))
    name = draw(st.sampled_from(NAMES))
    return {
        "token_address": address, "token_name": name, "token_ticker": name[:3].upper(),
        "price_sol": 1.0, "market_cap_sol": None, "volume_sol": stats["24h"]["volume_sol"],
        "liquidity_sol": None, "transaction_count": None,
        "price_1hr_change": stats["1h"]["price_change"], "protocol": draw(st.sampled_from(PROTOCOLS)),
        "price_usd": draw(small), "market_cap_usd": draw(small), "fdv_usd": draw(small),
        "liquidity_usd": draw(small), "pair_address": None, "created_at": draw(st.sampled_from(CREATED)),
        "image_url": None, "stats": stats, "sources": ["dexscreener"],
        "updated_at": draw(st.sampled_from(["t0", "t1"])),
    }


RATES = [150.0, 150.0, 150.0, 152.5, None]  # the SOL/USD rate of a commit: mostly unchanged


@st.composite
def steps(draw: Any) -> tuple[dict[str, dict[str, Any]], list[str], float | None]:
    """One commit: a few upserts (new records, changed ones, unchanged ones), removals, and its rate (a
    new rate alone makes a version too)."""
    upserts = {a: draw(records(a)) for a in draw(st.lists(st.sampled_from(ADDRESSES), max_size=6, unique=True))}
    removals = draw(st.lists(st.sampled_from(ADDRESSES), max_size=3, unique=True))
    return upserts, removals, draw(st.sampled_from(RATES))


VIEW_PARAMS = st.fixed_dictionaries({}, optional={
    "sort": st.sampled_from(query.SORTS),
    "window": st.sampled_from(["5m", "1h", "24h", "7d"]),
    "order": st.sampled_from(["asc", "desc"]),
    "limit": st.integers(1, 8),
    "min_liquidity_usd": st.sampled_from([0, 1, 10]),
    "min_volume_usd": st.sampled_from([0, 2.5]),
    "min_market_cap_usd": st.sampled_from([1, 100]),
    "max_market_cap_usd": st.sampled_from([10, 1000]),
    "max_age_h": st.sampled_from([0.5, 2, 6, 48]),
    "protocol": st.sampled_from(["pumpswap", "Raydium,orca", "meteora dlmm"]),
    "q": st.sampled_from(["a", "do", "B", "cat"]),
})
views = VIEW_PARAMS.map(query.parse_view)


class Clock:
    """Each commit 20 minutes after the previous: `max_age_h` filters change between versions."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now

    def tick(self) -> None:
        self.now += 1200


def record(address: str, **figures: Any) -> dict[str, Any]:
    """A plain record with every field, `figures` overriding."""
    stats = {w: {"volume_usd": 1.0, "volume_sol": 0.01, "price_change": 0.0, "buys": 1, "sells": 1}
             for w in ("5m", "1h", "6h", "24h", "7d")}
    rec = {
        "token_address": address, "token_name": "Cat " + address[:4], "token_ticker": address[:3],
        "price_sol": 1.0, "market_cap_sol": 10.0, "volume_sol": 0.01, "liquidity_sol": 1.0, "transaction_count": 2,
        "price_1hr_change": 0.0, "protocol": "Orca", "price_usd": 100.0, "market_cap_usd": 1000.0,
        "fdv_usd": 1000.0, "liquidity_usd": 100.0, "pair_address": None, "created_at": "2026-01-01T00:00:00Z",
        "image_url": None, "stats": stats, "sources": ["dexscreener"], "updated_at": "t",
    }
    rec.update(figures)
    return rec


def expected(version: Version, view: query.View) -> list[dict[str, Any]]:
    """What GET /api/tokens answers at that seq (records, in order)."""
    addresses = query.filtered(version, view, now=version.committed_at)[: view.limit]
    return [orjson.loads(orjson.dumps(version.records[a])) for a in addresses]


def wire(body: dict[str, Any]) -> dict[str, Any]:
    return orjson.loads(orjson.dumps(body))


def merged(row: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    """A client's deep merge (CONTRACT §5), written apart from app.diff so the test does not trust it."""
    out = dict(row)
    for key, value in item.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def client_apply(rows: list[dict[str, Any]], change: dict[str, Any]) -> list[dict[str, Any]]:
    by_address = {row["token_address"]: row for row in rows}
    for address in change["remove"]:
        del by_address[address]
    for item in change["upsert"]:
        by_address[item["token_address"]] = merged(by_address.get(item["token_address"], {}), item)
    order = change.get("order", [row["token_address"] for row in rows if row["token_address"] in by_address])
    return [by_address[address] for address in order]


def run_history(store: WritableStore, clock: Clock, history: list[tuple[dict, list, float | None]]) -> list[Version]:
    versions = [store.latest()]
    for upserts, removals, sol_usd in history:
        clock.tick()
        version = store.apply(upserts, removals, sol_usd=sol_usd)
        if version is not None:
            versions.append(version)
    return versions


# ------------------------------------------------------------------------------- the diff functions


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=st.lists(steps(), min_size=1, max_size=12), view_list=st.lists(views, min_size=1, max_size=3),
       data=st.data())
def test_deltas_applied_to_the_snapshot_reproduce_the_view_at_every_seq(history, view_list, data):
    clock = Clock()
    store = memory_store(epoch="e", clock=clock, hold_s=1e9)
    versions = run_history(store, clock, history)
    for view in view_list:
        first = versions[0]
        rows = diff.view_rows(first, view)
        start = wire(diff.snapshot(first, rows, view.as_dict()))
        client, rate = start["rows"], start["sol_usd"]
        assert client == expected(first, view) and rate == first.sol_usd
        last_seq = first.seq
        previous, previous_rows = first, rows
        for version in versions[1:]:
            new_rows = diff.view_rows(version, view)
            change = diff.delta(previous, previous_rows, version, new_rows)
            if change is None:
                # No delta exactly when the view (rows and rate) did not change.
                assert expected(version, view) == expected(previous, view) and version.sol_usd == previous.sol_usd
            else:
                change = wire(change)
                assert change["prev_seq"] >= last_seq and change["seq"] == version.seq
                assert ("order" in change) == (new_rows != previous_rows)
                for item in change["upsert"]:
                    assert "token_address" in item
                assert ("sol_usd" in change) == (version.sol_usd != previous.sol_usd)
                before = client
                client = client_apply(client, change)
                rate = change.get("sol_usd", rate)
                assert diff.apply(before, change) == client
                last_seq = version.seq
            assert client == expected(version, view) and rate == version.sol_usd
            previous, previous_rows = version, new_rows
        # A resume from any held seq lands on the latest state.
        latest = versions[-1]
        base = data.draw(st.sampled_from(versions))
        change = diff.delta(base, diff.view_rows(base, view), latest, diff.view_rows(latest, view))
        resumed, rate = expected(base, view), base.sol_usd
        if change is not None:
            assert change["prev_seq"] == base.seq
            resumed = client_apply(resumed, wire(change))
            rate = change.get("sol_usd", rate)
        assert resumed == expected(latest, view) and rate == latest.sol_usd


def test_a_row_new_to_the_view_comes_whole_and_a_changed_row_with_only_its_changed_fields():
    clock = Clock()
    store = memory_store(epoch="e", clock=clock, hold_s=1e9)
    a = record(ADDRESSES[0], liquidity_usd=10)
    b = record(ADDRESSES[1], liquidity_usd=5)
    v1 = store.apply({ADDRESSES[0]: dict(a)})
    view = query.parse_view({"sort": "liquidity"})
    v2 = store.apply({ADDRESSES[0]: {**a, "liquidity_usd": 11, "updated_at": "later"}, ADDRESSES[1]: dict(b)})
    change = diff.delta(v1, diff.view_rows(v1, view), v2, diff.view_rows(v2, view))
    assert change is not None
    by_address = {item["token_address"]: item for item in change["upsert"]}
    assert by_address[ADDRESSES[0]] == {"token_address": ADDRESSES[0], "liquidity_usd": 11, "updated_at": "later"}
    assert by_address[ADDRESSES[1]] == v2.records[ADDRESSES[1]]
    assert change["order"] == [ADDRESSES[0], ADDRESSES[1]] and change["remove"] == []


def test_a_changed_row_carries_only_the_changed_windows_and_figures_of_its_stats():
    clock = Clock()
    store = memory_store(epoch="e", clock=clock, hold_s=1e9)
    a = record(ADDRESSES[0])
    v1 = store.apply({ADDRESSES[0]: a})
    stats = {window: dict(figures) for window, figures in a["stats"].items()}
    stats["5m"]["buys"] = 42
    stats["1h"]["price_change"] = None  # a figure becoming unknown is sent as null
    v2 = store.apply({ADDRESSES[0]: {**a, "price_usd": 0.5, "stats": stats}})
    view = query.parse_view({})
    change = wire(diff.delta(v1, diff.view_rows(v1, view), v2, diff.view_rows(v2, view)))
    assert change["upsert"] == [{"token_address": ADDRESSES[0], "price_usd": 0.5,
                                 "stats": {"5m": {"buys": 42}, "1h": {"price_change": None}}}]
    assert client_apply(expected(v1, view), change) == expected(v2, view)


# ------------------------------------------------------------------------------------------ the hub


def make_hub(clock: Clock | None = None, hold_s: float = 1e9, max_connections: int = 100) -> tuple[Hub, WritableStore]:
    store = memory_store(epoch="e", clock=clock or Clock(), hold_s=hold_s)
    hub = Hub(store.store, Metrics(), max_connections, heartbeat_s=15)
    return hub, store


def parse(connection: Connection, frames: list) -> list[dict[str, Any]]:
    """Frames as events: {"event", "id" (SSE), "data"} for either kind of connection."""
    events = []
    for frame in frames:
        if connection.kind == "ws":
            body = orjson.loads(frame)
            events.append({"event": body.pop("type"), "sub": body.pop("id", None), "data": body, "id": None})
            continue
        for block in frame.decode().split("\n\n"):
            if not block:
                continue
            fields = dict(line.split(": ", 1) for line in block.split("\n"))
            if "event" not in fields:
                continue  # retry:
            events.append({"event": fields["event"], "id": fields["id"], "data": orjson.loads(fields["data"])})
    return events


class Client:
    """What a well-behaved client does with the events of one subscription."""

    def __init__(self, store: WritableStore, view: query.View):
        self.store, self.view = store, view
        self.rows: list[dict[str, Any]] | None = None
        self.seq: int | None = None
        self.sol_usd: float | None = None

    def check_id(self, tag: str | None) -> None:
        """Every event id names a version whose view is what the client holds."""
        if tag is None:
            return
        epoch, seq = tag.split(":")
        assert epoch == "e"
        assert self.rows == expected(self.store.get(int(seq)), self.view), tag
        assert self.sol_usd == self.store.get(int(seq)).sol_usd, tag

    def on(self, event: dict[str, Any]) -> None:
        kind, data = event["event"], event["data"]
        if kind == "snapshot":
            self.rows, self.seq, self.sol_usd = data["rows"], data["seq"], data["sol_usd"]
            assert data["view"] == self.view.as_dict()
        elif kind == "delta":
            assert self.rows is not None and data["prev_seq"] >= self.seq
            self.rows, self.seq = diff.apply(self.rows, data), data["seq"]
            self.sol_usd = data.get("sol_usd", self.sol_usd)
        elif kind == "heartbeat":
            assert self.seq is not None and data["seq"] >= self.seq
        if self.seq is not None:
            assert self.rows == expected(self.store.get(self.seq), self.view)
            assert self.sol_usd == self.store.get(self.seq).sol_usd
        self.check_id(event["id"])


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=st.lists(steps(), min_size=1, max_size=14), view=views, kind=st.sampled_from(["sse", "ws"]),
       drains=st.lists(st.booleans(), min_size=14, max_size=14),
       beats=st.lists(st.booleans(), min_size=14, max_size=14))
def test_through_the_hub_with_random_draining_a_client_always_holds_the_view_of_its_seq(
        history, view, kind, drains, beats):
    clock = Clock()
    hub, store = make_hub(clock)
    store.apply({ADDRESSES[0]: record(ADDRESSES[0])})
    connection = hub.connect(SSE if kind == "sse" else WS)
    hub.subscribe(connection, "s1" if kind == "ws" else None, view=view)
    client = Client(store, view)
    for step, drain, beat in zip(history, drains, beats):
        clock.tick()
        store.apply(step[0], step[1], sol_usd=step[2])
        if beat:
            hub.heartbeat()
        if drain:
            for event in parse(connection, connection.take()):
                client.on(event)
    for event in parse(connection, connection.take()):
        client.on(event)
    # Fully drained: the client holds the latest view, and the next heartbeat says so.
    assert client.rows == expected(store.latest(), view)
    hub.heartbeat()
    events = parse(connection, connection.take())
    assert [e["event"] for e in events] == ["heartbeat"] and events[0]["data"]["seq"] == store.latest().seq
    client.on(events[0])


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=st.lists(steps(), min_size=1, max_size=10), view=views, data=st.data())
def test_a_resume_from_any_held_seq_is_one_bridging_delta_to_the_latest_view(history, view, data):
    clock = Clock()
    hub, store = make_hub(clock)
    versions = run_history(store, clock, history)
    base = data.draw(st.sampled_from(versions))
    connection = hub.connect(SSE)
    hub.subscribe(connection, None, view=view, since=f"e:{base.seq}")
    events = parse(connection, connection.take())
    assert [e["event"] for e in events] == ["delta"]
    change = events[0]["data"]
    assert change["prev_seq"] == base.seq and change["seq"] == store.latest().seq
    assert events[0]["id"] == f"e:{store.latest().seq}"
    assert diff.apply(expected(base, view), change) == expected(store.latest(), view)
    assert change.get("sol_usd", base.sol_usd) == store.latest().sol_usd


@pytest.mark.parametrize("since", ["garbage", "other:1", "e:99", "e:-1", "e:", ":", "e:1:2", "e:²", "", None])
def test_a_resume_point_that_cannot_be_honoured_gets_a_snapshot(since):
    hub, store = make_hub()
    for i in range(3):
        store.apply({ADDRESSES[i]: record(ADDRESSES[i])})
    connection = hub.connect(SSE)
    hub.subscribe(connection, None, view=query.parse_view({}), since=since)
    assert [e["event"] for e in parse(connection, connection.take())] == ["snapshot"]


def test_a_resume_point_older_than_the_held_window_gets_a_snapshot():
    clock = Clock()
    hub, store = make_hub(clock, hold_s=1000)
    for i in range(4):
        clock.tick()  # 1200 s apart: each superseded version expires at the next commit
        store.apply({ADDRESSES[i]: record(ADDRESSES[i])})
    connection = hub.connect(SSE)
    hub.subscribe(connection, None, view=query.parse_view({}), since="e:1")
    assert [e["event"] for e in parse(connection, connection.take())] == ["snapshot"]
    hub.subscribe(connection, None, view=query.parse_view({}), since=f"e:{store.latest().seq}")
    events = parse(connection, connection.take())
    assert [e["event"] for e in events] == ["delta"]
    assert events[0]["data"]["upsert"] == [] and events[0]["data"]["remove"] == []
    assert events[0]["data"]["prev_seq"] == events[0]["data"]["seq"] == store.latest().seq




def test_subscribers_of_one_view_share_the_same_frame_and_unchanged_views_get_nothing():
    hub, store = make_hub()
    store.apply({a: record(a, liquidity_usd=i + 1, protocol="Orca") for i, a in enumerate(ADDRESSES[:4])})
    view = query.parse_view({"sort": "liquidity", "limit": "2"})
    a, b, w1, w2 = hub.connect(SSE), hub.connect(SSE), hub.connect(WS), hub.connect(WS)
    for connection in (a, b):
        hub.subscribe(connection, None, view=view)
    for connection in (w1, w2):
        hub.subscribe(connection, "s1", view=query.parse_view({"sort": "liquidity", "limit": 2}))
    snapshots = [c.take() for c in (a, b, w1, w2)]
    assert snapshots[0][0] is snapshots[1][0] and snapshots[2][0] is snapshots[3][0]
    assert len(hub.channels) == 1  # the same view, however it was spelled
    # A change to the top row: one delta, the very same object for every subscriber of a kind.
    store.apply({ADDRESSES[3]: record(ADDRESSES[3], liquidity_usd=100, protocol="Orca")})
    frames = [c.take() for c in (a, b, w1, w2)]
    assert all(len(f) == 1 for f in frames)
    assert frames[0][0] is frames[1][0] and frames[2][0] is frames[3][0]
    assert parse(a, frames[0])[0]["event"] == "delta"
    # A change outside the view (the last row of four by liquidity): no delta at all.
    store.apply({ADDRESSES[0]: record(ADDRESSES[0], liquidity_usd=0.5, protocol="Orca")})
    assert [c.take() for c in (a, b, w1, w2)] == [[], [], [], []]
    # ... and the next heartbeat says the clients are at that seq (their view is that version's too).
    hub.heartbeat()
    assert parse(a, a.take())[0]["data"]["seq"] == store.latest().seq


def test_metrics_count_the_frames_the_streams_keep_for_the_current_version_only():
    hub, store = make_hub()
    store.apply({ADDRESSES[0]: record(ADDRESSES[0])})
    connection = hub.connect(SSE)
    hub.subscribe(connection, None, view=query.parse_view({}))
    assert hub.frame_cache_bytes() == 0
    snapshot = connection.take()[0]  # framed once and kept for every subscriber of the view
    assert hub.frame_cache_bytes() >= len(snapshot)
    assert f"stream_frame_cache_bytes {float(hub.frame_cache_bytes())}" in hub.metrics.render().decode()
    store.apply({ADDRESSES[0]: record(ADDRESSES[0], price_usd=2.0)})
    assert hub.frame_cache_bytes() == 0  # a new version: the old version's frames no longer count


def test_a_subscriber_that_does_not_drain_gets_one_merged_catch_up_delta():
    hub, store = make_hub()
    store.apply({a: record(a, liquidity_usd=i + 1) for i, a in enumerate(ADDRESSES[:5])})
    view = query.parse_view({"sort": "liquidity", "limit": "3"})
    slow, fast = hub.connect(SSE), hub.connect(SSE)
    hub.subscribe(slow, None, view=view)
    hub.subscribe(fast, None, view=view)
    client = Client(store, view)
    for event in parse(slow, slow.take()):
        client.on(event)
    fast.take()
    seqs = []
    for i in range(6):
        seqs.append(store.apply({ADDRESSES[4]: record(ADDRESSES[4], liquidity_usd=10 + i)}).seq)
        assert len(parse(fast, fast.take())) == 1  # a subscriber that keeps up gets every delta
    assert len(slow.queue) == 2  # the first delta, then one placeholder for everything after it
    events = parse(slow, slow.take())
    assert [(e["data"]["prev_seq"], e["data"]["seq"]) for e in events] == [(seqs[0] - 1, seqs[0]),
                                                                           (seqs[0], seqs[-1])]
    for event in events:
        client.on(event)
    assert client.rows == expected(store.latest(), view)


def test_a_queue_past_one_mib_closes_the_connection_as_slow():
    hub, store = make_hub()
    connection = hub.connect(WS)
    hub.subscribe(connection, "s1", view=query.parse_view({}))
    for _ in range(MAX_QUEUE_BYTES // 1000 + 2):
        connection.send('{"type":"pong"}' + " " * 1000)
    assert connection.closed == "slow" and connection.take() is None
    assert not connection.subs and not hub.channels
    hub.disconnect(connection)
    assert hub.queue_bytes == 0 and not hub.connections


def test_resubscribing_with_the_same_id_replaces_and_unsubscribing_drops_queued_frames():
    hub, store = make_hub()
    store.apply({a: record(a, liquidity_usd=i + 1) for i, a in enumerate(ADDRESSES[:4])})
    connection = hub.connect(WS)
    hub.subscribe(connection, "s1", view=query.parse_view({"sort": "liquidity"}))
    connection.take()
    store.apply({ADDRESSES[0]: record(ADDRESSES[0], liquidity_usd=50)})  # a delta for s1 is queued
    hub.subscribe(connection, "s1", tokens=[ADDRESSES[2], ADDRESSES[1]])
    events = parse(connection, connection.take())
    assert [e["event"] for e in events] == ["snapshot"]  # the old view's delta is not sent after it
    assert [r["token_address"] for r in events[0]["data"]["rows"]] == [ADDRESSES[2], ADDRESSES[1]]
    assert events[0]["data"]["view"] == {"tokens": [ADDRESSES[2], ADDRESSES[1]]}
    store.apply({ADDRESSES[1]: record(ADDRESSES[1], liquidity_usd=51)})
    assert hub.unsubscribe(connection, "s1")
    assert connection.take() == [] and not hub.channels


def test_alerts_reach_the_subscribers_whose_view_holds_the_token_and_are_kept():
    hub, store = make_hub()

    def moving(address: str, change: float | None) -> dict[str, Any]:
        rec = record(address, liquidity_usd=10 if address == ADDRESSES[0] else 1)
        rec["stats"]["5m"]["price_change"] = change
        rec["stats"]["5m"]["volume_usd"] = None
        return rec

    store.apply({ADDRESSES[0]: moving(ADDRESSES[0], 0.0), ADDRESSES[1]: moving(ADDRESSES[1], 0.0)})
    holder, other, watcher = hub.connect(SSE), hub.connect(SSE), hub.connect(WS)
    hub.subscribe(holder, None, view=query.parse_view({"sort": "liquidity", "limit": "1"}))
    hub.subscribe(other, None, view=query.parse_view({"sort": "liquidity", "order": "asc", "limit": "1"}))
    hub.subscribe(watcher, "w", tokens=[ADDRESSES[0]])
    for connection in (holder, other, watcher):
        connection.take()
    store.apply({ADDRESSES[0]: moving(ADDRESSES[0], 12.0)})
    kinds = [e["event"] for e in parse(holder, holder.take())]
    assert kinds == ["delta", "alert"]
    assert [e["event"] for e in parse(other, other.take())] == []
    ws_events = parse(watcher, watcher.take())
    assert [e["event"] for e in ws_events] == ["delta", "alert"]
    alert = ws_events[1]["data"]
    assert alert["alert_type"] == "price_move" and alert["token_address"] == ADDRESSES[0] and ws_events[1]["sub"] == "w"
    kept = store.latest().recent_alerts  # what GET /api/alerts answers, newest last
    assert kept[-1]["type"] == "price_move" and kept[-1]["seq"] == store.latest().seq == store.latest().alerts[0]["seq"]


def test_max_connections_and_shutdown():
    hub, store = make_hub(max_connections=2)
    a, b = hub.connect(SSE), hub.connect(WS)
    assert hub.connect(SSE) is None
    hub.disconnect(a)
    c = hub.connect(SSE)
    assert c is not None
    hub.close_all()
    assert b.closed == "shutdown" and c.closed == "shutdown" and hub.connect(WS) is None


def test_watched_lists_what_live_channels_show_most_watched_first_and_follows_the_data():
    hub, store = make_hub()
    assert list(hub.watched()) == []
    # Liquidity 1..5: by liquidity, the order is A4, A3, A2, A1, A0.
    store.apply({a: record(a, liquidity_usd=i + 1) for i, a in enumerate(ADDRESSES[:5])})
    top2 = query.parse_view({"sort": "liquidity", "limit": "2"})
    a, b, w = hub.connect(SSE), hub.connect(SSE), hub.connect(WS)
    hub.subscribe(a, None, view=top2)
    hub.subscribe(b, None, view=top2)  # rows A4, A3, two subscribers
    hub.subscribe(w, "list", tokens=[ADDRESSES[0], ADDRESSES[3], ADDRESSES[9]])  # A9 is not held: not shown
    # A3 is shown to 3 subscriptions, A4 to 2, A0 to 1; tokens no channel shows are not listed.
    assert list(hub.watched()) == [ADDRESSES[3], ADDRESSES[4], ADDRESSES[0]]
    # The rows at the current version: A0 moves to the top of the view.
    store.apply({ADDRESSES[0]: record(ADDRESSES[0], liquidity_usd=100)})
    assert list(hub.watched()) == [ADDRESSES[0], ADDRESSES[4], ADDRESSES[3]]
    # A closed connection's subscriptions no longer count; nothing is watched once everyone has left.
    hub.disconnect(a)
    hub.disconnect(b)
    assert list(hub.watched()) == [ADDRESSES[0], ADDRESSES[3]]  # the watchlist, in position order
    hub.unsubscribe(w, "list")
    assert list(hub.watched()) == []


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70000])
def test_the_direct_path_puts_on_the_wire_what_the_server_itself_would(size):
    """app.streams.direct bypasses uvicorn's framing: its bytes must parse as the same message."""
    import h11
    from websockets.frames import Frame, Opcode

    text = "é" + "x" * (size - 2) if size >= 2 else "x" * size  # `size` bytes in UTF-8, one char non-ASCII
    assert len(text.encode()) == size
    assert ws_wire(text) == Frame(Opcode.TEXT, text.encode()).serialize(mask=False)
    frame = b"id: e:1\nevent: delta\ndata: " + text.encode() + b"\n\n"
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/api/stream", headers=[("Host", "x")]))
    client.receive_data(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + sse_chunk(frame))
    events = []
    while (event := client.next_event()) is not h11.NEED_DATA:
        events.append(event)
    assert isinstance(events[0], h11.Response)
    assert all(isinstance(e, h11.Data) for e in events[1:])
    assert b"".join(bytes(e.data) for e in events[1:]) == frame
