"""The transport seam: what the hub, channels and fan-out need from a kind of stream client.

Two small Protocols keep the stream core (app.streams.hub, channel, fanout, connection) free of any
"is this SSE or WebSocket?" question:

- `Framing`: how events are framed for one kind of client (app.streams.frames has SSE's and WebSocket's).
  The endpoint that accepts a client hands its framing to `Hub.connect`; from then on everything is
  framed through it, once per version and view (and per subscription id where frames name it).
- `DirectWriter`: the fast path onto one client's socket (app.streams.direct), set when the server is one
  that module knows. Writers with the same `key` turn the same frames into the same bytes, so the fan-out
  makes those bytes once for every such subscriber.

`Socket` is what `app.streams.direct.attach` found behind a stream's ASGI `send`; the endpoint hands it
to its connection (`Connection.use`). A third transport adds a `Framing` (and, for a fast path, a
`DirectWriter` with what finds it), and an endpoint; the core does not change.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from app.streams.backlog import Probe
    from app.streams.frames import Alert


class Framing(Protocol):
    """How one kind of client frames an event from its already encoded JSON payload."""

    name: str  # the kind's label in metrics and logs ("sse", "ws")
    per_subscription: bool  # frames name their subscription: the same bytes only for the same id
    heartbeat_without_subscriptions: bool  # a connection holding no subscription still gets heartbeats

    def event(self, event: str, tag: str, sub_id: str | None, payload: bytes) -> bytes | str:
        """`event` ("snapshot", "delta", "heartbeat") with `payload`; `tag` is its `<epoch>:<seq>`."""
        ...

    def alert(self, tag: str, sub_id: str | None, alert: Alert) -> bytes | str:
        """An alert (encoded once, app.streams.frames.Alert), as the client's view at `tag` is followed by it."""
        ...


class DirectWriter(Protocol):
    """Writes a live delta's frames straight onto one client's socket, when the server would write now."""

    @property
    def key(self) -> Hashable:
        """Writers with equal keys make equal bytes of equal frames (e.g. of one deflate window)."""
        ...

    def wire(self, frames: Sequence[bytes | str]) -> bytes:
        """`frames` (of this connection's framing) as the bytes on the socket."""
        ...

    def write(self, wire: bytes) -> bool:
        """Write `wire` now if the server would; False if it must go through the connection's queue."""
        ...


@dataclass(frozen=True, slots=True)
class Socket:
    """What was found behind a stream's ASGI `send` (app.streams.direct.attach)."""

    send: Callable[..., Any]  # what the connection's writer sends its frames with
    transport: Any = None  # the socket's asyncio transport: its write buffer counts towards the backlog
    probe: Probe | None = None  # the kernel's view of what the client has not acknowledged
    ender: Callable[[], None] | None = None  # ends a slow client's stream on the socket itself
    writer: DirectWriter | None = None  # the fast path for live deltas
