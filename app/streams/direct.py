"""An optimisation that reaches past ASGI into uvicorn's internals. Everything here is optional.

Nothing in this module is needed for correctness: when the server is not what it expects, or the hub was
built with `direct_writes=False`, every frame goes through the connection's queue and its writer's ASGI
`send`, and tests/test_streams.py runs the delivery, order and resume tests both ways.

What it does, once per stream connection (`attach`, called by the SSE response and the WebSocket writer
with the `ServerStream` of their transport: `SSE_SERVER`, `WS_SERVER`; the result, a `Socket`, goes to
the connection):

1. `find_server_send` looks behind the ASGI `send` Starlette passes (wrapped by each middleware) for the
   server's own `send`: a bound method whose object holds the socket's asyncio transport. Frames are
   then sent with it directly (the middleware only acts on the response start, which went through it).
   The transport gives the connection its backlog (app.streams.backlog) and `ender` a way to end a slow
   client's stream on the socket itself: a WebSocket close frame 4008 (or the SSE stream's last chunk)
   written after what is already buffered, bypassing the server's flow control (which would wait
   forever for a client that does not read), then the socket closed once drained, or dropped after
   `CLOSE_GRACE_S`.
2. When the hub allows it, a direct writer (app.streams.transport.DirectWriter: `DirectSSE` for uvicorn's
   httptools HTTP protocol, `DirectWS` for its websockets-sansio WebSocket protocol) lets the fan-out
   write a live delta for an idle subscriber (nothing queued, writer parked, writing not paused)
   straight onto the transport, framed once per version exactly as uvicorn would frame it (`sse_chunk`,
   `ws_wire`). This saves the writer's
   wake-up and the ASGI call per subscriber, most of the cost of fan-out (docs/BENCHMARKS.md, "Streams").
   The queue and writer take over as soon as a client is not idle (catch-up merging, write timeout,
   1 MiB limit).

Each direct writer checks, before every write, the same protocol state uvicorn's own `send` would act on;
when any attribute it relies on is missing (another server, another uvicorn protocol or version), `for_send`
returns None and that connection simply uses the queue. Known cases that fall back: uvicorn's h11 HTTP
protocol, its wsproto and legacy websockets protocols, and a WebSocket whose permessage-deflate keeps server
context (app.streams.deflate negotiates it without, so that its frames can be compressed once for all).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from app.streams import deflate
from app.streams.backlog import Probe
from app.streams.deflate import FrameCache
from app.streams.transport import DirectWriter, Socket

CLOSE_GRACE_S = 5.0  # how long a slow client has to take its buffered bytes and the close, before a reset
CLOSE_SLOW = 4008


class ServerStream(Protocol):
    """What this module knows of one of uvicorn's protocols, for the streams of one transport."""

    def ender(self, owner: Any) -> Callable[[], None] | None:
        """What ends a slow client's stream on its socket, given the object behind the server's `send`."""
        ...

    def writer(self, server_send: Callable[..., Any], frames: FrameCache) -> DirectWriter | None:
        """The fast path for live deltas, or None when the protocol is not the one it knows."""
        ...


def attach(send: Callable[..., Any], server: ServerStream, *, direct_writes: bool = True,
           frames: FrameCache | None = None) -> Socket:
    """What a stream's writer should use, found behind `send` (Starlette's, wrapped by each middleware).

    With uvicorn's own `send` found: that `send`, its transport, the kernel probe, the ender `server`
    knows, and (when `direct_writes`) the direct writer. Otherwise just `send` (and a stalled write is
    ended by cancelling the writer). `frames`: the shared cache of compressed WebSocket frames.
    """
    server_send = find_server_send(send)
    if server_send is None:
        return Socket(send)
    owner = server_send.__self__  # type: ignore[attr-defined]
    writer = server.writer(server_send, frames if frames is not None else FrameCache()) if direct_writes else None
    return Socket(server_send, owner.transport, Probe.open(owner.transport), server.ender(owner), writer)


class UvicornSSE:
    """An SSE response on uvicorn's httptools HTTP protocol (its RequestResponseCycle)."""

    def ender(self, owner: Any) -> Callable[[], None] | None:
        if all(hasattr(owner, a) for a in ("chunked_encoding", "response_complete", "keep_alive", "disconnected")):
            return lambda: _end_sse(owner)
        return None

    def writer(self, server_send: Callable[..., Any], frames: FrameCache) -> DirectWriter | None:
        return DirectSSE.for_send(server_send)


class UvicornWebSocket:
    """A WebSocket on uvicorn's websockets-sansio protocol."""

    def ender(self, owner: Any) -> Callable[[], None] | None:
        conn = getattr(owner, "conn", None)
        if conn is not None and all(hasattr(owner, a) for a in ("close_sent", "queue", "transport")) \
                and hasattr(conn, "send_close") and hasattr(conn, "data_to_send"):
            return lambda: _end_ws(owner)
        return None

    def writer(self, server_send: Callable[..., Any], frames: FrameCache) -> DirectWriter | None:
        return DirectWS.for_send(server_send, frames)


SSE_SERVER = UvicornSSE()
WS_SERVER = UvicornWebSocket()


def _end_sse(cycle: Any) -> None:
    if cycle.response_complete or cycle.disconnected:
        return
    transport = cycle.transport
    if cycle.chunked_encoding:
        transport.write(b"0\r\n\r\n")  # the response's end, after the chunks already buffered
    cycle.response_complete = True  # the server's own send now refuses more; a pending one fails
    cycle.keep_alive = False
    _close_then_drop(transport)


