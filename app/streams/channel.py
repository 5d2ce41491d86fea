"""Channels and subscriptions: what each client asked for and how far it has been sent.

One `Channel` per distinct view (its canonical key) or watchlist holds that view's rows at the current
version and computes each version's payloads once for every subscriber. A `Subscription` is one client's
interest in a channel (an SSE stream has one, with id None; a WebSocket up to 20, by id).

A subscription is in one of three states:

- IDLE: nothing of it is queued; a new delta is queued as is (the shared frame), or written directly
  (app.streams.direct).
- LIVE: one live delta is queued and not yet written; a further change switches it to SYNC.
- SYNC: a lazily rendered item is queued (a snapshot, a resume bridge, or a catch-up: `sync` says which);
  live deltas are skipped until the writer reaches it, and it then renders one delta from the seq the
  client is at (`delivered`) to the channel's current version (Hub.render_sync). So a subscriber that
  does not drain gets one merged catch-up delta, however many versions went by.

`Subscription.delivered` is the seq whose view the client holds once the frames written so far have been
applied. Heartbeat and alert frames are rendered when written, with that seq as their event id, so every
id a client sees names a version whose view equals the client's state: resuming from any of them is exact.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import orjson

from app import diff, query
from app.store.base import Version
from app.streams.transport import DirectWriter, Framing

MAX_CACHE_BYTES = 2 << 20  # one channel's cached frames of one version (snapshots per subscription id...)

# Subscription states (see above)
IDLE, LIVE, SYNC = 0, 1, 2
# What a queued SYNC item renders
SNAPSHOT, CATCH_UP, RESUME = "snapshot", "catch_up", "resume"


class Subscriber(Protocol):
    """What a subscription's client offers the hub and the fan-out (app.streams.connection.Connection)."""

    client: str  # the client's address: what per-client limits count
    framing: Framing
    direct_writer: DirectWriter | None

    def enqueue(self, item: tuple) -> None: ...

    def parked(self) -> bool: ...


class Subscription:
    __slots__ = ("id", "connection", "channel", "state", "sync", "delivered", "epoch", "beat", "shares_frames_by")

    def __init__(self, sub_id: str | None, connection: Subscriber, channel: Channel):
        self.id = sub_id
        self.connection = connection
        self.channel = channel
        # Subscriptions with equal keys get the same frames: of one framing, and one id where frames name it
        # (a string, whose hash Python keeps: the fan-out looks it up once per subscriber).
        framing = connection.framing
        self.shares_frames_by: Any = f"{framing.name}\0{sub_id}" if framing.per_subscription else framing
        self.state = IDLE
        self.sync = SNAPSHOT
        self.delivered = channel.version.seq  # the client's rows are those of the channel at this seq
        self.epoch = channel.version.epoch
        self.beat = False  # a heartbeat is queued and not yet written


class Channel:
    """One view (or watchlist) shared by every subscriber that asked for it."""

    def __init__(self, key: str, view: query.View | None, tokens: tuple[str, ...] | None, version: Version,
                 cache: query.ViewCache | None = None):
        self.key = key
        self.view = view
        self.tokens = tokens
        self.version = version
        self.rows = self.rows_at(version, cache)
        self.subs: dict[Subscription, None] = {}
        self._cache: dict[Any, Any] = {}  # frames of the current version (snapshot, catch-ups)
        self._cache_bytes = 0
        self._cache_seq = version.seq

    def rows_at(self, version: Version, cache: query.ViewCache | None = None) -> list[str]:
        """The rows at `version`; `cache` (the process's) shares the work with every channel of the same
        filters, and with REST."""
        if self.view is not None:
            return diff.view_rows(version, self.view, cache)
        return diff.watch_rows(version, self.tokens or ())

    def advance(self, version: Version, rows: list[str]) -> None:
        self.version, self.rows = version, rows

    def cached(self, key: Any, make: Callable[[], Any]) -> Any:
        """A value derived from the current version, computed once for every subscriber (kept while the
        channel's frames of this version take under MAX_CACHE_BYTES: past that, made for each)."""
        if self._cache_seq != self.version.seq:
            self._cache.clear()
            self._cache_bytes = 0
            self._cache_seq = self.version.seq
        try:
            return self._cache[key]
        except KeyError:
            pass
        value = make()
        size = len(value) if isinstance(value, (bytes, str)) else 64
        if self._cache_bytes + size <= MAX_CACHE_BYTES:
            self._cache[key] = value
            self._cache_bytes += size
        return value

    @property
    def cache_bytes(self) -> int:
        """Bytes of frames this channel holds for its current version (for /metrics)."""
        return self._cache_bytes if self._cache_seq == self.version.seq else 0

    def view_dict(self) -> dict[str, Any]:
        return self.view.as_dict() if self.view is not None else {"tokens": list(self.tokens or ())}

    def snapshot_payload(self) -> bytes:
        """The snapshot of the channel's current version, encoded once per version."""

        def make() -> bytes:
            version = self.version
            encoded = version.encoded
            body = orjson.dumps({"epoch": version.epoch, "seq": version.seq, "sol_usd": version.sol_usd,
                                 "view": self.view_dict()})
            rows = b"[" + b",".join([encoded[a] for a in self.rows]) + b"]"
            return body[:-1] + b',"rows":' + rows + b"}"

        return self.cached("snapshot", make)

    def bridge_payload(self, base: Version) -> bytes | None:
        """The delta from `base` (a held version of this epoch) to the current version; None if no change."""

        def make() -> bytes | None:
            change = diff.delta(base, self.rows_at(base), self.version, self.rows)
            return orjson.dumps(change) if change is not None else None

        return self.cached(("bridge", base.seq), make)

    def frame(self, framing: Framing, sub_id: str | None, event: str, key: Any,
              payload: Callable[[], bytes]) -> bytes | str:
        """`payload()` framed by `framing`, shared by every subscriber needing the same frame."""
        shared_by = (key, framing.name, sub_id) if framing.per_subscription else (key, framing.name)
        return self.cached(shared_by, lambda: framing.event(event, self.version.tag, sub_id, payload()))
