"""How one event is framed for each kind of client (CONTRACT §5-6), from an already encoded JSON payload.

A payload is encoded once per version and view; framing only wraps it, so every SSE subscriber of a view
gets the very same bytes and every WebSocket subscription with the same id the very same text.
"""

from __future__ import annotations

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
