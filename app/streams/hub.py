"""The hub: connections, channels and subscriptions, and what bounds them; every new version fans out from here.

`Hub.publish` is called by the store for every new version, with the alerts that version raised; the fan-out
itself (one delta per channel, encoded once, the same frame for every subscriber, in slices that never
hold the event loop long) is app.streams.fanout. One `Channel` per distinct view or watchlist
(app.streams.channel); each delta is written straight onto an idle subscriber's socket (the fast path,
app.streams.direct) or appended to its connection's queue (app.streams.connection), whose writer sends it.

Also here: subscribing (a snapshot, or a bridging delta for a resume) within the limits on distinct views
(`max_views` per process, `max_views_per_client` per client address: past them `ViewLimitError`),
rendering the lazily queued items (snapshots, resume bridges, merged catch-ups, heartbeats, alerts), the
heartbeat and slow-client sweep, and `watched()` for the ingest. docs/BENCHMARKS.md ("Streams") has the
numbers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

import anyio
import orjson
from prometheus_client import Histogram

from app import query
from app.api.metrics import Metrics
from app.serving import release_memory
from app.sources.values import iso
from app.store.base import Store, Version
from app.streams import signals
from app.streams.channel import IDLE, RESUME, SNAPSHOT, SYNC, Channel, Subscription
from app.streams.connection import ITEM_HEARTBEAT, ITEM_SYNC, MAX_QUEUE_BYTES, Connection
from app.streams.deflate import FrameCache
from app.streams.fanout import FanOut
from app.streams.frames import Alert
from app.streams.histogram import FastHistogram
from app.streams.transport import Framing

log = logging.getLogger("app.streams")

SWEEP_S = 0.25  # how often pending writes are checked against the write timeout
PROBES_PER_S = 0.5  # how often each stream socket's kernel backlog is read (spread over the sweeps)
RELEASE_S, RELEASE_BYTES = 10.0, 16 << 20  # hand freed memory back at most this often, once this much was let go


class ViewLimitError(Exception):
    """A subscription that would open a view past `max_views` (503) or `max_views_per_client` (429)."""

    code = "too_many_views"

    def __init__(self, message: str, status: int, retry_after: int):
        super().__init__(message)
        self.message, self.status, self.retry_after = message, status, retry_after

    def body(self) -> bytes:
        return orjson.dumps({"error": {"code": self.code, "message": self.message, "param": None}})


class Hub:
    def __init__(self, store: Store, metrics: Metrics, max_connections: int,
                 heartbeat_s: float, *, direct_writes: bool = True, max_views: int = 1000,
                 max_views_per_client: int = 100, views: query.ViewCache | None = None,
                 stall_s: float | None = None):
        self.store = store
        self.metrics = metrics
        self.max_connections = max_connections
        self.heartbeat_s = heartbeat_s
        self.max_views = max_views
        self.max_views_per_client = max_views_per_client
        self.views = views if views is not None else query.ViewCache()  # shared with REST (app.service)
        # A client with bytes pending that acknowledges none of them for this long is too slow.
        self.stall_s = stall_s if stall_s is not None else min(10.0, max(2.0, 2 * heartbeat_s))
        # False: never write onto a socket from publish (app.streams.direct); every frame goes through the
        # connection's queue and its writer's ASGI send. Only tests turn it off, to prove that path.
        self.direct_writes = direct_writes
        self.channels: dict[str, Channel] = {}
        self.connections: set[Connection] = set()
        self._client_views: dict[str, dict[str, int]] = {}  # client -> channel key -> its subscriptions
        self.queue_bytes = 0
        self.closing = False
        self.published = 0  # versions fanned out
        self.deflated = FrameCache()  # compressed WebSocket frames, once for every subscriber (app.streams.deflate)
        self._last_version = store.latest()
        self._sweeps = 0
        self._beat_at = ""
        self._beat_ms = -1
        metrics.queue_bytes.set_function(lambda: self.queue_bytes)
        metrics.frame_cache_bytes.set_function(self.frame_cache_bytes)
        self.delivery = FastHistogram(
            "stream_delivery_seconds",
            "Time from a version's commit to its live delta being handed to a client's socket",
            (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5), metrics.registry)
        self.loop_lag = FastHistogram(
            "event_loop_lag_seconds", "How late the event loop ran a timer (sampled every 0.25 s): what every "
            "request waits on top of its own work", (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            metrics.registry)
        self.fanout = Histogram(
            "stream_fanout_seconds", "Time publish() takes to compute and queue one version for every subscriber",
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
            registry=metrics.registry)
        self.fanout_pass = FanOut(self.channels, self.views, self._last_version, delivery=self.delivery,
                                  duration=self.fanout)
        self.written_directly = self.fanout_pass.written_directly  # live deltas the fast path wrote, by kind
        self._stop_listening = store.listen(self.publish)

    # ---- connections -----------------------------------------------------------------------------

    def connect(self, framing: Framing, client: str = "-") -> Connection | None:
        """A new connection whose events `framing` frames (app.streams.frames: SSE, WS), or None when
        MAX_CONNECTIONS are open (or the hub is shutting down)."""
        if self.closing or len(self.connections) >= self.max_connections:
            return None
        connection = Connection(self, framing, client)
        self.connections.add(connection)
        self.metrics.connections.labels(framing.name).inc()
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
        writer gets to them, from the channel's version at that moment. Raises `ViewLimitError` (the
        subscription it would replace is kept) when it would open a view past the limits."""
        key = f"v:{view.key}" if view is not None else "w:" + ",".join(tokens or ())
        self._check_view_limits(connection, sub_id, key)
        self.unsubscribe(connection, sub_id)
        channel = self.channels.get(key)
        if channel is None:
            channel = Channel(key, view, tuple(tokens) if tokens is not None else None, self.store.latest(),
                              self.views)
            self.channels[key] = channel
        sub = Subscription(sub_id, connection, channel)
        channel.subs[sub] = None
        connection.subs[sub_id] = sub
        views = self._client_views.setdefault(connection.client, {})
        views[key] = views.get(key, 0) + 1
        base = self.resumable(since)
        if base is not None and base.seq <= channel.version.seq and base.epoch == channel.version.epoch:
            sub.delivered, sub.epoch, sub.sync = base.seq, base.epoch, RESUME
        else:
            sub.sync = SNAPSHOT
        sub.state = SYNC
        if connection.backlog() > MAX_QUEUE_BYTES // 2:
            connection.drop_slow()  # subscribing over and over without reading
        else:
            connection.enqueue((ITEM_SYNC, sub, None, 0, 0))
        return sub

    def _check_view_limits(self, connection: Connection, sub_id: str | None, key: str) -> None:
        old = connection.subs.get(sub_id)
        old_key = old.channel.key if old is not None else None
        if key == old_key:
            return
        views = self._client_views.get(connection.client, {})
        freed = old_key is not None and views.get(old_key) == 1  # replacing frees one of the client's views
        if key not in views and len(views) - freed >= self.max_views_per_client:
            raise ViewLimitError(f"this client holds its maximum of {self.max_views_per_client} distinct views "
                                 "open; close one or share a view", 429, 5)
        freed = old is not None and len(old.channel.subs) == 1
        if key not in self.channels and len(self.channels) - freed >= self.max_views:
            raise ViewLimitError(f"the server holds its maximum of {self.max_views} distinct views; subscribe to "
                                 "a view already open or retry later", 503, 30)

    def unsubscribe(self, connection: Connection, sub_id: str | None) -> bool:
        sub = connection.subs.pop(sub_id, None)
        if sub is None:
            return False
        self.detach(sub)
        return True

    def detach(self, sub: Subscription) -> None:
        channel = sub.channel
        if channel.subs.pop(sub, False) is None:  # it was there: count it out of its client's views
            client = sub.connection.client
            views = self._client_views.get(client)
            if views is not None:
                left = views.get(channel.key, 0) - 1
                if left > 0:
                    views[channel.key] = left
                else:
                    views.pop(channel.key, None)
                    if not views:
                        del self._client_views[client]
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

    def frame_cache_bytes(self) -> int:
        """Bytes of shared frames held: every channel's of its current version, and the compressed ones."""
        return self.deflated.bytes + sum(channel.cache_bytes for channel in list(self.channels.values()))

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
        framing = connection.framing
        if base is None:
            return channel.frame(framing, sub.id, "snapshot", "snapshot", channel.snapshot_payload)
        payload = channel.bridge_payload(base)
        if payload is None:
            if mode != RESUME:
                return None  # the client's view is already the current one
            return channel.frame(framing, sub.id, "delta", ("empty", base.seq), lambda: orjson.dumps(
                {"epoch": current.epoch, "seq": current.seq, "prev_seq": base.seq, "upsert": [], "remove": []}))
        return channel.frame(framing, sub.id, "delta", ("bridge", base.seq), lambda: payload)

    def render_heartbeat(self, connection: Connection, sub: Subscription | None) -> bytes | str:
        at = self._now_iso()
        if sub is None:  # a connection without subscriptions: the latest seq
            latest = self.store.latest()
            return connection.framing.event("heartbeat", latest.tag, None, orjson.dumps(
                {"epoch": latest.epoch, "seq": latest.seq, "at": at}))
        payload = orjson.dumps({"epoch": sub.epoch, "seq": sub.delivered, "at": at})
        return connection.framing.event("heartbeat", f"{sub.epoch}:{sub.delivered}", sub.id, payload)

    def render_alert(self, connection: Connection, sub: Subscription, alert: Alert) -> bytes | str:
        return connection.framing.alert(f"{sub.epoch}:{sub.delivered}", sub.id, alert)

    def _now_iso(self) -> str:
        now = time.time()
        millisecond = int(now * 1000)
        if millisecond != self._beat_ms:
            self._beat_ms, self._beat_at = millisecond, iso(now) or ""
        return self._beat_at

    # ---- fan-out -------------------------------------------------------------------------------

    def publish(self, version: Version) -> None:
        """Called by the store for every new version: its alerts, then the fan-out (app.streams.fanout)."""
        previous, self._last_version = self._last_version, version
        self.published += 1
        same_history = previous.epoch == version.epoch and previous.seq < version.seq
        alerts = list(version.alerts) if same_history else []  # computed once, by the writer
        self.fanout_pass.publish(version, alerts)

    def observe_delivery(self, seq: int) -> None:
        """A queued live delta of version `seq` reached its writer: commit -> delivery, into the histogram."""
        started = self.fanout_pass.published_at.get(seq)
        if started is not None:
            self.delivery.observe(time.perf_counter() - started)

    # ---- heartbeats and write timeouts -----------------------------------------------------------

    def heartbeat(self) -> None:
        """Queue a heartbeat for every subscription (and every connection without one, where its framing
        says so: a WebSocket) that has none queued."""
        for connection in list(self.connections):
            if connection.closed:
                continue
            if not connection.subs:
                if connection.framing.heartbeat_without_subscriptions:
                    connection.enqueue((ITEM_HEARTBEAT, None, None, 0, 0))
                continue
            for sub in list(connection.subs.values()):
                if not sub.beat:
                    sub.beat = True
                    connection.enqueue((ITEM_HEARTBEAT, sub, None, 0, 0))

    def sweep(self, now: float) -> None:
        """Drop as slow every connection whose write has been pending past its deadline, or (a share of
        the connections each sweep, each every 2 s) whose socket has had bytes pending and none
        acknowledged for `stall_s`."""
        connections = list(self.connections)
        for connection in connections:
            deadline = connection.deadline
            if deadline and now > deadline:
                connection.expire()
        share = max(1, round(1 / (PROBES_PER_S * SWEEP_S)))
        self._sweeps += 1
        for connection in connections[self._sweeps % share::share]:
            if connection.probe_stall(now, self.stall_s):
                connection.drop_slow()

    async def run_heartbeats(self) -> None:
        """Heartbeats every HEARTBEAT_S, the slow-client sweep every SWEEP_S, and now and then memory that
        bounded caches let go handed back to the system (app.serving.release_memory)."""
        loop = asyncio.get_running_loop()
        next_beat = loop.time() + self.heartbeat_s
        next_release, released = loop.time(), self.views.evicted
        while True:
            delay = max(0.0, min(SWEEP_S, next_beat - loop.time()))
            due = loop.time() + delay
            await anyio.sleep(delay)
            now = loop.time()
            self.loop_lag.observe(max(0.0, now - due))
            self.sweep(now)
            if now >= next_beat:
                next_beat = max(next_beat + self.heartbeat_s, now)
                self.heartbeat()
            if now >= next_release and self.views.evicted - released >= RELEASE_BYTES:
                next_release, released = now + RELEASE_S, self.views.evicted
                await anyio.to_thread.run_sync(release_memory)

    # ---- process signals ---------------------------------------------------------------------------

    def install_signal_hook(self) -> Callable[[], None]:
        """SIGTERM/SIGINT end every stream at once (under uvicorn's own signal handling only); returns the
        function that puts the previous handlers back. See app.streams.signals."""
        return signals.install_signal_hook(self.close_all)