def _end_ws(proto: Any) -> None:
    transport = proto.transport
    if proto.close_sent or transport.is_closing():
        return
    try:
        proto.conn.send_close(CLOSE_SLOW, "too slow to keep up")
    except Exception:  # noqa: BLE001 - the protocol is already closing: just drop it
        transport.abort()
        return
    transport.write(b"".join(proto.conn.data_to_send()))
    proto.close_sent = True  # the server's own send now refuses more; a pending one fails
    proto.queue.put_nowait({"type": "websocket.disconnect", "code": CLOSE_SLOW})  # the app's receive ends
    _close_then_drop(transport)


def _close_then_drop(transport: Any) -> None:
    """Close once what is buffered is taken; reset after CLOSE_GRACE_S if the client never takes it."""
    transport.close()
    asyncio.get_running_loop().call_later(CLOSE_GRACE_S, _drop, transport)


def _drop(transport: Any) -> None:
    try:
        transport.abort()
    except Exception:  # noqa: BLE001 - already closed and released (asyncio's transport then has no loop)
        pass


def find_server_send(send: Callable[..., Any]) -> Callable[..., Any] | None:
    """The server's own `send` behind an ASGI `send` wrapped by Starlette's middleware: uvicorn's bound
    method, whose object holds the connection's asyncio transport. Or None."""
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
    """

    __slots__ = ("cycle", "flow", "transport")
    key = None  # every SSE response's chunk of the same frames is the same bytes

    def __init__(self, cycle: Any):
        self.cycle, self.flow, self.transport = cycle, cycle.flow, cycle.transport

    @classmethod
    def for_send(cls, server_send: Any) -> DirectSSE | None:
        """A writer for the response `server_send` belongs to (uvicorn's RequestResponseCycle), or None."""
        cycle = getattr(server_send, "__self__", None)
        if all(hasattr(cycle, a) for a in ("chunked_encoding", "flow", "disconnected", "response_complete")) \
                and cycle.chunked_encoding is True and hasattr(cycle.flow, "write_paused"):
            return cls(cycle)
        return None

    def wire(self, frames: Sequence[bytes | str]) -> bytes:
        """SSE frames as one chunk (`sse_chunk`)."""
        return sse_chunk(b"".join([f if isinstance(f, bytes) else f.encode() for f in frames]))

    def write(self, chunk: bytes) -> bool:
        """Write `chunk` (a `wire`) now if uvicorn would; False if it must go through the queue."""
        cycle = self.cycle
        if cycle.disconnected or cycle.response_complete or self.flow.write_paused:
            return False
        self.transport.write(chunk)
        return True


class DirectWS:
    """The same for a WebSocket served by uvicorn's websockets-sansio protocol: the frame is the same bytes for
    every subscriber, what `Protocol.send_text` would serialise (`ws_wire`). On a connection that negotiated
    permessage-deflate without server context takeover (app.streams.deflate), the same holds for the
    compressed frame of every subscriber with the same window (`bits`): compressed once, from `frames`.
    Any other extension, or deflate with context takeover, leaves the connection to the queue and ASGI."""

    __slots__ = ("proto", "conn", "transport", "open_state", "bits", "key", "frames")

    def __init__(self, proto: Any, bits: int | None = None, frames: FrameCache | None = None):
        from websockets.protocol import State

        self.proto, self.conn, self.transport, self.open_state = proto, proto.conn, proto.transport, State.OPEN
        self.bits = bits  # the server's deflate window; None: frames go uncompressed
        self.key = bits  # connections with the same window (or none) get the same bytes of the same texts
        self.frames = frames if frames is not None else FrameCache()

    @classmethod
    def for_send(cls, server_send: Any, frames: FrameCache | None = None) -> DirectWS | None:
        """A writer for the WebSocket `server_send` belongs to (uvicorn's protocol object), or None."""
        proto = getattr(server_send, "__self__", None)
        conn = getattr(proto, "conn", None)
        if conn is None or not all(hasattr(proto, a) for a in ("writable", "close_sent", "transport")):
            return None
        try:
            from websockets.protocol import Protocol
        except ImportError:  # pragma: no cover
            return None
        if not isinstance(conn, Protocol):
            return None
        bits = None
        if conn.extensions:
            bits = deflate.window_bits(conn)
            if bits is None:
                return None
        return cls(proto, bits, frames)

    def wire(self, frames: Sequence[bytes | str]) -> bytes:
        """Text frames as this connection's bytes: `ws_wire`, or the shared compressed frames."""
        return b"".join([self.wire_text(t if isinstance(t, str) else t.decode()) for t in frames])

    def wire_text(self, text: str) -> bytes:
        """One text as this connection's frame: `ws_wire`, or the shared compressed frame."""
        return ws_wire(text) if self.bits is None else self.frames.wire(text, self.bits)

    def write(self, frame: bytes) -> bool:
        """Write `frame` (a `wire`) now if uvicorn would; False if it must go through the queue."""
        proto, conn = self.proto, self.conn
        if proto.close_sent or not proto.writable.is_set() or conn.state is not self.open_state \
                or conn.expect_continuation_frame or self.transport.is_closing():
            return False
        self.transport.write(frame)
        return True

    async def send(self, text: str, server_send: Callable[..., Any]) -> None:
        """The writer's send of a queued frame on a compressed connection: its shared compressed bytes, once
        uvicorn would write (it waits for the same flow control); when it would not, uvicorn's own send,
        which then fails as it should."""
        proto = self.proto
        while True:
            if proto.close_sent or self.conn.state is not self.open_state or self.transport.is_closing():
                await server_send({"type": "websocket.send", "text": text})
                return
            if proto.writable.is_set():
                self.transport.write(self.wire_text(text))
                return
            await proto.writable.wait()
