"""The one diff engine: version -> change set -> per-view deltas (CONTRACT §5).

A view's rows at a version are `query.filtered(version, view)[:limit]`; a delta between two versions of
a view is computed from those rows and the records' identities (records are shared between versions,
so an unchanged record is the same object). The same function serves the live feed (previous version
to new), catch-up for a slow client (last delivered to now) and resume (the client's seq to now).
"""

from __future__ import annotations

from typing import Any, Sequence

from app import query
from app.model import Record
from app.store.base import Version


def view_rows(version: Version, view: query.View) -> list[str]:
    """The view's addresses in order at `version`. Age filters are judged at the version's commit time."""
    return query.filtered(version, view, now=version.committed_at)[: view.limit]


def watch_rows(version: Version, tokens: Sequence[str]) -> list[str]:
    """A watchlist's rows: the tokens the version holds, in the order the client gave."""
    records = version.records
    return [address for address in tokens if address in records]


def changed_fields(old: Record, new: Record) -> dict[str, Any]:
    """`token_address` and every top-level field whose value changed."""
    fields: dict[str, Any] = {"token_address": new["token_address"]}
    for key, value in new.items():
        if old.get(key) != value:
            fields[key] = value
    return fields


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
    if not upsert and not remove and not reordered:
        return None
    body: dict[str, Any] = {"epoch": new.epoch, "seq": new.seq, "prev_seq": old.seq, "upsert": upsert,
                            "remove": remove}
    if reordered:
        body["order"] = new_rows
    return body


def snapshot(version: Version, rows: list[str], view: dict[str, Any]) -> dict[str, Any]:
    return {"epoch": version.epoch, "seq": version.seq, "view": view,
            "rows": [version.records[address] for address in rows]}


def apply(rows: list[Record], change: dict[str, Any]) -> list[Record]:
    """What a client does with a delta (used by tests and documented for users)."""
    by_address = {row["token_address"]: dict(row) for row in rows}
    for address in change.get("remove", ()):
        by_address.pop(address, None)
    for item in change.get("upsert", ()):
        current = by_address.setdefault(item["token_address"], {})
        current.update(item)
    order = change.get("order") or [row["token_address"] for row in rows if row["token_address"] in by_address]
    return [by_address[address] for address in order]
