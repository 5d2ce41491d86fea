"""The hub: connections, channels and subscriptions; every new version fans out from here.

`Hub.publish` is called by the store for every new version. One `Channel` per distinct view or watchlist
(app.streams.channel) computes that version's delta once and encodes it once; every SSE subscriber of
that channel gets the same bytes object, and every WebSocket subscription with the same id the same text
(app.streams.frames). Each delta is then either written straight onto an idle subscriber's socket (the
fast path, app.streams.direct) or appended to its connection's queue (app.streams.connection), whose
writer sends it; `publish` never waits.

Also here: subscribing (a snapshot, or a bridging delta for a resume), rendering the lazily queued items
(snapshots, resume bridges, merged catch-ups for subscribers that fell behind, heartbeats, alerts), the
heartbeat and write-timeout loop, and `watched()` for the ingest. The subscription states (IDLE, LIVE,
SYNC) are described in app.streams.channel. docs/BENCHMARKS.md ("Streams") has the numbers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import orjson
from prometheus_client import Histogram

from app import diff, query
from app.api.metrics import Metrics
from app.sources.values import iso
from app.store.base import Store, Version
from app.streams import signals
from app.streams.channel import CATCH_UP, IDLE, LIVE, RESUME, SNAPSHOT, SYNC, Channel, Subscription
from app.streams.connection import (
    ITEM_ALERT,
    ITEM_DELTA,
    ITEM_HEARTBEAT,
    ITEM_SYNC,
    MAX_QUEUE_BYTES,
    Connection,
)
from app.streams.deflate import FrameCache
from app.streams.direct import sse_chunk
from app.streams.frames import sse_frame, ws_alert_payload, ws_frame
from app.streams.histogram import FastHistogram

log = logging.getLogger("app.streams")

SWEEP_S = 0.25  # how often pending writes are checked against the write timeout


class Hub:
    def __init__(self, store: Store, metrics: Metrics, max_connections: int, heartbeat_s: float, *,
                 direct_writes: bool = True):
        self.store = store
        self.metrics = metrics
        self.max_connections = max_connections
        self.heartbeat_s = heartbeat_s
        # False: never write onto a socket from publish (app.streams.direct); every frame goes through the
        # connection's queue and its writer's ASGI send. Only tests turn it off, to prove that path.
        self.direct_writes = direct_writes
        self.channels: dict[str, Channel] = {}
        self.connections: set[Connection] = set()
        self.queue_bytes = 0
        self.closing = False
        self.published = 0  # versions fanned out
        self.written_directly = {"sse": 0, "ws": 0}  # live deltas the fast path wrote, by connection kind
        self.deflated = FrameCache()  # compressed WebSocket frames, once for every subscriber (app.streams.deflate)
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
            connection.enqueue((ITEM_SYNC, sub, None, 0, 0))
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

    def watched(self) -> list[str]:
        """The addresses shown in any live channel's rows (views and watchlists), most watched first: by
        the number of subscriptions showing them, then by their best position in a view, then address.
        The ingest fetches 7-day candles in this order."""
        count: dict[str, int] = {}
        best: dict[str, int] = {}
        for channel in list(self.channels.values()):
            subscribers = len(channel.subs)
            if not subscribers:
                continue
            for position, address in enumerate(channel.rows):
                count[address] = count.get(address, 0) + subscribers
                if position < best.get(address, position + 1):
                    best[address] = position
        return sorted(count, key=lambda address: (-count[address], best[address], address))

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
        alerts = version.alerts if same_history else ()  # computed once, by the writer (app.ingest.leader)
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
                    sub.connection.enqueue((ITEM_SYNC, sub, None, 0, 0))
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
        ws_wires: dict[tuple[str | None, int | None], bytes] = {}
        direct_sse = direct_ws = 0
        for sub in list(channel.subs):
            state = sub.state
            if state == SYNC:
                continue
            connection = sub.connection
            if state == LIVE:  # its previous delta is still queued: switch to one merged catch-up
                sub.state, sub.sync = SYNC, CATCH_UP
                connection.enqueue((ITEM_SYNC, sub, None, 0, 0))
                continue
            # IDLE: written straight onto the socket when the connection's writer is parked (the fast
            # path, app.streams.direct), else queued as a live delta.
            writer = connection.direct_writer
            if connection.kind == "sse":
                if sse is None:
                    sse = sse_frame("delta", version.tag, payload)
                if writer is not None and connection.parked():
                    if sse_wire is None:
                        sse_wire = sse_chunk(sse)
                    if writer.write(sse_wire):
                        sub.delivered = seq
                        direct_sse += 1
                        continue
                frame: bytes | str = sse
            else:
                frame = ws.get(sub.id)  # type: ignore[assignment]
                if frame is None:
                    frame = ws[sub.id] = ws_frame("delta", sub.id, payload)
                if writer is not None and connection.parked():
                    key = (sub.id, writer.bits)  # compressed or not, once per id and window
                    wire = ws_wires.get(key)
                    if wire is None:
                        wire = ws_wires[key] = writer.wire(frame)
                    if writer.write(wire):
                        sub.delivered = seq
                        direct_ws += 1
                        continue
            sub.state = LIVE
            connection.enqueue((ITEM_DELTA, sub, frame, len(frame), seq))
        direct = direct_sse + direct_ws
        if direct:
            self.written_directly["sse"] += direct_sse
            self.written_directly["ws"] += direct_ws
            elapsed = time.perf_counter() - self._published_at[seq]
            observe = self.delivery.observe
            for _ in range(direct):
                observe(elapsed)

    def _send_alerts(self, alerts: Sequence[dict[str, Any]]) -> None:
        for alert in alerts:
            address = alert["token_address"]
            item = {"_sse": orjson.dumps(alert), "_ws": ws_alert_payload(alert)}
            size = len(item["_sse"]) + 40
            for channel in list(self.channels.values()):
                if address not in channel.rows:
                    continue
                for sub in list(channel.subs):
                    sub.connection.enqueue((ITEM_ALERT, sub, item, size, 0))

    def observe_delivery(self, seq: int) -> None:
        """A queued live delta of version `seq` reached its writer: commit -> delivery, into the histogram."""
        started = self._published_at.get(seq)
        if started is not None:
            self.delivery.observe(time.perf_counter() - started)

    # ---- heartbeats and write timeouts -----------------------------------------------------------

    def heartbeat(self) -> None:
        """Queue a heartbeat for every subscription (and every WebSocket without one) that has none queued."""
        for connection in list(self.connections):
            if connection.closed:
                continue
            if not connection.subs:
                if connection.kind == "ws":
                    connection.enqueue((ITEM_HEARTBEAT, None, None, 0, 0))
                continue
            for sub in list(connection.subs.values()):
                if not sub.beat:
                    sub.beat = True
                    connection.enqueue((ITEM_HEARTBEAT, sub, None, 0, 0))

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
        """SIGTERM/SIGINT end every stream at once (under uvicorn's own signal handling only); returns the
        function that puts the previous handlers back. See app.streams.signals."""
        return signals.install_signal_hook(self.close_all)
