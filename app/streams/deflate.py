"""WebSocket permessage-deflate (RFC 7692) compressed once per message, not once per client.

Browsers (and the `websockets` client) offer permessage-deflate. Negotiated as uvicorn does it, the
server keeps one compressor per connection and its history (context takeover), so a message's compressed
bytes differ for every client: 10,000 subscribers meant 10,000 compressions of each delta, and no shared
bytes for the fast path (app.streams.direct). Negotiated with `server_no_context_takeover` instead, every
message is compressed on its own, so its compressed frame is the same for every client that negotiated
the same window: the fan-out compresses a delta once per view, version and subscription id, and writes
those bytes to every such subscriber, like the uncompressed frame.

- `negotiate` (before the handshake's answer goes out) re-runs uvicorn's negotiation with `FACTORY`:
  `server_no_context_takeover` always; `client_no_context_takeover` too (client commands are tiny, and it
  spares a decompressor per connection on the server); the window sizes as the client offers them.
  When uvicorn negotiated no compression (the client offered none, or the server has it off), nothing
  changes.
- `FrameCache` holds the compressed frames of recent messages, keyed by the text and the window: frames
  written through the queue (snapshots, catch-ups, alerts) are compressed once for every subscriber too.
- `wire` is one compressed frame: small messages go uncompressed (a frame without RSV1 is allowed on a
  compressed connection, and compressing 80 bytes saves nothing).
"""

from __future__ import annotations

import zlib
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

LEVEL = 6
MIN_COMPRESS = 128  # bytes of text: smaller messages are sent uncompressed
CLIENT_MAX_WINDOW_BITS = 12  # as uvicorn: the client's commands are small
CACHE_BYTES = 8 << 20  # FrameCache: texts and their compressed frames, least recently used first out


def factory() -> Any:
    """The permessage-deflate offer processing this module needs (websockets' own factory)."""
    from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory

    return ServerPerMessageDeflateFactory(server_no_context_takeover=True, client_no_context_takeover=True,
                                          client_max_window_bits=CLIENT_MAX_WINDOW_BITS)


def negotiate(server_send: Callable[..., Any] | None) -> None:
    """Before `websocket.accept`: make the handshake's permessage-deflate one without server context
    takeover, on uvicorn's websockets-sansio protocol (the object behind `server_send`); else nothing."""
    proto = getattr(server_send, "__self__", None)
    conn = getattr(proto, "conn", None)
    request, response = getattr(proto, "request", None), getattr(proto, "response", None)
    if conn is None or request is None or response is None or getattr(proto, "handshake_complete", True):
        return
    if not getattr(conn, "extensions", None) or not hasattr(conn, "process_extensions"):
        return  # nothing was negotiated: the client offered no compression, or the server has it off
    available = conn.available_extensions
    conn.available_extensions = [factory()]
    try:
        header, extensions = conn.process_extensions(request.headers)
    except Exception:  # noqa: BLE001 - an offer websockets accepted once; keep uvicorn's answer
        return
    finally:
        conn.available_extensions = available
    conn.extensions = extensions
    del response.headers["Sec-WebSocket-Extensions"]
    if header is not None:
        response.headers["Sec-WebSocket-Extensions"] = header


def window_bits(conn: Any) -> int | None:
    """The server window of a connection whose only extension is permessage-deflate without server context
    takeover (so its frames can be shared); None otherwise."""
    extensions = getattr(conn, "extensions", None)
    if not extensions or len(extensions) != 1:
        return None
    extension = extensions[0]
    if getattr(extension, "name", None) != "permessage-deflate" or \
            getattr(extension, "local_no_context_takeover", False) is not True:
        return None
    return extension.local_max_window_bits


def compressed_wire(data: bytes, bits: int) -> bytes:
    """One final text frame holding `data` compressed on its own (RSV1 set; RFC 7692 §7.2.1: deflate with
    a sync flush, its last four bytes 00 00 ff ff removed)."""
    compressor = zlib.compressobj(LEVEL, zlib.DEFLATED, -bits)
    payload = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return _frame(0xC1, payload[:-4])


def wire(text: str, bits: int | None) -> bytes:
    """`text` as a server frame: uncompressed (`bits` None, or a small message) or compressed."""
    if bits is None or len(text) < MIN_COMPRESS:
        return _frame(0x81, text.encode())
    return compressed_wire(text.encode(), bits)


def _frame(first: int, payload: bytes) -> bytes:
    """An unmasked server frame: FIN, RSV1 and opcode in `first` (RFC 6455 §5.2), then the length."""
    size = len(payload)
    if size < 126:
        return bytes((first, size)) + payload
    if size < 1 << 16:
        return bytes((first, 126)) + size.to_bytes(2, "big") + payload
    return bytes((first, 127)) + size.to_bytes(8, "big") + payload


class FrameCache:
    """The compressed frames of recent messages, by (text, window bits): a message queued for many clients
    (a snapshot, a catch-up of one version, an alert) is compressed once. Bounded in bytes."""

    def __init__(self, max_bytes: int = CACHE_BYTES):
        self.max_bytes = max_bytes
        self.bytes = 0
        self.compressed = 0  # messages compressed (each once), for tests and benchmarks
        self._frames: OrderedDict[tuple[str, int], bytes] = OrderedDict()

    def wire(self, text: str, bits: int | None) -> bytes:
        if bits is None or len(text) < MIN_COMPRESS:
            return _frame(0x81, text.encode())
        key = (text, bits)
        frame = self._frames.get(key)
        if frame is not None:
            self._frames.move_to_end(key)
            return frame
        frame = compressed_wire(text.encode(), bits)
        self.compressed += 1
        size = len(text) + len(frame) + 100
        if size <= self.max_bytes // 4:
            self._frames[key] = frame
            self.bytes += size
            while self.bytes > self.max_bytes:
                (old, _), dropped = self._frames.popitem(last=False)
                self.bytes -= len(old) + len(dropped) + 100
        return frame
