"""Signed cursors (CONTRACT §4): opaque to clients, bound to one view, one version and a position in it.

A cursor carries the time its walk began (the first page), never renewed by later pages: a walk may
take `CURSOR_TTL_S` from its first page and no longer, so a client following cursors slowly cannot keep
a version (and every record it shares) alive indefinitely. Its version is held once, for that long, by
the first page (app.query.pages).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
from dataclasses import dataclass

from app.query.params import QueryError

# A walk is answered for 5.5 minutes from its first page: CONTRACT §4 promises 5, and a first page may be
# served from the hot cache up to 30 s after its cursor was made (app/api/hot.py).
CURSOR_TTL_S = 330.0
_CURSOR_VERSION = 1
_MAC_BYTES = 16
_CURSOR_FIXED = struct.Struct(">QIIq6s4s")  # seq, position, issued, age reference, view hash, last hash
_MAX_CURSOR_CHARS = 1024


@dataclass(frozen=True)
class Cursor:
    epoch: str
    seq: int
    position: int
    issued: int  # when the walk's first page was made (unix seconds, low 32 bits)
    ref: int | None
    view_hash: bytes
    last_hash: bytes


def short_hash(address: str) -> bytes:
    return hashlib.blake2b(address.encode(), digest_size=4).digest()


def _mac(secret: bytes, payload: bytes) -> bytes:
    return hmac.new(secret, payload, hashlib.sha256).digest()[:_MAC_BYTES]


def encode(cursor: Cursor, secret: bytes) -> str:
    epoch = cursor.epoch.encode()
    payload = (
        struct.pack(">BH", _CURSOR_VERSION, len(epoch))
        + epoch
        + _CURSOR_FIXED.pack(
            cursor.seq,
            cursor.position,
            cursor.issued & 0xFFFFFFFF,
            -1 if cursor.ref is None else cursor.ref,
            cursor.view_hash,
            cursor.last_hash,
        )
    )
    return base64.urlsafe_b64encode(payload + _mac(secret, payload)).rstrip(b"=").decode()


def invalid(message: str = "cursor is not valid: pass a page's next_cursor unchanged") -> QueryError:
    return QueryError(message, "cursor", code="invalid_cursor", status=400)


def expired(message: str) -> QueryError:
    return QueryError(message, "cursor", code="cursor_expired", status=410)


def decode(text: str, secret: bytes, epoch: str) -> Cursor:
    """The cursor `text` names. Raises 400 `invalid_cursor` for anything we did not sign, except a
    well-formed cursor of another epoch: that one was signed by an earlier run (its secret is gone with
    it), and gets 410 `cursor_expired` as docs/DECISIONS.md promises."""
    if not isinstance(text, str) or not text or len(text) > _MAX_CURSOR_CHARS or not text.isascii():
        raise invalid()
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise invalid() from None
    if len(raw) < 3 + _CURSOR_FIXED.size + _MAC_BYTES:
        raise invalid()
    payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
    kind, epoch_len = struct.unpack_from(">BH", payload)
    if kind != _CURSOR_VERSION or len(payload) != 3 + epoch_len + _CURSOR_FIXED.size:
        raise invalid()
    try:
        cursor_epoch = payload[3 : 3 + epoch_len].decode()
    except UnicodeDecodeError:
        raise invalid() from None
    if not hmac.compare_digest(mac, _mac(secret, payload)):
        if cursor_epoch != epoch and 0 < epoch_len <= 64 and cursor_epoch.isascii() and cursor_epoch.isprintable():
            raise expired("cursor is from before the service restarted; start again without a cursor")
        raise invalid()
    seq, position, issued, ref, view_hash, last_hash = _CURSOR_FIXED.unpack_from(payload, 3 + epoch_len)
    return Cursor(cursor_epoch, seq, position, issued, None if ref < 0 else ref, view_hash, last_hash)

