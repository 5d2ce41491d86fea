"""Subscriptions, channels and outgoing queues: every new version fans out from here.

One `Channel` per distinct view (its canonical key) or watchlist computes each version's delta once and
encodes it once; every SSE subscriber of that channel gets the same bytes object, and every WebSocket
subscription with the same id the same text (WebSocket frames only prepend the type and subscription id).

Each `Connection` has its own queue drained by one writer (the SSE response or the WebSocket writer task),
so a slow client never delays another: `publish` only appends to queues, it never waits.

A subscription is in one of three states:

- IDLE: nothing of it is queued; a new delta is queued as is (the shared frame).
- LIVE: one live delta is queued and not yet written; a further change switches it to SYNC.
- SYNC: a lazily rendered item is queued (a snapshot, a resume bridge, or a catch-up); live deltas are
  skipped until the writer reaches it, and it then renders one delta from the seq the client is at
  (`Subscription.delivered`) to the channel's current version. So a subscriber that does not drain gets
  one merged catch-up delta, however many versions went by.

`Subscription.delivered` is the seq whose view the client holds once the frames written so far have been
applied. Heartbeat and alert frames are rendered when written, with that seq as their event id, so every
id a client sees names a version whose view equals the client's state: resuming from any of them is exact.

A connection whose queue passes `MAX_QUEUE_BYTES` is closed ("slow"; WebSocket 4008, SSE stream ends);
a write that does not complete within the service's write timeout closes it the same way and drops its
socket: the writers note a deadline while a write is pending and `sweep` (every SWEEP_S) enforces it.

The fast path: a live delta for an IDLE subscriber whose writer is parked (nothing queued, no write in
progress) and whose transport is not paused is written straight onto the transport by `publish`, framed
once per version exactly as uvicorn would frame it (`DirectSSE`, `DirectWS`). Everything else goes
through the queue and the writer's ASGI send. docs/BENCHMARKS.md ("Streams") has the numbers.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import signal
import threading
import time
from collections import deque
from typing import Any, Callable, Sequence

import anyio
import orjson
from prometheus_client import Histogram
from prometheus_client.core import HistogramMetricFamily

from app import diff, query
from app.api.metrics import Metrics
from app.sources.values import iso
from app.store.base import Store, Version
from app.streams.alerts import AlertDetector

log = logging.getLogger("app.streams")

MAX_QUEUE_BYTES = 1 << 20
MAX_BATCH_BYTES = 256 * 1024
SWEEP_S = 0.25  # how often writes are checked against the write timeout  # an SSE writer joins queued frames into one write up to this size

# Subscription states
IDLE, LIVE, SYNC = 0, 1, 2
# What a SYNC item renders
SNAPSHOT, CATCH_UP, RESUME = "snapshot", "catch_up", "resume"
# Queue item kinds: (op, sub, data, size, seq)
_RAW, _LIVE, _SYNC, _ALERT, _BEAT = 0, 1, 2, 3, 4


def sse_frame(event: str, tag: str, payload: bytes) -> bytes:
    return b"id: " + tag.encode() + b"\nevent: " + event.encode() + b"\ndata: " + payload + b"\n\n"


def ws_frame(kind: str, sub_id: str | None, payload: bytes) -> str:
    """`{"type": kind, "id": sub_id, ...payload}` (text) without decoding the shared payload."""
    head = b'{"type":"' + kind.encode() + b'"'
    if sub_id is not None:
        head += b',"id":' + orjson.dumps(sub_id)
    if payload == b"{}":
        return (head + b"}").decode()
    return (head + b"," + payload[1:]).decode()


def ws_alert_payload(alert: dict[str, Any]) -> bytes:
    """An alert as a WebSocket object's fields: its own `type` becomes `alert_type` ("type" is "alert")."""
    fields = {"alert_type": alert["type"]}
    fields.update((k, v) for k, v in alert.items() if k != "type")
    return orjson.dumps(fields)


