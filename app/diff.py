"""The one diff engine: version -> change set -> per-view deltas (CONTRACT §5).

A view's rows at a version are `query.filtered(version, view, now=version.committed_at)[:limit]` (a
`max_age_h` filter is judged at the version's commit time, so the rows of a seq never depend on when
they are asked for); a watchlist's rows are its tokens that the version holds, in the client's order. A
delta between two versions of a view is computed from those rows and the records' identities (records
are shared between versions, so an unchanged record is the same object). The same function serves the
live feed (previous version to new), catch-up for a slow client (last delivered to now) and resume
(the client's seq to now).

What a delta means (the stream promise, to be copied into the user docs)
-----------------------------------------------------------------------
A delta `{"epoch", "seq", "prev_seq", "upsert", "remove", "order"?, "sol_usd"?}` takes a view from its
rows (and rate) at `prev_seq` to its rows at `seq`:

- `remove`: addresses that were in the view at `prev_seq` and are not at `seq`;
- `upsert`: for a row new to the view, the whole record; for a row that stays, `token_address` and only
  what changed, at the finest level: a changed top-level figure, and inside `stats` only the windows that
  changed and in each only the figures that changed. A client applies an item as a deep merge of objects
  into its row (`apply` below); rows that did not change are absent;
- `order`: present exactly when the order or the membership changed: every address of the view at
  `seq`, in view order. When it is absent, the order is the previous one less the removed rows.
- `sol_usd`: present exactly when the two versions' SOL/USD rates differ (a rate change is a change
  of what the client holds: a delta goes out for it even where no row changed).

`prev_seq` is the version the delta was computed from. It is not necessarily the seq of the previous
event the client received: versions that leave a view unchanged send it nothing, so the next delta's
`prev_seq` may be later than the client's last seq. The server guarantees that every event id
(`<epoch>:<seq>`, on snapshots, deltas, heartbeats and alerts alike) names a version whose view equals
what the client holds once it has applied everything up to that event; and that the view did not
change between the client's last seq and the next delta's `prev_seq`. Hence the client rule:

    apply a delta when its epoch is the client's and prev_seq >= the client's last seq, then take its
    seq as the last seq; anything else (another epoch, prev_seq < last seq) means the client lost
    track: reconnect without Last-Event-ID / since for a fresh snapshot.

On one connection `prev_seq >= last seq` always holds. A resume (`Last-Event-ID` or `since` naming a
held version of the epoch) starts with exactly one delta whose `prev_seq` is that seq (with empty
`upsert` and `remove` when nothing changed since), so the rule above applies to it too. A slow
subscriber gets one merged delta whose `prev_seq` is the last seq it was sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from app import query
from app.model import Record
from app.store.base import Version


def view_rows(version: Version, view: query.View, cache: query.ViewCache | None = None) -> list[str]:
    """The view's addresses in order at `version`. Age filters are judged at the version's commit time.
    `cache` (the process's) shares the index and filtered view with REST and every channel of the filters."""
    if cache is None:
        return query.filtered(version, view, now=version.committed_at)[: view.limit]
    return query.filtered(version, view, now=version.committed_at, cache=cache)[: view.limit]


def watch_rows(version: Version, tokens: Sequence[str]) -> list[str]:
    """A watchlist's rows: the tokens the version holds, in the order the client gave."""
    records = version.records
    return [address for address in tokens if address in records]


def changed_fields(old: Record, new: Record) -> dict[str, Any]:
    """`token_address` and what changed, at the finest level: nested objects carry only their changed keys.

    The unchanged part of a busy row (most of `stats`, the name, the image) is most of its bytes, and
    every subscriber of the view pays for them once per version: a delta sends the difference only.
    """
    fields = _changed(old, new)
    fields["token_address"] = new["token_address"]
    return fields


def _changed(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The keys of `new` whose values differ from `old`'s; a nested object is compared key by key."""
    out: dict[str, Any] = {}
    for key, value in new.items():
        before = old.get(key, _MISSING)
        if before == value:
            continue
        if type(value) is dict and type(before) is dict:
            inner = _changed(before, value)
            if inner:
                out[key] = inner
        else:
            out[key] = value
    return out


_MISSING = object()


def delta(old: Version, old_rows: list[str], new: Version, new_rows: list[str]) -> dict[str, Any] | None:
    """The delta taking a client from (old, old_rows) to (new, new_rows); None when nothing it shows changed."""
    old_records, new_records = old.records, new.records
    old_set = set(old_rows)
    upsert: list[Record] = []
    for address in new_rows:
        record = new_records[address]
        if address not in old_set:
            upsert.append(record)
            continue
        before = old_records.get(address)
        if before is record:
            continue
        fields = changed_fields(before, record) if before is not None else record
        if len(fields) > 1:
            upsert.append(fields)
    new_set = set(new_rows)
    remove = [address for address in old_rows if address not in new_set]
    reordered = new_rows != old_rows
    rerated = new.sol_usd != old.sol_usd
    if not upsert and not remove and not reordered and not rerated:
        return None
    body: dict[str, Any] = {"epoch": new.epoch, "seq": new.seq, "prev_seq": old.seq, "upsert": upsert,
                            "remove": remove}
    if reordered:
        body["order"] = new_rows
    if rerated:
        body["sol_usd"] = new.sol_usd
    return body


def snapshot(version: Version, rows: list[str], view: dict[str, Any]) -> dict[str, Any]:
    return {"epoch": version.epoch, "seq": version.seq, "sol_usd": version.sol_usd, "view": view,
            "rows": [version.records[address] for address in rows]}


def deep_merge(target: dict[str, Any], item: dict[str, Any]) -> None:
    """Merge `item` into `target` in place: objects key by key, any other value (null included) replaces."""
    for key, value in item.items():
        current = target.get(key)
        if type(value) is dict and type(current) is dict:
            current = target[key] = dict(current)
            deep_merge(current, value)
        else:
            target[key] = value


def apply(rows: list[Record], change: dict[str, Any]) -> list[Record]:
    """What a client does with a delta's rows (used by tests and documented for users); a client also
    takes the delta's `sol_usd`, when present, as the rate."""
    by_address = {row["token_address"]: dict(row) for row in rows}
    for address in change.get("remove", ()):
        by_address.pop(address, None)
    for item in change.get("upsert", ()):
        deep_merge(by_address.setdefault(item["token_address"], {}), item)
    if "order" in change:
        order = change["order"]
    else:
        order = [row["token_address"] for row in rows if row["token_address"] in by_address]
    return [by_address[address] for address in order]
