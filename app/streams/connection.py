"""One stream client (SSE or WebSocket): its subscriptions, its outgoing queue and the byte accounting of it.

`Hub.publish` only appends to queues (it never waits); one writer per connection (the SSE response, or
the WebSocket writer task) drains the queue with `next_batch`, so a slow client never delays another.
Most items are rendered only when the writer takes them (`_render`): a snapshot or catch-up from the
channel's version at that moment, a heartbeat or alert with the seq the client is at by then.

A client is too slow ("slow"; WebSocket close 4008, the SSE stream ends) when what it has not taken
passes `MAX_QUEUE_BYTES` (our queue plus the transport's write buffer), when a write stays pending past
the write timeout (the writer notes a deadline; the hub's sweeper checks it), or when the kernel holds
bytes for it that it has not acknowledged for that long (`probe`, app.streams.backlog). Then `drop_slow`
puts the close frame (or the SSE end) straight onto the socket after what is already buffered, and the
socket is closed once that is taken, or dropped after `CLOSE_GRACE_S` (the `ender` app.streams.direct found).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, Any, Protocol

from app.streams.channel import IDLE, LIVE, Subscription

if TYPE_CHECKING:
    from collections.abc import Callable

    from app.api.metrics import Metrics
    from app.streams.backlog import Probe
    from app.streams.frames import Alert
    from app.streams.transport import DirectWriter, Framing, Socket

log = logging.getLogger("app.streams")

MAX_QUEUE_BYTES = 1 << 20  # a connection whose queue holds more is closed as too slow
MAX_BATCH_BYTES = 256 * 1024  # an SSE writer joins queued frames into one write up to this size

# What a queued item is: (kind, subscription, data, size, seq). `size` counts towards the queue's bytes.
ITEM_FRAME = 0  # data: a ready frame (a pong, an error)
ITEM_DELTA = 1  # data: a live delta's shared frame; seq: its version
ITEM_SYNC = 2  # a snapshot / resume bridge / catch-up, rendered when written (Hub.render_sync)
ITEM_ALERT = 3  # data: the alert's encoded payloads, framed when written
ITEM_HEARTBEAT = 4  # rendered when written; subscription None: a WebSocket without subscriptions
ITEM_READY = 5  # data: a ready frame of one subscription (an alert), dropped if it is gone by then


class Owner(Protocol):
    """What a connection asks of the hub that owns it (app.streams.hub.Hub): the lazily queued items
    rendered when written, the process-wide queue bytes, and its subscriptions let go."""

    metrics: Metrics
    queue_bytes: int

    def render_sync(self, sub: Subscription) -> bytes | str | None: ...

    def render_heartbeat(self, connection: Connection, sub: Subscription | None) -> bytes | str: ...

    def render_alert(self, connection: Connection, sub: Subscription, alert: Alert) -> bytes | str: ...

    def observe_delivery(self, seq: int) -> None: ...

    def detach(self, sub: Subscription) -> None: ...


class Connection:
    """One stream client: subscriptions plus an outgoing queue drained by one writer."""

    __slots__ = ("hub", "framing", "client", "subs", "queue", "queued_bytes", "closed", "_waiter", "transport",
                 "task", "deadline", "direct_writer", "probe", "ender", "acked", "progress_at", "__weakref__")

    def __init__(self, hub: Owner, framing: Framing, client: str = "-"):
        self.hub = hub
        self.framing = framing  # how its events are framed (SSE, WebSocket: app.streams.frames)
        self.client = client  # the client's address: what per-client limits count
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
        # Set by `use` when the socket and the server are known (app.streams.direct.attach): the fast path
        # for live deltas, the kernel-level probe, and what ends the stream straight on the socket (close
        # frame 4008 / the SSE end) for a slow client.
        self.direct_writer: DirectWriter | None = None
        self.probe: Probe | None = None
        self.ender: Callable[[], None] | None = None
        self.acked = -1  # bytes the client had acknowledged at the last probe
        self.progress_at = 0.0  # loop time of the last probe that saw it take something (or have nothing)

    @property
    def kind(self) -> str:
        """The kind of client ("sse", "ws"): a label for metrics and logs."""
        return self.framing.name

    def use(self, socket: Socket) -> None:
        """Take what app.streams.direct found behind the writer's `send` (the writer sets `task` itself)."""
        self.transport, self.probe, self.ender, self.direct_writer = (
            socket.transport, socket.probe, socket.ender, socket.writer)

    # ---- producing ------------------------------------------------------------------------------

    def backlog(self) -> int:
        """Bytes written for the client and not yet taken by the kernel: our queue plus the transport's buffer."""
        transport = self.transport
        return self.queued_bytes + (transport.get_write_buffer_size() if transport is not None else 0)

    def enqueue(self, item: tuple) -> None:
        """Append an item (see ITEM_*) and wake the writer; past MAX_QUEUE_BYTES, drop the client as slow."""
        self.queue.append(item)
        size = item[3]
        if size:
            self.queued_bytes += size
            self.hub.queue_bytes += size
            if self.queued_bytes > MAX_QUEUE_BYTES or self.backlog() > MAX_QUEUE_BYTES:
                self.drop_slow()
                return
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def send(self, frame: bytes | str) -> None:
        """Queue a frame for this connection (a pong, an error)."""
        if not self.closed:
            self.enqueue((ITEM_FRAME, None, frame, len(frame), 0))

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
        kind, sub, data, size, seq = item
        if size:
            self.queued_bytes -= size
            self.hub.queue_bytes -= size
        if kind == ITEM_FRAME:
            return data
        if sub is None:  # a heartbeat of a WebSocket without subscriptions
            return self.hub.render_heartbeat(self, None)
        if self.subs.get(sub.id) is not sub:
            return None  # unsubscribed or replaced since it was queued
        if kind == ITEM_DELTA:
            if sub.state == LIVE:
                # Nothing changed the view since this delta was queued (a change would have made it SYNC):
                # once written, the client holds the view of the channel's current version.
                sub.state = IDLE
                sub.delivered = sub.channel.version.seq
            else:
                sub.delivered = seq
            self.hub.observe_delivery(seq)
            return data
        if kind == ITEM_SYNC:
            return self.hub.render_sync(sub)
        if kind == ITEM_HEARTBEAT:
            sub.beat = False
            return self.hub.render_heartbeat(self, sub)
        if kind == ITEM_READY:
            return data
        return self.hub.render_alert(self, sub, data)

    def parked(self) -> bool:
        """The writer waits for frames (nothing queued, no write in progress)."""
        waiter = self._waiter
        return waiter is not None and not waiter.done() and not self.queue and not self.closed

    # ---- closing ----------------------------------------------------------------------------------

    def expire(self) -> None:
        """A write stayed pending past its deadline: a stalled client, dropped as slow. If it was already
        closing (a shutdown's last write), its socket is dropped so the writer can finish."""
        if not self.closed:
            self.drop_slow()
            return
        self.deadline = 0.0
        if self.transport is not None:
            self.transport.abort()  # the pending write returns once the server sees the connection lost
        elif self.task is not None:
            self.task.cancel()

    def drop_slow(self) -> None:
        """Too slow to keep up: stop queueing and end the stream on the socket itself (close frame 4008, or
        the SSE end) after what is already buffered. Without an ender (a server this module does not know),
        the writer ends it through the server, or, stuck in a write, loses its socket."""
        if self.closed:
            return
        writing = self.deadline != 0.0
        self.close("slow")
        self.deadline = 0.0
        if self.ender is not None:
            self.ender()  # a write still pending returns once the socket drains or is dropped
        elif writing:
            if self.transport is not None:
                self.transport.abort()
            elif self.task is not None:
                self.task.cancel()

    def probe_stall(self, now: float, stall_s: float) -> bool:
        """Whether the client has had bytes pending (queue, transport, kernel) and acknowledged none of
        them for `stall_s`: no progress seen at any probe since (called by the hub's sweeper every 2 s)."""
        probe = self.probe
        if probe is None or self.closed:
            return False
        info = probe.read()
        if info is None:
            return False
        kernel_pending, acked = info
        if acked != self.acked or (not kernel_pending and not self.backlog()):
            self.acked, self.progress_at = acked, now  # it took something, or has nothing to take
            return False
        return now - self.progress_at > stall_s

    def close(self, reason: str) -> None:
        """Stop queueing (dropping what is queued) and end every subscription; the writer then finishes."""
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
