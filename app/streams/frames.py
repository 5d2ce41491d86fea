"""How one event is framed for each kind of client (CONTRACT §5-6), from an already encoded JSON payload.

A payload is encoded once per version and view; framing only wraps it, so every SSE subscriber of a view
gets the very same bytes and every WebSocket subscription with the same id the very same text. `SSE` and
`WS` are the two framings (app.streams.transport.Framing) the endpoints hand to the hub.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson


def sse_frame(event: str, tag: str, payload: bytes) -> bytes:
    """One Server-Sent Event: `id: <epoch>:<seq>`, `event: <event>`, `data: <payload>`."""
    return b"id: " + tag.encode() + b"\nevent: " + event.encode() + b"\ndata: " + payload + b"\n\n"


def ws_frame(kind: str, sub_id: str | None, payload: bytes) -> str:
    """`{"type": kind, "id": sub_id, ...payload}` (text) without decoding the shared payload."""
    head = b'{"type":"' + kind.encode() + b'"'
    if sub_id is not None:
        head += b',"id":' + orjson.dumps(sub_id)
    if payload == b"{}":
        return (head + b"}").decode()
    return (head + b"," + payload[1:]).decode()


def ws_alert_payload(alert: dict[str, Any]) -> bytes:
    """An alert as a WebSocket object's fields: its own `type` becomes `alert_type` ("type" is "alert")."""
    fields = {"alert_type": alert["type"]}
    fields.update((k, v) for k, v in alert.items() if k != "type")
    return orjson.dumps(fields)


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert, encoded once: its SSE data (with its own `type`, §5) and its WebSocket fields."""

    address: str
    seq: int
    sse: bytes
    ws: bytes

    @classmethod
    def of(cls, alert: dict[str, Any]) -> Alert:
        return cls(alert["token_address"], alert["seq"], orjson.dumps(alert), ws_alert_payload(alert))

    @property
    def size(self) -> int:
        return len(self.sse) + 40


class SSEFraming:
    """Server-Sent Events: one stream per view, so a frame is the same for every subscriber of it."""

    name = "sse"
    per_subscription = False
    heartbeat_without_subscriptions = False  # an SSE stream always holds its one subscription

    def event(self, event: str, tag: str, sub_id: str | None, payload: bytes) -> bytes:
        return sse_frame(event, tag, payload)

    def alert(self, tag: str, sub_id: str | None, alert: Alert) -> bytes:
        return sse_frame("alert", tag, alert.sse)


class WSFraming:
    """WebSocket text frames: each names its subscription's id, so it is shared per id."""

    name = "ws"
    per_subscription = True
    heartbeat_without_subscriptions = True  # a connection with nothing subscribed still hears the latest seq

    def event(self, event: str, tag: str, sub_id: str | None, payload: bytes) -> str:
        return ws_frame(event, sub_id, payload)

    def alert(self, tag: str, sub_id: str | None, alert: Alert) -> str:
        return ws_frame("alert", sub_id, alert.ws)


SSE = SSEFraming()
WS = WSFraming()
