"""GET /api/stream?<view>: one view as Server-Sent Events (CONTRACT §5).

A plain ASGI response rather than sse-starlette's: the frames are already encoded by the hub (shared by
every subscriber of a view), and one connection costs one task for its writes plus one that waits for
the client to go away, instead of a task group of four. The write timeout costs no timer per write: the
writer notes a deadline while a write is pending and the hub's sweeper drops connections past it.
"""

from __future__ import annotations

import asyncio
import contextlib

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from app import query
from app.api.limits import client_of
from app.api.responses import JSONBytes, error
from app.streams import direct
from app.streams.connection import Connection
from app.streams.frames import SSE
from app.streams.hub import Hub, ViewLimitError

SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
RETRY = b"retry: 2000\n\n"


async def stream(request: Request) -> Response:
    svc = request.app.state.service
    hub: Hub = svc.hub
    try:
        view, extra = query.parse_query(request.query_params.multi_items(), allowed_extra=("since",))
    except query.QueryError as exc:
        return JSONBytes(exc.body(), status_code=exc.status)
    connection = hub.connect(SSE, client_of(request.scope))
    if connection is None:
        return error(503, "too_many_connections", "the server holds its maximum of streams; retry shortly",
                     headers={"Retry-After": "2"})
    # Last-Event-ID (a browser's reconnect) wins over ?since= (a first connection).
    since = request.headers.get("last-event-id") or extra.get("since")
    try:
        hub.subscribe(connection, None, view=view, since=since)
    except ViewLimitError as exc:
        hub.disconnect(connection)
        return JSONBytes(exc.body(), status_code=exc.status, headers={"Retry-After": str(exc.retry_after)})
    return EventStream(hub, connection, hub.stall_s)


class EventStream(Response):
    """The response: `retry: 2000`, then whatever the hub queues for the connection, until it closes."""

    def __init__(self, hub: Hub, connection: Connection, write_timeout: float):
        self.hub = hub
        self.connection = connection
        self.write_timeout = write_timeout
        self.status_code = 200
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        connection = self.connection
        watcher = None
        try:
            await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
            if scope.get("method") == "HEAD":
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            loop = asyncio.get_running_loop()
            watcher = loop.create_task(_watch_disconnect(receive, connection))
            # The response start went through the middleware; frames need not (and may take the fast path).
            socket = direct.attach(send, direct.SSE_SERVER, direct_writes=self.hub.direct_writes)
            connection.use(socket)
            connection.task = asyncio.current_task()
            send = socket.send
            await self._write(send, loop)
        finally:
            if watcher is not None:
                watcher.cancel()
            self.hub.disconnect(connection)

    async def _write(self, send: Send, loop: asyncio.AbstractEventLoop) -> None:
        connection = self.connection
        timeout = self.write_timeout
        pending: list | None = [RETRY]
        while True:
            if not pending:
                pending = await connection.next_batch()
                if pending is None:
                    break
            body = pending[0] if len(pending) == 1 else b"".join(pending)
            pending = None
            connection.deadline = loop.time() + timeout  # the hub's sweeper enforces it
            try:
                await send({"type": "http.response.body", "body": body, "more_body": True})
            except Exception:  # noqa: BLE001 - refused once the stream was ended on the socket (too slow)
                if connection.closed == "slow":
                    return
                raise
            connection.deadline = 0.0
        if connection.closed == "client" or (connection.closed == "slow" and connection.ender is not None):
            return  # gone, or already ended on the socket (the `ender` app.streams.direct found)
        if connection.transport is not None and connection.transport.is_closing():
            await _settle()  # dropped for not reading (Connection.drop_slow)
            return
        # Closed by us (shutdown, or too slow on a server we cannot end streams on directly): end the
        # response properly when the client takes it.
        connection.deadline = loop.time() + min(timeout, 1.0)
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        connection.deadline = 0.0


async def _watch_disconnect(receive: Receive, connection: Connection) -> None:
    with contextlib.suppress(Exception):
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
    connection.close("client")


async def _settle() -> None:
    """Let the server see an aborted connection as lost before the response returns unfinished."""
    await asyncio.sleep(0)
    await asyncio.sleep(0)
