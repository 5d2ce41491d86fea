"""Subscriptions, channels and outgoing queues: every new version fans out from here.

One `Channel` per distinct view (its canonical key) or watchlist computes each version's delta once and
encodes it once; every subscriber of that channel gets the same bytes (WebSocket frames only prepend the
subscription id). Each `Connection` has its own bounded queue and writer, so a slow client never delays
another: a subscriber whose previous delta is still queued is switched to one merged catch-up delta,
computed when its writer is ready, and a connection whose queue passes 1 MiB or whose write times out
is closed.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import anyio
import orjson

from app import diff, query
from app.api.metrics import Metrics
from app.store.base import Store, Version
from app.streams.alerts import AlertDetector

log = logging.getLogger("app.streams")

MAX_QUEUE_BYTES = 1 << 20
Render = Callable[[], "bytes | None"]


def sse_frame(event: str, tag: str, payload: bytes) -> bytes:
    return b"id: " + tag.encode() + b"\nevent: " + event.encode() + b"\ndata: " + payload + b"\n\n"


def ws_frame(kind: str, sub_id: str | None, payload: bytes) -> bytes:
    """`{"type": kind, "id": sub_id, ...payload}` without decoding the shared payload."""
    head = b'{"type":"' + kind.encode() + b'"'
    if sub_id is not None:
        head += b',"id":' + orjson.dumps(sub_id)
    if payload == b"{}":
        return head + b"}"
    return head + b"," + payload[1:]


class Connection:
    """One SSE or WebSocket client: subscriptions plus an outgoing queue drained by one writer."""

    def __init__(self, hub: "Hub", kind: str):
        self.hub = hub
        self.kind = kind  # "sse" or "ws"
        self.subs: dict[str | None, Subscription] = {}
        self.queue: deque[bytes | Render] = deque()
        self.queued_bytes = 0
        self.closed: str | None = None  # why, once closed: "slow", "shutdown", "client"
        self._wake = anyio.Event()

    def push(self, item: bytes | Render) -> None:
        if self.closed:
            return
        if isinstance(item, bytes):
            self.queued_bytes += len(item)
            self.hub.queue_bytes += len(item)
            if self.queued_bytes > MAX_QUEUE_BYTES:
                self.close("slow")
                return
        self.queue.append(item)
        self._wake.set()

    async def next(self) -> bytes | None:
        """The next frame to write; None once the connection is closed."""
        while True:
            if self.closed:
                return None
            while self.queue:
                item = self.queue.popleft()
                if isinstance(item, bytes):
                    self.queued_bytes -= len(item)
                    self.hub.queue_bytes -= len(item)
                    if isinstance(item, _Counted):
                        item.sub.pending -= 1
                    return item
                rendered = item()
                if rendered is not None:
                    return rendered
            self._wake = anyio.Event()
            await self._wake.wait()

    def close(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = reason
        self.hub.queue_bytes -= self.queued_bytes
        self.queued_bytes = 0
        self.queue.clear()
        if reason == "slow":
            self.hub.metrics.dropped_clients.labels(self.kind).inc()
        for sub in list(self.subs.values()):
            sub.channel.subs.discard(sub)
        self.subs.clear()
        self._wake.set()

    def frame(self, event: str, sub: "Subscription | None", payload: bytes, tag: str) -> bytes:
        if self.kind == "sse":
            return sse_frame(event, tag, payload)
        return ws_frame(event, sub.id if sub is not None else None, payload)


@dataclass(eq=False)
class Subscription:
    id: str | None
    connection: Connection
    channel: "Channel"
    at_seq: int = 0  # the client's rows are those of the channel at this seq
    pending: int = 0  # deltas queued and not yet written
    catching_up: bool = False  # a merged delta is queued; live deltas are skipped until it renders


@dataclass(eq=False)
class Channel:
    """One view (or watchlist) shared by every subscriber that asked for it."""

    key: str
    view: query.View | None
    tokens: tuple[str, ...] | None
    version: Version
    rows: list[str]
    subs: set[Subscription] = field(default_factory=set)
    _snapshot: tuple[int, bytes] | None = None

    def rows_at(self, version: Version) -> list[str]:
        if self.view is not None:
            return diff.view_rows(version, self.view)
        return diff.watch_rows(version, self.tokens or ())

    def view_dict(self) -> dict[str, Any]:
        return self.view.as_dict() if self.view is not None else {"tokens": list(self.tokens or ())}

    def snapshot_payload(self) -> bytes:
        """The snapshot of the channel's current version, encoded once per version."""
        if self._snapshot is None or self._snapshot[0] != self.version.seq:
            encoded = self.version.encoded
            body = orjson.dumps({"epoch": self.version.epoch, "seq": self.version.seq, "view": self.view_dict()})
            rows = b"[" + b",".join(encoded[a] for a in self.rows) + b"]"
            self._snapshot = (self.version.seq, body[:-1] + b',"rows":' + rows + b"}")
        return self._snapshot[1]


