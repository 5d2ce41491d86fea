"""GET /api/stream?<view>: one view as Server-Sent Events (CONTRACT §5)."""

from __future__ import annotations

from typing import AsyncIterator

from sse_starlette.sse import EventSourceResponse
from starlette.requests import Request
from starlette.responses import Response

from app import query
from app.api.responses import JSONBytes, error
from app.streams.hub import Connection, Hub

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


async def stream(request: Request) -> Response:
    svc = request.app.state.service
    hub: Hub = svc.hub
    try:
        view, extra = query.parse_query(request.query_params.multi_items(), allowed_extra=("since",))
    except query.QueryError as exc:
        return JSONBytes(exc.body(), status_code=exc.status)
    connection = hub.connect("sse")
    if connection is None:
        return error(503, "too_many_connections", "the server holds its maximum of streams; retry shortly",
                     headers={"Retry-After": "2"})
    since = request.headers.get("last-event-id") or extra.get("since")
    hub.subscribe(connection, None, view=view, since=since)
    return EventSourceResponse(_frames(hub, connection), headers=SSE_HEADERS, ping=None,
                               send_timeout=svc.write_timeout_s)


async def _frames(hub: Hub, connection: Connection) -> AsyncIterator[bytes]:
    try:
        yield b"retry: 2000\n\n"
        while True:
            frame = await connection.next()
            if frame is None:
                return
            yield frame
    finally:
        hub.disconnect(connection)
