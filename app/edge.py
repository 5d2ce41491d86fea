"""The HTTP edge: what a connection may cost before it is a request, so a slowloris cannot starve the service.

Measured before: a 64 MB header was accepted, and 995 half-sent requests exhausted the file descriptors,
after which every REST call and `/health` failed and snapshot writes to DATA_DIR failed with "Too many
open files". uvicorn's httptools protocol has no header limit and no timeout for a request that never
completes, and its `limit_concurrency` answers 503 only once a request is complete. So `python -m app`
serves with `EdgeProtocol`, uvicorn's httptools protocol plus:

- the request line and headers are at most `MAX_HEADER_BYTES` (counted as bytes arrive, before the
  parser buffers them) and `MAX_HEADERS` fields: past either, 431 and the connection closes;
- a request must be complete within `REQUEST_TIMEOUT_S` of its first byte (or of the connection, for a
  connection that sends nothing): past it, 408 and the connection closes;
- at most `capacity` connections (the file-descriptor limit, raised to its hard limit at start-up, less a
  reserve for files, upstream calls and the store): a connection over it takes the place of the oldest
  one that has not yet sent a complete request, or is refused if there is none. One client address may
  hold at most half of `capacity` in such waiting connections: past that, its own oldest goes, so a
  single client cannot crowd the others out. Requests being served and streams are never evicted; the
  stream cap (`MAX_CONNECTIONS`) is lowered to fit under `capacity` if it must be.

Idle keep-alive connections close after `KEEP_ALIVE_S` (uvicorn's own timer). `uvicorn app.main:app`
can use the same protocol with `--http app.edge:EdgeProtocol` (limits from the environment).
"""

from __future__ import annotations

import logging
import resource
from dataclasses import dataclass, field
from typing import Any

import orjson

from app.config import Settings, load_settings

try:
    import httptools
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - uvicorn[standard] installs httptools
    httptools = None  # type: ignore[assignment]
    HttpToolsProtocol = object  # type: ignore[assignment,misc]

log = logging.getLogger("app.edge")

MAX_HEADERS = 100
KEEP_ALIVE_S = 5
FD_RESERVE = 100  # descriptors kept for files (DATA_DIR), upstream calls and logs, plus 5% of the limit