class Hub:
    def __init__(self, store: Store, metrics: Metrics, detector: AlertDetector, max_connections: int,
                 heartbeat_s: float):
        self.store = store
        self.metrics = metrics
        self.detector = detector
        self.max_connections = max_connections
        self.heartbeat_s = heartbeat_s
        self.channels: dict[str, Channel] = {}
        self.connections: set[Connection] = set()
        self.queue_bytes = 0
        self.closing = False
        self._last_version = store.latest()
        self._stop_listening = store.listen(self.publish)

    # ---- connections -----------------------------------------------------------------------------

    def connect(self, kind: str) -> Connection | None:
        """A new connection, or None when MAX_CONNECTIONS are open (or the hub is shutting down)."""
        if self.closing or len(self.connections) >= self.max_connections:
            return None
        connection = Connection(self, kind)
        self.connections.add(connection)
        self.metrics.connections.labels(kind).inc()
        return connection

    def disconnect(self, connection: Connection) -> None:
        connection.close(connection.closed or "client")
        if connection in self.connections:
            self.connections.discard(connection)
            self.metrics.connections.labels(connection.kind).dec()
        self._drop_idle_channels()

    def close_all(self) -> None:
        """Shutdown: every stream ends cleanly."""
        self.closing = True
        for connection in list(self.connections):
            connection.close("shutdown")
        self._stop_listening()

    # ---- subscriptions -----------------------------------------------------------------------------

    def subscribe(self, connection: Connection, sub_id: str | None, *, view: query.View | None = None,
                  tokens: Sequence[str] | None = None, since: str | None = None) -> Subscription:
        """Register and queue the first message: a bridging delta when `since` can be honoured, else a snapshot."""
        self.unsubscribe(connection, sub_id)
        key = f"v:{view.key}" if view is not None else "w:" + ",".join(tokens or ())
        channel = self.channels.get(key)
        if channel is None:
            latest = self.store.latest()
            channel = Channel(key, view, tuple(tokens) if tokens is not None else None, latest, [])
            channel.rows = channel.rows_at(latest)
            self.channels[key] = channel
        sub = Subscription(sub_id, connection, channel, at_seq=channel.version.seq)
        channel.subs.add(sub)
        connection.subs[sub_id] = sub
        base = self._resumable(since)
        if base is not None:
            connection.push(self._bridge(sub, base, always=True))
        else:
            connection.push(connection.frame("snapshot", sub, channel.snapshot_payload(), channel.version.tag))
        return sub

    def unsubscribe(self, connection: Connection, sub_id: str | None) -> bool:
        sub = connection.subs.pop(sub_id, None)
        if sub is None:
            return False
        sub.channel.subs.discard(sub)
        self._drop_idle_channels()
        return True

    def _resumable(self, since: str | None) -> Version | None:
        """The held version `since` names, if it is of this epoch and not in the future."""
        if not since:
            return None
        epoch, _, seq = since.strip().rpartition(":")
        if epoch != self.store.epoch or not seq.isdigit():
            return None
        return self.store.get(int(seq))

    def _bridge(self, sub: Subscription, base: Version, always: bool = False) -> Render:
        """A lazily computed delta from `base` to the channel's version when the writer gets to it."""

        def render() -> bytes | None:
            channel = sub.channel
            sub.catching_up = False
            if sub.connection.closed:
                return None
            current = channel.version
            old_rows = channel.rows_at(base)
            change = diff.delta(base, old_rows, current, channel.rows)
            sub.at_seq = current.seq
            if change is None:
                if not always:
                    return None
                change = {"epoch": current.epoch, "seq": current.seq, "prev_seq": base.seq, "upsert": [],
                          "remove": []}
            return sub.connection.frame("delta", sub, orjson.dumps(change), current.tag)

        return render

    def _catch_up(self, sub: Subscription) -> Render:
        """For a subscriber that fell behind: one merged delta from what it last got to now."""

        def render() -> bytes | None:
            base = self.store.get(sub.at_seq)
            if base is None or base.epoch != sub.channel.version.epoch:
                sub.catching_up = False
                sub.at_seq = sub.channel.version.seq
                channel = sub.channel
                return sub.connection.frame("snapshot", sub, channel.snapshot_payload(), channel.version.tag)
            return self._bridge(sub, base)()

        return render

    def _drop_idle_channels(self) -> None:
        for key in [k for k, c in self.channels.items() if not c.subs]:
            del self.channels[key]

    # ---- fan-out -------------------------------------------------------------------------------

    def publish(self, version: Version) -> None:
        """Called by the store for every new version: one delta per channel, the same bytes for all."""
        previous, self._last_version = self._last_version, version
        alerts = self.detector.detect(previous, version) if previous.epoch == version.epoch else []
        for channel in list(self.channels.values()):
            rows = channel.rows_at(version)
            change = diff.delta(channel.version, channel.rows, version, rows)
            channel.version, channel.rows = version, rows
            payload = orjson.dumps(change) if change is not None else None
            for sub in list(channel.subs):
                connection = sub.connection
                if sub.catching_up:
                    continue
                if payload is None:
                    if sub.pending == 0:
                        sub.at_seq = version.seq
                    continue
                if sub.pending > 0:
                    sub.catching_up = True
                    connection.push(self._catch_up(sub))
                    continue
                sub.pending += 1
                sub.at_seq = version.seq
                connection.push(_Counted(connection.frame("delta", sub, payload, version.tag), sub))
        if alerts:
            self._send_alerts(alerts, version)

    def _send_alerts(self, alerts: list[dict[str, Any]], version: Version) -> None:
        for alert in alerts:
            payload = orjson.dumps(alert)
            address = alert["token_address"]
            for channel in self.channels.values():
                if address not in channel.rows:
                    continue
                for sub in channel.subs:
                    sub.connection.push(sub.connection.frame("alert", sub, payload, version.tag))

    def heartbeat(self) -> None:
        latest = self.store.latest()
        now = time.time()
        for connection in list(self.connections):
            if connection.kind == "sse":
                for sub in connection.subs.values():
                    seq = sub.at_seq
                    payload = orjson.dumps({"epoch": latest.epoch, "seq": seq, "at": _iso_now(now)})
                    connection.push(sse_frame("heartbeat", f"{latest.epoch}:{seq}", payload))
            else:
                payload = orjson.dumps({"epoch": latest.epoch, "seq": latest.seq, "at": _iso_now(now)})
                connection.push(ws_frame("heartbeat", None, payload))

    async def run_heartbeats(self) -> None:
        while True:
            await anyio.sleep(self.heartbeat_s)
            self.heartbeat()


class _Counted(bytes):
    """A queued delta that tells its subscription when it has left the queue."""

    sub: Subscription

    def __new__(cls, data: bytes, sub: Subscription) -> "_Counted":
        item = super().__new__(cls, data)
        item.sub = sub
        return item


def _iso_now(now: float) -> str:
    from app.sources.values import iso

    return iso(now) or ""
