"""GET /ws: many views and watchlists over one WebSocket (CONTRACT §6).

Server messages are the SSE events as objects with `type` and the subscription `id`. Choices the
contract leaves open:
- an alert's own `type` (`price_move` / `volume_spike`) is sent as `alert_type`, since `type` is "alert";
- heartbeats are sent per subscription (`id` and the `seq` that subscription's view is current for, a
  valid `since` for it), and as one heartbeat without `id` (the latest seq) on a connection without any;
- `subscribe` is answered by its snapshot (or resume delta), `unsubscribe` by nothing (frames still
  queued for that id are dropped); `ping` by `{"type": "pong"}`; a bad command by an `error` naming the
  `id` when there is one, and the connection stays open.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import anyio
import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect

from app import query
from app.api.limits import ClientLimiter, client_of, retry_after
from app.sources.values import is_mint
from app.streams import deflate, direct
from app.streams.connection import Connection
from app.streams.frames import WS
from app.streams.hub import Hub, ViewLimitError

log = logging.getLogger("app.streams")

MAX_SUBSCRIPTIONS = 20
MAX_WATCHLIST = 100
MAX_FRAME = 64 * 1024
MAX_ID = 64
CLOSE_OVER_LIMIT, CLOSE_TOO_BIG, CLOSE_SLOW, CLOSE_GOING_AWAY = 1008, 1009, 4008, 1001
_FIELDS = frozenset({"op", "id", "view", "tokens", "since"})


class CommandError(Exception):
    def __init__(self, code: str, message: str, sub_id: Any = None, param: str | None = None, **extra: Any):
        super().__init__(message)
        self.code, self.message, self.param, self.extra = code, message, param, extra
        # Echo the id only when it is one a client could have meant (a short string or a small integer).
        self.sub_id = sub_id if _echoable(sub_id) else None

    def frame(self) -> bytes:
        body: dict[str, Any] = {"type": "error", "code": self.code, "message": self.message, "id": self.sub_id}
        if self.param is not None:
            body["param"] = self.param
        body.update(self.extra)
        return orjson.dumps(body)


def _echoable(sub_id: Any) -> bool:
    if isinstance(sub_id, str):
        return len(sub_id) <= MAX_ID
    return isinstance(sub_id, int) and not isinstance(sub_id, bool) and -(2**53) <= sub_id <= 2**53


async def websocket_endpoint(websocket: WebSocket) -> None:
    svc = websocket.app.state.service
    hub: Hub = svc.hub
    connection = hub.connect(WS, client_of(websocket.scope))
    deflate.negotiate(direct.find_server_send(websocket._send))  # compressed frames shared by all subscribers
    await websocket.accept()
    if connection is None:
        await _close(websocket, CLOSE_OVER_LIMIT, "too many connections")
        return
    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_writer, websocket, hub, connection, tasks.cancel_scope)
            await _reader(websocket, hub, connection, getattr(svc, "limiter", None))
            tasks.cancel_scope.cancel()
    finally:
        hub.disconnect(connection)


async def _reader(websocket: WebSocket, hub: Hub, connection: Connection, limiter: ClientLimiter | None) -> None:
    while True:
        try:
            message = await websocket.receive()
        except (WebSocketDisconnect, RuntimeError):
            return
        if message["type"] == "websocket.disconnect":
            return
        raw = message.get("text")
        if raw is None:
            raw_bytes = message.get("bytes") or b""
            size = len(raw_bytes)
        else:
            size = len(raw.encode()) if len(raw) * 4 > MAX_FRAME else len(raw)
        if size > MAX_FRAME:
            connection.close("too_big")
            await _close(websocket, CLOSE_TOO_BIG, "frame over 64 KiB")
            return
        try:
            if raw is None:
                raise CommandError("invalid_frame", "send text frames holding one JSON object")
            reply = handle(hub, connection, raw, limiter)
        except CommandError as exc:
            reply = exc.frame()
        if reply is not None:
            connection.send(reply.decode())


def handle(hub: Hub, connection: Connection, raw: str, limiter: ClientLimiter | None = None) -> bytes | None:
    """One client command; returns a direct reply frame, or None when the hub queued what follows.

    Every bad command, whatever its shape, is a `CommandError` (an `error` message; the connection stays):
    an unforeseen failure too, logged once as the bug it is rather than costing the client its connection.
    """
    try:
        return _handle(hub, connection, raw, limiter)
    except CommandError:
        raise
    except Exception:  # noqa: BLE001 - see the docstring
        log.exception("a WebSocket command failed unexpectedly: %.200r", raw)
        raise CommandError("invalid_command", "the command could not be understood") from None


def _handle(hub: Hub, connection: Connection, raw: str, limiter: ClientLimiter | None) -> bytes | None:
    try:
        command = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise CommandError("invalid_json", "the frame is not valid JSON") from None
    if not isinstance(command, dict):
        raise CommandError("invalid_command", "a command is a JSON object with an 'op'")
    op = command.get("op")
    sub_id = command.get("id")
    if op == "ping":
        return b'{"type":"pong"}'
    if not isinstance(op, str) or op not in ("subscribe", "unsubscribe"):
        raise CommandError("unknown_op", "op must be one of subscribe, unsubscribe, ping", sub_id)
    if not isinstance(sub_id, str) or not 0 < len(sub_id) <= MAX_ID:
        raise CommandError("invalid_id", f"id must be a string of 1 to {MAX_ID} characters", sub_id)
    if op == "unsubscribe":
        if not hub.unsubscribe(connection, sub_id):
            raise CommandError("unknown_subscription", f"no subscription with id {sub_id!r}", sub_id)
        return None  # no acknowledgement (CONTRACT §6 lists none); nothing more arrives for that id
    unknown = set(command) - _FIELDS
    if unknown:
        raise CommandError("invalid_command", f"unknown field {sorted(unknown)[0][:60]!r}", sub_id)
    if sub_id not in connection.subs and len(connection.subs) >= MAX_SUBSCRIPTIONS:
        raise CommandError("too_many_subscriptions", f"at most {MAX_SUBSCRIPTIONS} subscriptions per connection",
                           sub_id)
    since = command.get("since")
    if since is not None and not isinstance(since, str):
        raise CommandError("invalid_param", "since must be a string '<epoch>:<seq>'", sub_id, "since")
    view: query.View | None = None
    tokens: list[str] | None = None
    if "tokens" in command:
        if "view" in command:
            raise CommandError("invalid_command", "give either view or tokens, not both", sub_id)
        tokens = _watchlist(command["tokens"], sub_id)
    else:
        view_params = command.get("view", {})
        if not isinstance(view_params, dict):
            raise CommandError("invalid_param", "view must be an object of view parameters", sub_id, "view")
        try:
            view = query.parse_view(view_params)
        except query.QueryError as exc:
            raise CommandError(exc.code, exc.message, sub_id, exc.param) from None
    if limiter is not None:
        wait = limiter.take(connection.client)
        if wait:
            raise CommandError("rate_limited", f"too many requests from this client; retry in {retry_after(wait)} s",
                               sub_id, retry_after=retry_after(wait))
    try:
        hub.subscribe(connection, sub_id, view=view, tokens=tokens, since=since)
    except ViewLimitError as exc:
        raise CommandError(exc.code, exc.message, sub_id, retry_after=exc.retry_after) from None
    return None


def _watchlist(tokens: object, sub_id: str) -> list[str]:
    if not isinstance(tokens, list) or not 0 < len(tokens) <= MAX_WATCHLIST:
        raise CommandError("invalid_param", f"tokens must be a list of 1 to {MAX_WATCHLIST} addresses", sub_id,
                           "tokens")
    for token in tokens:
        if not is_mint(token):
            shown = repr(token[:60]) if isinstance(token, str) else orjson.dumps(token)[:60].decode(errors="replace")
            raise CommandError("invalid_address", f"{shown} is not a base58 address of 32 to 44 characters", sub_id,
                               "tokens")
    return list(dict.fromkeys(tokens))


async def _writer(websocket: WebSocket, hub: Hub, connection: Connection, scope: anyio.CancelScope) -> None:
    # Frames skip the middleware (app.streams.direct); compressed ones are compressed once for all.
    socket = direct.attach(websocket._send, direct.WS_SERVER, direct_writes=hub.direct_writes, frames=hub.deflated)
    connection.use(socket)
    send, writer, write_timeout = socket.send, socket.writer, hub.stall_s
    shared = writer.send if isinstance(writer, direct.DirectWS) and writer.bits is not None else None
    connection.task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    try:
        while True:
            frames = await connection.next_batch()
            if frames is None:
                break
            for frame in frames:
                connection.deadline = loop.time() + write_timeout  # the hub's sweeper enforces it
                if shared is not None:
                    await shared(frame, send)
                else:
                    await send({"type": "websocket.send", "text": frame})
                connection.deadline = 0.0
    except Exception:  # noqa: BLE001 - the peer went away (or was dropped as slow); the reader sees it too
        connection.close("client")
        return
    reason = connection.closed
    if connection.transport is not None and connection.transport.is_closing():
        return  # ended on the socket (close 4008 by the `ender` app.streams.direct found), or dropped
    if reason == "slow":
        await _close(websocket, CLOSE_SLOW, "too slow to keep up")
    elif reason == "shutdown":
        await _close(websocket, CLOSE_GOING_AWAY, "server shutting down")
    else:
        return  # "client" or "too_big": the reader is already ending the connection
    scope.cancel()


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    try:
        with anyio.move_on_after(1.0):
            await websocket.close(code, reason)
    except Exception:  # noqa: BLE001 - already gone
        pass