class Connection:
    """One SSE or WebSocket client: subscriptions plus an outgoing queue drained by one writer."""

    __slots__ = ("hub", "kind", "subs", "queue", "queued_bytes", "closed", "_waiter", "transport", "task",
                 "deadline", "direct", "__weakref__")

    def __init__(self, hub: "Hub", kind: str):
        self.hub = hub
        self.kind = kind  # "sse" or "ws"
        self.subs: dict[str | None, Subscription] = {}
        self.queue: deque[tuple] = deque()
        self.queued_bytes = 0
        self.closed: str | None = None  # why, once closed: "slow", "shutdown", "client", "too_big"
        self._waiter: asyncio.Future[None] | None = None
        # Set by the writer: the socket's transport (to drop a client that stopped reading), the writer's
        # task (cancelled instead when the transport is unknown), and while a write is in progress, the
        # loop time by which it must be done (the hub's sweeper enforces it; no timer per write).
        self.transport: Any = None
        self.task: asyncio.Task[Any] | None = None
        self.deadline = 0.0
        self.direct: DirectSSE | DirectWS | None = None  # the fast path for live deltas (see publish)

    # ---- producing ------------------------------------------------------------------------------

    def _append(self, item: tuple) -> None:
        self.queue.append(item)
        size = item[3]
        if size:
            self.queued_bytes += size
            self.hub.queue_bytes += size
            if self.queued_bytes > MAX_QUEUE_BYTES:
                self.close("slow")
                return
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def send(self, frame: bytes | str) -> None:
        """Queue a frame for this connection (a pong, an error)."""
        if not self.closed:
            self._append((_RAW, None, frame, len(frame), 0))

    # ---- consuming (the writer) -------------------------------------------------------------------

    def take(self, max_bytes: int = MAX_BATCH_BYTES) -> list[bytes | str] | None:
        """The frames ready to write now (possibly none); None once the connection is closed."""
        frames: list[bytes | str] = []
        total = 0
        queue = self.queue
        while queue and total < max_bytes:
            if self.closed:
                return None
            frame = self._render(queue.popleft())
            if frame is not None:
                frames.append(frame)
                total += len(frame)
        if self.closed:
            return None
        return frames

    async def next_batch(self, max_bytes: int = MAX_BATCH_BYTES) -> list[bytes | str] | None:
        """Wait for frames; None once the connection is closed."""
        while True:
            frames = self.take(max_bytes)
            if frames is None or frames:
                return frames
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def _render(self, item: tuple) -> bytes | str | None:
        op, sub, data, size, seq = item
        if size:
            self.queued_bytes -= size
            self.hub.queue_bytes -= size
        if op == _RAW:
            return data
        if sub is None:  # a heartbeat of a WebSocket without subscriptions
            return self.hub.render_heartbeat(self, None)
        if self.subs.get(sub.id) is not sub:
            return None  # unsubscribed or replaced since it was queued
        if op == _LIVE:
            if sub.state == LIVE:
                # Nothing changed the view since this delta was queued (a change would have made it SYNC):
                # once written, the client holds the view of the channel's current version.
                sub.state = IDLE
                sub.delivered = sub.channel.version.seq
            else:
                sub.delivered = seq
            self.hub.delivered(seq)
            return data
        if op == _SYNC:
            return self.hub.render_sync(sub)
        if op == _BEAT:
            sub.beat = False
            return self.hub.render_heartbeat(self, sub)
        return self.hub.render_alert(self, sub, data)

    def parked(self) -> bool:
        """The writer waits for frames (nothing queued, no write in progress)."""
        waiter = self._waiter
        return waiter is not None and not waiter.done() and not self.queue and not self.closed

    def expire(self) -> None:
        """A write took longer than the write timeout: closed as slow, and its socket dropped."""
        self.close("slow")
        self.deadline = 0.0
        if self.transport is not None:
            self.transport.abort()  # the pending write returns once the server sees the connection lost
        elif self.task is not None:
            self.task.cancel()

    def close(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = reason
        self.hub.queue_bytes -= self.queued_bytes
        self.queued_bytes = 0
        self.queue.clear()
        if reason == "slow":
            self.hub.metrics.dropped_clients.labels(self.kind).inc()
            log.info("closed a %s client too slow to keep up", self.kind)
        for sub in list(self.subs.values()):
            self.hub.detach(sub)
        self.subs.clear()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class FastHistogram:
    """A Prometheus histogram without a lock or label lookup per observation (one bisect, one add):
    observed once per delivered frame. Exposed through a collector on the service's registry."""

    def __init__(self, name: str, documentation: str, buckets: Sequence[float], registry: Any):
        self.name, self.documentation = name, documentation
        self.bounds = list(buckets)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0
        registry.register(self)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def collect(self) -> Any:
        family = HistogramMetricFamily(self.name, self.documentation)
        cumulative, buckets = 0, []
        for bound, count in zip(self.bounds + [float("inf")], self.counts):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        family.add_metric([], buckets, self.sum)
        yield family

    def describe(self) -> Any:
        return []


def sse_chunk(frame: bytes) -> bytes:
    """An SSE frame as one HTTP/1.1 chunk, exactly as uvicorn frames a response body part."""
    return b"%x\r\n" % len(frame) + frame + b"\r\n"


def ws_wire(text: str) -> bytes:
    """A text message as one unmasked, uncompressed server frame (RFC 6455 §5.2)."""
    data = text.encode()
    size = len(data)
    if size < 126:
        return bytes((0x81, size)) + data
    if size < 1 << 16:
        return b"\x81\x7e" + size.to_bytes(2, "big") + data
    return b"\x81\x7f" + size.to_bytes(8, "big") + data


class DirectSSE:
    """The fast path of a live delta to an idle SSE client: its chunk straight onto the socket's transport.

    The same bytes uvicorn's httptools protocol writes for a body part (`sse_chunk`), written only while
    that protocol would write them at once itself: response streaming, chunked, connection up, writing
    not paused. Anything else (and every other frame) goes through the queue and the writer's ASGI send.
    It saves the writer's wake-up and the ASGI call per subscriber, which is most of the cost of fan-out.
    """

    __slots__ = ("cycle", "flow", "transport")

    def __init__(self, cycle: Any):
        self.cycle, self.flow, self.transport = cycle, cycle.flow, cycle.transport

    @classmethod
    def for_send(cls, server_send: Any) -> "DirectSSE | None":
        cycle = getattr(server_send, "__self__", None)
        if all(hasattr(cycle, a) for a in ("chunked_encoding", "flow", "disconnected", "response_complete")) \
                and cycle.chunked_encoding is True and hasattr(cycle.flow, "write_paused"):
            return cls(cycle)
        return None

    def write(self, chunk: bytes) -> bool:
        cycle = self.cycle
        if cycle.disconnected or cycle.response_complete or self.flow.write_paused:
            return False
        self.transport.write(chunk)
        return True


class DirectWS:
    """The same for a WebSocket served by uvicorn's websockets-sansio protocol, when no extension (such as
    permessage-deflate, which compresses per connection) was negotiated: the frame is the same bytes for
    every subscriber (`ws_wire`), which is what `Protocol.send_text` would serialise."""

    __slots__ = ("proto", "conn", "transport", "open_state")

    def __init__(self, proto: Any):
        from websockets.protocol import State

        self.proto, self.conn, self.transport, self.open_state = proto, proto.conn, proto.transport, State.OPEN

    @classmethod
    def for_send(cls, server_send: Any) -> "DirectWS | None":
        proto = getattr(server_send, "__self__", None)
        conn = getattr(proto, "conn", None)
        if conn is None or not all(hasattr(proto, a) for a in ("writable", "close_sent", "transport")):
            return None
        try:
            from websockets.protocol import Protocol
        except ImportError:  # pragma: no cover
            return None
        if not isinstance(conn, Protocol) or conn.extensions:
            return None
        return cls(proto)

    def write(self, frame: bytes) -> bool:
        proto, conn = self.proto, self.conn
        if proto.close_sent or not proto.writable.is_set() or conn.state is not self.open_state \
                or conn.expect_continuation_frame or self.transport.is_closing():
            return False
        self.transport.write(frame)
        return True


class Subscription:
    __slots__ = ("id", "connection", "channel", "state", "sync", "delivered", "epoch", "beat")

    def __init__(self, sub_id: str | None, connection: Connection, channel: "Channel"):
        self.id = sub_id
        self.connection = connection
        self.channel = channel
        self.state = IDLE
        self.sync = SNAPSHOT
        self.delivered = channel.version.seq  # the client's rows are those of the channel at this seq
        self.epoch = channel.version.epoch
        self.beat = False  # a heartbeat is queued and not yet written


class Channel:
    """One view (or watchlist) shared by every subscriber that asked for it."""

    def __init__(self, key: str, view: query.View | None, tokens: tuple[str, ...] | None, version: Version):
        self.key = key
        self.view = view
        self.tokens = tokens
        self.version = version
        self.rows = self.rows_at(version)
        self.subs: dict[Subscription, None] = {}
        self._cache: dict[Any, Any] = {}  # frames of the current version (snapshot, catch-ups)
        self._cache_seq = version.seq

    def rows_at(self, version: Version) -> list[str]:
        if self.view is not None:
            return diff.view_rows(version, self.view)
        return diff.watch_rows(version, self.tokens or ())

    def advance(self, version: Version, rows: list[str]) -> None:
        self.version, self.rows = version, rows

    def cached(self, key: Any, make: Callable[[], Any]) -> Any:
        """A value derived from the current version, computed once for every subscriber."""
        if self._cache_seq != self.version.seq or len(self._cache) > 256:
            self._cache.clear()
            self._cache_seq = self.version.seq
        try:
            return self._cache[key]
        except KeyError:
            value = self._cache[key] = make()
            return value

    def view_dict(self) -> dict[str, Any]:
        return self.view.as_dict() if self.view is not None else {"tokens": list(self.tokens or ())}

    def snapshot_payload(self) -> bytes:
        """The snapshot of the channel's current version, encoded once per version."""

        def make() -> bytes:
            version = self.version
            encoded = version.encoded
            body = orjson.dumps({"epoch": version.epoch, "seq": version.seq, "view": self.view_dict()})
            rows = b"[" + b",".join([encoded[a] for a in self.rows]) + b"]"
            return body[:-1] + b',"rows":' + rows + b"}"

        return self.cached("snapshot", make)

    def bridge_payload(self, base: Version) -> bytes | None:
        """The delta from `base` (a held version of this epoch) to the current version; None if no change."""

        def make() -> bytes | None:
            change = diff.delta(base, self.rows_at(base), self.version, self.rows)
            return orjson.dumps(change) if change is not None else None

        return self.cached(("bridge", base.seq), make)

    def frame(self, connection: Connection, sub: Subscription, event: str, key: Any,
              payload: Callable[[], bytes]) -> bytes | str:
        """`payload()` framed for `connection`'s kind, shared by every subscriber that needs the same frame."""
        if connection.kind == "sse":
            return self.cached((key, "sse"), lambda: sse_frame(event, self.version.tag, payload()))
        return self.cached((key, "ws", sub.id), lambda: ws_frame(event, sub.id, payload()))


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
        self.published = 0  # versions fanned out
        self._published_at: dict[int, float] = {}  # seq -> perf_counter() when its fan-out began
        self._last_version = store.latest()
        self._stop_listening = store.listen(self.publish)
        self._beat_at = ""
        self._beat_ms = -1
        metrics.queue_bytes.set_function(lambda: self.queue_bytes)
        self.delivery = FastHistogram(
            "stream_delivery_seconds",
            "Time from a version's commit to its live delta being handed to a client's socket",
            (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5), metrics.registry)
        self.fanout = Histogram(
            "stream_fanout_seconds", "Time publish() takes to compute and queue one version for every subscriber",
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
            registry=metrics.registry)

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

    def close_all(self) -> None:
        """Shutdown: every stream ends cleanly (SSE responses complete, WebSockets close 1001)."""
        if self.closing:
            return
        self.closing = True
        for connection in list(self.connections):
            connection.close("shutdown")
        self._stop_listening()

    # ---- subscriptions -----------------------------------------------------------------------------

    def subscribe(self, connection: Connection, sub_id: str | None, *, view: query.View | None = None,
                  tokens: Sequence[str] | None = None, since: str | None = None) -> Subscription:
        """Register (replacing any subscription with the same id) and queue the first message: a bridging
        delta from `since` when that version can be honoured, else a snapshot. Both are rendered when the
        writer gets to them, from the channel's version at that moment."""
        self.unsubscribe(connection, sub_id)
        key = f"v:{view.key}" if view is not None else "w:" + ",".join(tokens or ())
        channel = self.channels.get(key)
        if channel is None:
            channel = Channel(key, view, tuple(tokens) if tokens is not None else None, self.store.latest())
            self.channels[key] = channel
        sub = Subscription(sub_id, connection, channel)
        channel.subs[sub] = None
        connection.subs[sub_id] = sub
        base = self.resumable(since)
        if base is not None and base.seq <= channel.version.seq and base.epoch == channel.version.epoch:
            sub.delivered, sub.epoch, sub.sync = base.seq, base.epoch, RESUME
        else:
            sub.sync = SNAPSHOT
        sub.state = SYNC
        if connection.queued_bytes > MAX_QUEUE_BYTES // 2:
            connection.close("slow")  # subscribing over and over without reading
        else:
            connection._append((_SYNC, sub, None, 0, 0))
        return sub

    def unsubscribe(self, connection: Connection, sub_id: str | None) -> bool:
        sub = connection.subs.pop(sub_id, None)
        if sub is None:
            return False
        self.detach(sub)
        return True

    def detach(self, sub: Subscription) -> None:
        channel = sub.channel
        channel.subs.pop(sub, None)
        if not channel.subs and self.channels.get(channel.key) is channel:
            del self.channels[channel.key]

    def resumable(self, since: str | None) -> Version | None:
        """The held version `since` ("<epoch>:<seq>") names, if it is of this epoch and not in the future."""
        if not since or not isinstance(since, str):
            return None
        epoch, _, seq = since.strip().rpartition(":")
        if epoch != self.store.epoch or not (seq.isascii() and seq.isdigit()) or len(seq) > 18:
            return None
        version = self.store.get(int(seq))
        if version is None or version.epoch != epoch:
            return None
        return version

    # ---- rendering (called by the writer, in queue order) -----------------------------------------

    def render_sync(self, sub: Subscription) -> bytes | str | None:
        """A queued snapshot / resume bridge / catch-up, from `sub.delivered` to the channel's version now."""
        channel, connection = sub.channel, sub.connection
        current = channel.version
        mode, sub.sync = sub.sync, SNAPSHOT
        sub.state = IDLE
        base = None
        if mode != SNAPSHOT and sub.epoch == current.epoch:
            base = self.store.get(sub.delivered)
            if base is not None and (base.epoch != current.epoch or base.seq > current.seq):
                base = None
        sub.delivered, sub.epoch = current.seq, current.epoch
        if base is None:
            return channel.frame(connection, sub, "snapshot", "snapshot", channel.snapshot_payload)
        payload = channel.bridge_payload(base)
        if payload is None:
            if mode != RESUME:
                return None  # the client's view is already the current one
            return channel.frame(connection, sub, "delta", ("empty", base.seq), lambda: orjson.dumps(
                {"epoch": current.epoch, "seq": current.seq, "prev_seq": base.seq, "upsert": [], "remove": []}))
        return channel.frame(connection, sub, "delta", ("bridge", base.seq), lambda: payload)

    def render_heartbeat(self, connection: Connection, sub: Subscription | None) -> bytes | str:
        at = self._now_iso()
        if sub is None:  # a WebSocket without subscriptions
            latest = self.store.latest()
            return ws_frame("heartbeat", None, orjson.dumps({"epoch": latest.epoch, "seq": latest.seq, "at": at}))
        payload = orjson.dumps({"epoch": sub.epoch, "seq": sub.delivered, "at": at})
        if connection.kind == "sse":
            return sse_frame("heartbeat", f"{sub.epoch}:{sub.delivered}", payload)
        return ws_frame("heartbeat", sub.id, payload)

    def render_alert(self, connection: Connection, sub: Subscription, alert: dict[str, Any]) -> bytes | str:
        if connection.kind == "sse":
            return sse_frame("alert", f"{sub.epoch}:{sub.delivered}", alert["_sse"])
        return ws_frame("alert", sub.id, alert["_ws"])

    def _now_iso(self) -> str:
        now = time.time()
        millisecond = int(now * 1000)
        if millisecond != self._beat_ms:
            self._beat_ms, self._beat_at = millisecond, iso(now) or ""
        return self._beat_at

    # ---- fan-out -------------------------------------------------------------------------------

    def publish(self, version: Version) -> None:
        """Called by the store for every new version: one delta per channel, the same frame for all."""
        started = time.perf_counter()
        previous, self._last_version = self._last_version, version
        self.published += 1
        self._published_at[version.seq] = started
        if len(self._published_at) > 64:
            for seq in sorted(self._published_at)[:-32]:
                del self._published_at[seq]
        same_history = previous.epoch == version.epoch and previous.seq < version.seq
        alerts = self.detector.detect(previous, version) if same_history else []
        for channel in list(self.channels.values()):
            try:
                self._publish_channel(channel, version)
            except Exception:  # noqa: BLE001 - one bad view must not stop the others
                log.exception("stream fan-out failed for %s", channel.key)
        if alerts:
            self._send_alerts(alerts)
        self.fanout.observe(time.perf_counter() - started)

    def _publish_channel(self, channel: Channel, version: Version) -> None:
        old = channel.version
        rows = channel.rows_at(version)
        if old.epoch != version.epoch or old.seq >= version.seq:
            # A new history (or a restored one): every subscriber starts again from a snapshot.
            channel.advance(version, rows)
            for sub in channel.subs:
                sub.sync = SNAPSHOT
                if sub.state != SYNC:
                    sub.state = SYNC
                    sub.connection._append((_SYNC, sub, None, 0, 0))
            return
        change = diff.delta(old, channel.rows, version, rows)
        channel.advance(version, rows)
        seq = version.seq
        if change is None:
            for sub in channel.subs:
                if sub.state == IDLE:
                    sub.delivered = seq  # the client's view is this version's too
            return
        payload = orjson.dumps(change)
        sse: bytes | None = None
        sse_wire: bytes | None = None
        ws: dict[str | None, str] = {}
        ws_wires: dict[str | None, bytes] = {}
        direct = 0
        for sub in list(channel.subs):
            state = sub.state
            if state == SYNC:
                continue
            connection = sub.connection
            if state == LIVE:  # its previous delta is still queued: switch to one merged catch-up
                sub.state, sub.sync = SYNC, CATCH_UP
                connection._append((_SYNC, sub, None, 0, 0))
                continue
            fast = connection.direct
            if connection.kind == "sse":
                if sse is None:
                    sse = sse_frame("delta", version.tag, payload)
                if fast is not None and connection.parked():
                    if sse_wire is None:
                        sse_wire = sse_chunk(sse)
                    if fast.write(sse_wire):
                        sub.delivered = seq
                        direct += 1
                        continue
                frame: bytes | str = sse
            else:
                frame = ws.get(sub.id)  # type: ignore[assignment]
                if frame is None:
                    frame = ws[sub.id] = ws_frame("delta", sub.id, payload)
                if fast is not None and connection.parked():
                    wire = ws_wires.get(sub.id)
                    if wire is None:
                        wire = ws_wires[sub.id] = ws_wire(frame)
                    if fast.write(wire):
                        sub.delivered = seq
                        direct += 1
                        continue
            sub.state = LIVE
            connection._append((_LIVE, sub, frame, len(frame), seq))
        if direct:
            elapsed = time.perf_counter() - self._published_at[seq]
            observe = self.delivery.observe
            for _ in range(direct):
                observe(elapsed)

    def _send_alerts(self, alerts: list[dict[str, Any]]) -> None:
        for alert in alerts:
            address = alert["token_address"]
            item = {"_sse": orjson.dumps(alert), "_ws": ws_alert_payload(alert)}
            size = len(item["_sse"]) + 40
            for channel in list(self.channels.values()):
                if address not in channel.rows:
                    continue
                for sub in list(channel.subs):
                    sub.connection._append((_ALERT, sub, item, size, 0))

    def delivered(self, seq: int) -> None:
        started = self._published_at.get(seq)
        if started is not None:
            self.delivery.observe(time.perf_counter() - started)

    def heartbeat(self) -> None:
        """Queue a heartbeat for every subscription (and every WebSocket without one), unless one is queued."""
        for connection in list(self.connections):
            if connection.closed:
                continue
            if not connection.subs:
                if connection.kind == "ws":
                    connection._append((_BEAT, None, None, 0, 0))
                continue
            for sub in list(connection.subs.values()):
                if not sub.beat:
                    sub.beat = True
                    connection._append((_BEAT, sub, None, 0, 0))

    def sweep(self, now: float) -> None:
        """Close every connection whose write has been pending past its deadline."""
        for connection in list(self.connections):
            deadline = connection.deadline
            if deadline and now > deadline:
                connection.expire()

    async def run_heartbeats(self) -> None:
        """Heartbeats every HEARTBEAT_S, and the write-timeout sweep every SWEEP_S."""
        loop = asyncio.get_running_loop()
        next_beat = loop.time() + self.heartbeat_s
        while True:
            await anyio.sleep(max(0.0, min(SWEEP_S, next_beat - loop.time())))
            now = loop.time()
            self.sweep(now)
            if now >= next_beat:
                next_beat = max(next_beat + self.heartbeat_s, now)
                self.heartbeat()

    # ---- process signals ---------------------------------------------------------------------------

    def install_signal_hook(self) -> Callable[[], None]:
        """End every stream as soon as uvicorn is told to stop (SIGTERM/SIGINT), not after its graceful
        timeout: uvicorn only runs the lifespan shutdown once open responses have finished, and a stream
        never finishes by itself. Only wraps a handler installed by a uvicorn `Server` (so never in tests
        that embed the server); returns the function that puts the previous handlers back."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        loop = asyncio.get_running_loop()
        installed: dict[int, tuple[Any, Any]] = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(sig)
            if not callable(previous) or not hasattr(getattr(previous, "__self__", None), "should_exit"):
                continue

            def hook(signum: int, frame: Any, _previous: Any = previous) -> None:
                loop.call_soon_threadsafe(self.close_all)
                _previous(signum, frame)

            signal.signal(sig, hook)
            installed[sig] = (previous, hook)

        def uninstall() -> None:
            for sig, (previous, hook) in installed.items():
                if signal.getsignal(sig) is hook:
                    signal.signal(sig, previous)

        return uninstall


def find_server_send(send: Callable[..., Any]) -> Callable[..., Any] | None:
    """The server's own `send` behind an ASGI `send` wrapped by Starlette's middleware: uvicorn's bound
    method, whose object holds the connection's asyncio transport. Or None.

    Used for two things only: stream frames skip the middleware wrappers (they act on the response start,
    which went through them), and a client that stopped reading has its socket aborted (a graceful close
    would wait forever for the peer to take the buffered bytes)."""
    seen: set[int] = set()
    todo: deque[Any] = deque([send])
    while todo and len(seen) < 64:
        obj = todo.popleft()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        transport = getattr(getattr(obj, "__self__", None), "transport", None)
        if transport is not None and callable(getattr(transport, "abort", None)):
            return obj
        func = getattr(obj, "__func__", obj)
        for cell in getattr(func, "__closure__", None) or ():
            try:
                value = cell.cell_contents
            except ValueError:
                continue
            if callable(value):
                todo.append(value)
    return None