@dataclass
class Edge:
    """The limits of one server and the connections they apply to (shared by its protocol objects)."""

    capacity: int
    request_timeout_s: float
    max_header_bytes: int
    max_headers: int = MAX_HEADERS
    waiting: dict[Any, None] = field(default_factory=dict)  # connections without a complete request, oldest first
    by_client: dict[str, dict[Any, None]] = field(default_factory=dict)  # the same, by client address
    refused: int = 0
    evicted: int = 0
    timed_out: int = 0
    too_large: int = 0

    @classmethod
    def from_settings(cls, settings: Settings, capacity: int) -> Edge:
        return cls(capacity, settings.request_timeout_s, settings.max_header_bytes)

    @property
    def share(self) -> int:
        """Waiting connections one client address may hold."""
        return max(8, self.capacity // 2)

    def admit(self, client: str, open_connections: int) -> bool:
        """Whether a new connection from `client` may be served, making room for it if need be."""
        mine = self.by_client.get(client)
        if mine is not None and len(mine) >= self.share:
            self._evict(next(iter(mine)))
            return True
        if open_connections < self.capacity:
            return True
        for proto in self.waiting:
            self._evict(proto)
            return True
        self.refused += 1
        return False

    def wait(self, proto: Any) -> None:
        """`proto` has no complete request (new, or idle between requests): it may be evicted."""
        self.waiting[proto] = None
        self.by_client.setdefault(proto.edge_client, {})[proto] = None

    def serve(self, proto: Any) -> None:
        """`proto` is serving a request (or gone): never evicted."""
        if self.waiting.pop(proto, False) is None:
            mine = self.by_client.get(proto.edge_client)
            if mine is not None:
                mine.pop(proto, None)
                if not mine:
                    del self.by_client[proto.edge_client]

    def _evict(self, proto: Any) -> None:
        self.serve(proto)
        self.evicted += 1
        proto.transport.abort()


def raise_fd_limit() -> int:
    """Raise the soft file-descriptor limit to the hard one where allowed; returns the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            log.warning("could not raise the open-file limit from %d to %d", soft, target)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def capacity_for(fd_limit: int) -> int:
    """Connections the server may hold under `fd_limit` descriptors."""
    return max(16, fd_limit - FD_RESERVE - fd_limit // 20)


def uvicorn_options(settings: Settings) -> tuple[Settings, dict[str, Any]]:
    """Raise the descriptor limit, fit the stream cap under it, and the uvicorn options of the hardened edge."""
    capacity = capacity_for(raise_fd_limit())
    streams = min(settings.max_connections, capacity * 9 // 10)  # a tenth always left for REST and /health
    if streams < settings.max_connections:
        log.warning("MAX_CONNECTIONS=%d lowered to %d: the open-file limit allows %d connections",
                    settings.max_connections, streams, capacity)
        settings = settings.with_(max_connections=streams)
    # The protocols chosen explicitly: the stream fast path (app.streams.direct) knows these two.
    options: dict[str, Any] = {"ws": "websockets-sansio", "timeout_keep_alive": KEEP_ALIVE_S,
                               "h11_max_incomplete_event_size": settings.max_header_bytes}
    if httptools is not None:
        options["http"] = protocol(Edge.from_settings(settings, capacity))
    return settings, options


def protocol(edge: Edge) -> type:
    """`EdgeProtocol` bound to one server's `edge`."""
    return type("EdgeProtocol", (EdgeProtocol,), {"edge": edge})


def edge_of(options: dict[str, Any]) -> Edge | None:
    """The edge a server started with `options` (from `uvicorn_options`) counts its refusals in, if any."""
    edge = getattr(options.get("http"), "edge", None)
    return edge if isinstance(edge, Edge) else None


def process_edge() -> Edge | None:
    """The edge of `app.edge:EdgeProtocol` named by import path (uvicorn's worker processes), built from the
    environment once per process; None without httptools (uvicorn then serves with its own protocol)."""
    if httptools is None:
        return None
    if "edge" not in EdgeProtocol.__dict__:
        EdgeProtocol.edge = Edge.from_settings(load_settings(), capacity_for(raise_fd_limit()))
    return EdgeProtocol.edge


class _TooLarge(Exception):
    pass


def _error(status: bytes, code: str, message: str) -> bytes:
    body = orjson.dumps({"error": {"code": code, "message": message, "param": None}})
    return (b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n" % len(body)) + body


class EdgeProtocol(HttpToolsProtocol):  # type: ignore[misc,valid-type]
    """uvicorn's httptools protocol with header limits, a request timeout and a connection cap (see above)."""

    edge: Edge

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not hasattr(type(self), "edge"):  # `--http app.edge:EdgeProtocol`: limits from the environment
            process_edge()
        self._timer: Any = None
        self._in_head = True  # reading a request line and headers
        self._head_bytes = 0  # bytes received while reading them (before the parser buffers them)
        self._fields = 0
        self._field_bytes = 0  # the request line and headers the parser gave us
        self._made = False
        self._done = False
        self.edge_client = "-"  # answered with an error: ignore what else arrives

    # ---- connection -------------------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        peer = transport.get_extra_info("peername")
        self.edge_client = peer[0] if isinstance(peer, tuple) and peer else "-"
        if not self.edge.admit(self.edge_client, len(self.connections)):
            transport.abort()
            return
        self._made = True
        super().connection_made(transport)
        self.edge.wait(self)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._made:
            return
        self._disarm()
        self.edge.serve(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._done:
            return
        self._unset_keepalive_if_required()
        if self._in_head:
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _TooLarge):
                self._refuse_too_large()
                return
            self._bad_request()
            return
        except httptools.HttpParserError:
            self._bad_request()
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if self._in_head and self._head_bytes > self.edge.max_header_bytes:
            self._refuse_too_large()

    def handle_websocket_upgrade(self) -> None:
        self._disarm()
        self.edge.serve(self)  # from now on the WebSocket protocol owns the connection
        super().handle_websocket_upgrade()

    # ---- parser callbacks -------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._fields = self._field_bytes = 0
        self._arm()

    def on_url(self, url: bytes) -> None:
        self._field_bytes += len(url) + 16
        if self._field_bytes > self.edge.max_header_bytes:
            raise _TooLarge
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._fields += 1
        self._field_bytes += len(name) + len(value) + 4
        if self._fields > self.edge.max_headers or self._field_bytes > self.edge.max_header_bytes:
            raise _TooLarge
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        self.edge.serve(self)  # a request is being served: never evicted from here on
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._in_head = True  # idle until the next request (uvicorn's keep-alive timer closes it)
            self.edge.wait(self)

    # ---- limits -----------------------------------------------------------------------------------

    def _arm(self) -> None:
        if self._timer is None:
            self._timer = self.loop.call_later(self.edge.request_timeout_s, self._timed_out)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        self.edge.timed_out += 1
        if self._in_head:
            self._answer(_error(b"408 Request Timeout", "request_timeout",
                                f"the request was not complete within {self.edge.request_timeout_s:g} s"))
        else:  # a body that never completes: the handler is already running, so just drop the connection
            self.transport.abort()

    def _refuse_too_large(self) -> None:
        self.edge.too_large += 1
        self._answer(_error(b"431 Request Header Fields Too Large", "headers_too_large",
                            f"the request line and headers must be at most {self.edge.max_header_bytes} bytes "
                            f"and {self.edge.max_headers} fields"))

    def _bad_request(self) -> None:
        self._answer(_error(b"400 Bad Request", "bad_request", "the request is not valid HTTP/1.1"))

    def _answer(self, response: bytes) -> None:
        self._done = True
        self._disarm()
        self.edge.serve(self)
        if self.cycle is None or self.cycle.response_complete:  # never in the middle of another response
            self.transport.write(response)
        self.transport.close()
