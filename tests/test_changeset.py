"""Change sets: what the ingest builds from a cycle's records, and the one pure step every backend applies."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest

from app.alerts import AlertDetector
from app.ingest.leader import changeset
from app.sources.values import iso
from app.store.versions import ChangeSet, OutOfOrder, Version, initial_version, next_version

A, B, C = (f"{c * 40}pump" for c in "ABC")
T0 = 1_790_000_000.0


def record(address: str, price: float = 1.0, change_5m: float | None = 0.0, at: str = "t0") -> dict[str, Any]:
    stats = {"5m": {"volume_usd": 1.0, "price_change": change_5m}, "1h": {"volume_usd": 12.0}}
    return {"token_address": address, "token_ticker": address[:3], "price_usd": price, "stats": stats,
            "updated_at": at}


def base() -> Version:
    changes = changeset(initial_version("e", T0), {A: record(A), B: record(B)}, committed_at=T0)
    assert changes is not None
    return next_version(initial_version("e", T0), changes)


def test_a_record_that_changed_only_its_time_stamp_is_no_change_and_keeps_its_key_order():
    v1 = base()
    same = record(A, at="t1")
    assert changeset(v1, {A: same}, committed_at=T0 + 10) is None
    assert list(same) == list(record(A))
    changes = changeset(v1, {A: record(A, at="t1"), B: record(B, price=2.0, at="t1")}, committed_at=T0 + 10)
    assert changes is not None and set(changes.changed) == {B}
    assert changes.changed[B] == orjson.dumps(record(B, price=2.0, at="t1"))  # encoded once, here
    assert (changes.epoch, changes.seq, changes.committed_at) == ("e", 2, T0 + 10)


def test_removals_name_only_held_records_and_an_upsert_wins_over_its_removal():
    v1 = base()
    assert changeset(v1, {}, [C], committed_at=T0) is None  # not held: nothing to remove
    changes = changeset(v1, {A: record(A, price=3.0)}, [A, B, C], committed_at=T0)
    assert changes is not None and set(changes.changed) == {A} and changes.removed == {B}


def test_alerts_are_computed_once_when_the_change_set_is_built():
    v1 = base()
    changes = changeset(v1, {A: record(A, change_5m=-7.5), B: record(B, change_5m=1.0)}, committed_at=T0 + 60,
                        detector=AlertDetector(5, 3))
    assert changes is not None
    assert [(a["type"], a["token_address"], a["value"], a["seq"], a["at"]) for a in changes.alerts] == [
        ("price_move", A, -7.5, 2, iso(T0 + 60))]
    version = next_version(v1, changes)
    assert version.alerts == changes.alerts and version.recent_alerts == changes.alerts


def test_next_version_is_pure_and_shares_every_unchanged_record():
    v1 = base()
    before = copy.deepcopy(dict(v1.records)), dict(v1.encoded)
    changes = changeset(v1, {A: record(A, price=5.0)}, [B], committed_at=T0 + 1, sol_usd=150.0)
    v2 = next_version(v1, changes)
    assert (dict(v1.records), dict(v1.encoded)) == before  # the previous version is untouched
    assert v2.records[A] is changes.records[A] and v2.encoded[A] is changes.changed[A]
    again = next_version(v2, changeset(v2, {C: record(C)}, committed_at=T0 + 2))
    assert again.records[A] is v2.records[A] and again.encoded[A] is v2.encoded[A]
    assert (v2.changed, v2.removed, v2.sol_usd, v2.committed_at) == ({A}, {B}, 150.0, T0 + 1)


def test_a_packed_change_set_makes_the_same_version_in_another_process():
    v1 = base()
    changes = changeset(v1, {A: record(A, change_5m=9.0), C: record(C, at='a "quoted"\nline')}, [B],
                        committed_at=T0 + 5, sol_usd=151.25, detector=AlertDetector(5, 3))
    shipped = ChangeSet.unpack(changes.pack())
    assert shipped.records is None  # decoded from the bytes on arrival
    here, there = next_version(v1, changes), next_version(v1, shipped)
    for field in ("epoch", "seq", "committed_at", "changed", "removed", "alerts", "recent_alerts", "sol_usd"):
        assert getattr(here, field) == getattr(there, field), field
    assert here.records == there.records and list(here.records) == list(there.records)
    assert dict(here.encoded) == dict(there.encoded)
    for garbage in (b"", b"{}", b"not json", changes.pack() + b"\n{}"):
        with pytest.raises(ValueError):
            ChangeSet.unpack(garbage)


def test_a_change_set_applies_only_to_the_version_it_follows():
    v1 = base()
    changes = changeset(v1, {A: record(A, price=2.0)}, committed_at=T0)
    with pytest.raises(OutOfOrder):
        next_version(initial_version("e", T0), changes)
    with pytest.raises(OutOfOrder):
        next_version(initial_version("other", T0), changes)
    assert next_version(v1, changes).seq == 2
