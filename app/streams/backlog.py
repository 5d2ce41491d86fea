"""What a stream client has not taken yet, down to the kernel: the socket-level half of judging slow clients.

A client that stops reading first fills the kernel's send buffer (autotuned up to several MB on Linux),
then the transport's buffer, and only then our queue. Judged by the queue alone, such a client was
dropped only after ~100 s and held ~2.2 MB in the kernel meanwhile. So each stream socket gets:

- a bounded kernel send buffer (`SNDBUF_BYTES`; Linux doubles it for bookkeeping), which caps what the
  kernel holds for one client;
- a `Probe` that reads the socket's TCP_INFO (one getsockopt): whether the kernel still has bytes for
  the client, and how many bytes the client has acknowledged so far. A client with bytes pending whose
  acknowledged count does not move for the stall time is stalled, whatever the data rate.

Linux only (TCP_INFO's layout); elsewhere `Probe.open` returns None and the write timeout alone applies.
"""

from __future__ import annotations

import socket
import struct
import sys
from typing import Any

SNDBUF_BYTES = 256 * 1024
_TCP_INFO = getattr(socket, "TCP_INFO", None)
_INFO_BYTES = 152
# struct tcp_info (linux/tcp.h): tcpi_unacked (segments) at 24, tcpi_bytes_acked (u64) at 120 (Linux 4.1+),
# tcpi_notsent_bytes (u32) at 144 (Linux 4.6+).
_UNACKED = struct.Struct("=I")
_ACKED = struct.Struct("=Q")


class Probe:
    """TCP_INFO of one stream's socket, through the transport's own socket object (uvloop's and asyncio's
    both offer getsockopt), read only while the transport is open (its descriptor is then surely ours)."""

    __slots__ = ("sock", "transport")

    def __init__(self, sock: Any, transport: Any):
        self.sock, self.transport = sock, transport

    @classmethod
    def open(cls, transport: Any) -> Probe | None:
        """A probe for `transport`'s TCP socket, with its send buffer bounded; None where unsupported."""
        if _TCP_INFO is None or not sys.platform.startswith("linux"):
            return None
        sock = transport.get_extra_info("socket")
        if sock is None or not hasattr(sock, "getsockopt"):
            return None
        try:
            if sock.family not in (socket.AF_INET, socket.AF_INET6):
                return None
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SNDBUF_BYTES)
            if len(sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, _INFO_BYTES)) < _INFO_BYTES:
                return None
        except (OSError, AttributeError, TypeError):
            return None
        return cls(sock, transport)

    def read(self) -> tuple[bool, int] | None:
        """(the kernel holds bytes not yet acknowledged or not yet sent, bytes acknowledged so far)."""
        if self.transport.is_closing():
            return None
        try:
            raw = self.sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, _INFO_BYTES)
        except OSError:
            return None
        pending = _UNACKED.unpack_from(raw, 24)[0] > 0 or _UNACKED.unpack_from(raw, 144)[0] > 0
        return pending, _ACKED.unpack_from(raw, 120)[0]
