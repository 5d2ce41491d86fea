"""One SSE or WebSocket client: its subscriptions, its outgoing queue and the byte accounting of it.

`Hub.publish` only appends to queues (it never waits); one writer per connection (the SSE response, or
the WebSocket writer task) drains the queue with `next_batch`, so a slow client never delays another.
Most items are rendered only when the writer takes them (`_render`): a snapshot or catch-up from the
channel's version at that moment, a heartbeat or alert with the seq the client is at by then.

A connection whose queue passes `MAX_QUEUE_BYTES` is closed ("slow"; WebSocket 4008, SSE stream ends);
a write that does not complete within the service's write timeout closes it the same way and drops its
socket: the writer notes a deadline while a write is pending and the hub's sweeper (`Hub.sweep`, every
SWEEP_S) calls `expire` past it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

from app.streams.channel import IDLE, LIVE, Subscription

if TYPE_CHECKING:
    from app.streams.direct import DirectSSE, DirectWS
    from app.streams.hub import Hub

log = logging.getLogger("app.streams")

MAX_QUEUE_BYTES = 1 << 20  # a connection whose queue holds more is closed as too slow
MAX_BATCH_BYTES = 256 * 1024  # an SSE writer joins queued frames into one write up to this size

# What a queued item is: (kind, subscription, data, size, seq). `size` counts towards the queue's bytes.
ITEM_FRAME = 0  # data: a ready frame (a pong, an error)
ITEM_DELTA = 1  # data: a live delta's shared frame; seq: its version
ITEM_SYNC = 2  # a snapshot / resume bridge / catch-up, rendered when written (Hub.render_sync)
ITEM_ALERT = 3  # data: the alert's encoded payloads, framed when written
ITEM_HEARTBEAT = 4  # rendered when written; subscription None: a WebSocket without subscriptions


class Connection:
    """One SSE or WebSocket client: subscriptions plus an outgoing queue drained by one writer."""

    __slots__ = ("hub", "kind", "subs", "queue", "queued_bytes", "closed", "_waiter", "transport", "task",
                 "deadline", "direct_writer", "__weakref__")

    def __init__(self, hub: Hub, kind: str):
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
        # The fast path for live deltas, when the server is one it knows (app.streams.direct.attach).
        self.direct_writer: DirectSSE | DirectWS | None = None

    # ---- producing ------------------------------------------------------------------------------

    def enqueue(self, item: tuple) -> None:
        """Append an item (see ITEM_*) and wake the writer; past MAX_QUEUE_BYTES, close as slow instead."""
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
        return self.hub.render_alert(self, sub, data)

    def parked(self) -> bool:
        """The writer waits for frames (nothing queued, no write in progress)."""
        waiter = self._waiter
        return waiter is not None and not waiter.done() and not self.queue and not self.closed

    # ---- closing ----------------------------------------------------------------------------------

    def expire(self) -> None:
        """A write took longer than the write timeout: closed as slow, and its socket dropped."""
        self.close("slow")
        self.deadline = 0.0
        if self.transport is not None:
            self.transport.abort()  # the pending write returns once the server sees the connection lost
        elif self.task is not None:
            self.task.cancel()

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
