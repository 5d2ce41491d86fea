"""gzip for JSON answers (CONTRACT §4): chosen from `Accept-Encoding`, encoded once per answer.

Why not Starlette's GZipMiddleware: it compresses every response anew, on every request. Our answers are
bytes cached per version and query, so their gzip bytes are made once and cached beside them, and a
request only picks one of the two. A page of `GET /api/tokens` is a cached head (its rows) and a tail
made per request (the cursor, which carries the time its walk began): the head is deflated once
(`deflate_head`) and the tail follows it as a stored, uncompressed deflate block (`gzip_join`), so the
request itself only frames a few hundred bytes and extends a CRC; no compressor runs.

Only answers over `MIN_SIZE` are compressed (below it gzip saves little and costs its header). The two
encodings are two representations: each has its own ETag (`gzip_etag`), and every answer that may come
either way says `Vary: Accept-Encoding`.
"""

from __future__ import annotations

import functools
import struct
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from app.api.errors import etag_matches
from app.api.responses import JSONBytes

MIN_SIZE = 1024  # bytes: a JSON answer over this goes out gzip'd to a client that takes gzip
LEVEL = 6  # paid once per answer, so zlib's default: a 100-row page 109 KB -> 22 KB in ~2 ms
VARY = "Accept-Encoding"
_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # gzip, deflate, no flags, no mtime, unknown OS


@functools.lru_cache(maxsize=512)
def accepts_gzip(header: bytes | str | None) -> bool:
    """Whether an `Accept-Encoding` value takes gzip: `gzip` (or `x-gzip`) with a q above 0, or `*` with one
    when gzip is not named (RFC 9110 §12.5.3). Memoised: clients send one of a handful of values."""
    if not header:
        return False
    text = header.decode("latin-1") if isinstance(header, bytes) else header
    gzip_q: float | None = None
    star_q: float | None = None
    for part in text.split(","):
        coding, _, params = part.partition(";")
        coding = coding.strip().lower()
        q = _quality(params)
        if coding in ("gzip", "x-gzip"):
            gzip_q = q if gzip_q is None else max(gzip_q, q)
        elif coding == "*":
            star_q = q
    if gzip_q is not None:
        return gzip_q > 0
    return star_q is not None and star_q > 0


def _quality(params: str) -> float:
    """The `q` of one coding's parameters (1 when absent; 0, i.e. not acceptable, when malformed)."""
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                q = float(value.strip())
            except ValueError:
                return 0.0
            return q if 0.0 <= q <= 1.0 else 0.0
    return 1.0


def gzip_body(body: bytes) -> bytes:
    """`body` as one gzip member (no file name, no time: the same bytes every time)."""
    compressor = zlib.compressobj(LEVEL, zlib.DEFLATED, 31)
    return compressor.compress(body) + compressor.flush()


def gzip_etag(etag: str) -> str:
    """The ETag of the gzip representation: `"tag"` -> `"tag-gzip"` (a weak tag stays weak)."""
    return etag[:-1] + '-gzip"' if etag.endswith('"') else etag + "-gzip"


@dataclass(frozen=True, slots=True)
class Deflated:
    """The cached first part of a body, deflated and flushed to a byte boundary, with its CRC and size."""

    data: bytes
    crc: int
    size: int


def deflate_head(head: bytes) -> Deflated:
    """`head` deflated (raw, sync-flushed: it ends on a byte boundary and a block may follow it)."""
    compressor = zlib.compressobj(LEVEL, zlib.DEFLATED, -15)
    data = compressor.compress(head) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return Deflated(data, zlib.crc32(head), len(head))


def gzip_join(head: Deflated, tail: bytes) -> bytes:
    """A gzip body of `head` + `tail`: the deflated head, then `tail` as the final stored block (RFC 1951
    §3.2.4: a byte 1 for "final, stored", its length and the length's complement, the bytes themselves)."""
    stored = b""
    rest = tail
    while len(rest) > 0xFFFF:  # a stored block holds at most 65,535 bytes (tails are a few hundred)
        stored += b"\x00" + struct.pack("<HH", 0xFFFF, 0) + rest[:0xFFFF]
        rest = rest[0xFFFF:]
    stored += b"\x01" + struct.pack("<HH", len(rest), len(rest) ^ 0xFFFF) + rest
    trailer = struct.pack("<II", zlib.crc32(tail, head.crc), (head.size + len(tail)) & 0xFFFFFFFF)
    return b"".join((_HEADER, head.data, stored, trailer))


# ---- answers -----------------------------------------------------------------------------------------


def wants_gzip(request: Request) -> bool:
    return accepts_gzip(request.headers.get("accept-encoding"))


def not_modified(etag: str) -> Response:
    """304 with the tag the client holds, and `Vary` as the 200 would have had (RFC 9110 §15.4.5)."""
    return Response(status_code=304, headers={"ETag": etag, "Vary": VARY})


def matched(request: Request, etag: str) -> str | None:
    """The tag of `etag`'s representations that `If-None-Match` names (the gzip one only for a client that
    takes gzip), or None: a 304 can be answered before the body is made."""
    header = request.headers.get("if-none-match")
    if not header:
        return None
    if wants_gzip(request) and etag_matches(header, gzip_etag(etag)):
        return gzip_etag(etag)
    return etag if etag_matches(header, etag) else None


def answer(request: Request, body: bytes, etag: str | None = None,
           gzipped: bytes | Callable[[], bytes] | None = None, headers: Mapping[str, str] | None = None) -> Response:
    """A JSON answer as the client takes it: `body`, or (over MIN_SIZE, to a client that takes gzip) its
    gzip bytes, given (`gzipped`, made once by the caller's cache) or made here. Each encoding has its
    own ETag, and a 304 for a tag the client already holds."""
    out = {**(headers or {}), "Vary": VARY}
    compressed = len(body) > MIN_SIZE and wants_gzip(request)
    if etag is not None:
        tag = out["ETag"] = gzip_etag(etag) if compressed else etag
        if etag_matches(request.headers.get("if-none-match"), tag):
            return not_modified(tag)
    if not compressed:
        return JSONBytes(body, headers=out)
    out["Content-Encoding"] = "gzip"
    if gzipped is None:
        return JSONBytes(gzip_body(body), headers=out)
    return JSONBytes(gzipped() if callable(gzipped) else gzipped, headers=out)
