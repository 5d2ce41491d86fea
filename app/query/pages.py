"""REST pages (CONTRACT §4): one page of a view on one version, joined from the pre-encoded record bytes.

A walk holds its version once, at its first page, for `CURSOR_TTL_S`: later pages neither renew the hold
nor the cursor's age, so the versions held for cursors are at most those committed in the last
`CURSOR_TTL_S` (first pages are always on the newest version), whatever clients do.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from app.query import cursors
from app.query.cache import NO_CACHE, ViewCache
from app.query.index import filtered_at, reference
from app.query.params import View
from app.store.base import Version


@dataclass
class Page:
    """One page of a view on one version. `offset` is the index of the first row in the whole view."""

    addresses: list[str]
    next_cursor: str | None
    total: int
    version: Version
    offset: int = 0
    ref: int | None = field(default=None, repr=False)  # age-filter reference time the walk uses


def page(store: Any, view: View, cursor: str | None, now: float | None = None, *, secret: bytes,
         cache: ViewCache = NO_CACHE) -> Page:
    """One page of `view`: the first (on `store.latest()`) or the one `cursor` points at.

    A cursor is opaque and signed (HMAC-SHA256 with `secret`). It is bound to the view's filters and
    order (not its `limit`: a walk may change page size), its version and a position in the view.
    Raises QueryError 400 `invalid_cursor` (forged, damaged, other view) or 410 `cursor_expired` (its walk
    began over `CURSOR_TTL_S` ago, another epoch or an earlier run, version no longer held). `now` (wall
    clock by default) is the time for cursor ages and for `max_age_h`.
    """
    clock = time.time() if now is None else now
    if cursor is None:
        version = store.latest()
        offset = 0
        ref = reference(view, clock)
        issued = int(clock)
        addresses = filtered_at(version, view, ref, cache)
    else:
        decoded = cursors.decode(cursor, secret, store.epoch)
        if decoded.view_hash != view.cursor_hash:
            raise cursors.invalid("cursor belongs to a different view: keep the sort, window, order and filters")
        if decoded.epoch != store.epoch:
            raise cursors.expired("cursor is from an earlier history of the data; start again without a cursor")
        if clock - decoded.issued > cursors.CURSOR_TTL_S:
            raise cursors.expired("cursor's walk began over 5 minutes ago; start again without a cursor")
        version = store.get(decoded.seq)
        if version is None or version.epoch != decoded.epoch:
            raise cursors.expired("cursor's version of the data is no longer held; start again without a cursor")
        offset = decoded.position
        ref = decoded.ref if view.max_age_h is not None else None
        if view.max_age_h is not None and ref is None:
            raise cursors.invalid()  # pragma: no cover - the view hash already differs
        issued = decoded.issued
        addresses = filtered_at(version, view, ref, cache)
        if not 0 < offset <= len(addresses) or cursors.short_hash(addresses[offset - 1]) != decoded.last_hash:
            raise cursors.invalid()
    end = offset + view.limit
    next_cursor = None
    if end < len(addresses):
        if cursor is None:
            store.hold(version.seq, cursors.CURSOR_TTL_S)  # once per walk, from its first page
        next_cursor = cursors.encode(
            cursors.Cursor(version.epoch, version.seq, end, issued, ref, view.cursor_hash,
                           cursors.short_hash(addresses[end - 1])),
            secret,
        )
    return Page(addresses[offset:end], next_cursor, len(addresses), version, offset, ref)


def page_parts(page: Page, view: View, cache: ViewCache = NO_CACHE) -> tuple[bytes, bytes]:
    """The §4 body `{"data", "next_cursor", "epoch", "seq", "total"}`, from pre-encoded record bytes, in
    two parts (joined, they are the body): the data part of a view's first page, cached per version (key
    ("head", view.key, ref)), and the cursor part, new for every walk (it carries the time the walk
    began). The gzip body deflates the first once and joins the second (app.api.compression)."""
    version = page.version
    head = None
    key = ("head", view.key, page.ref)
    if page.offset == 0:
        head = cache.get(version, key)
    if head is None:
        encoded = version.encoded
        head = b'{"data":[' + b",".join([encoded[a] for a in page.addresses]) + b'],"next_cursor":'
        if page.offset == 0:
            cache.put(version, key, head)
    tail = b"".join((orjson.dumps(page.next_cursor), b',"epoch":', orjson.dumps(version.epoch),
                     b',"seq":%d,"total":%d}' % (version.seq, page.total)))
    return head, tail
