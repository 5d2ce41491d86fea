"""Views (CONTRACT §3): parse and normalise the parameters, walk a version's sorted index, sign cursors
and build REST pages (§4) from the pre-encoded record bytes.

Everything derived from a version (value columns, sorted indexes, filtered views, encoded first pages)
is built lazily once and kept in `version.cache`, so a repeated query on the same version costs a dict
lookup and a first query over 2,000 records a fraction of a millisecond once the sorted index exists.

Cache keys used here (all tuples): ("query.col", column, window), ("query.ordered", sort, window, order),
("query.filtered", filter_key) and ("body", view.key).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import re
import struct
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any
from urllib.parse import quote

import orjson

from app.model import WINDOWS, Record
from app.schema import SORT_COLUMNS
from app.sources.protocols import protocol_name
from app.store.base import Version

# --------------------------------------------------------------------------------------------- errors


class QueryError(Exception):
    """A bad view parameter or cursor. `body()` is the §4 error JSON; `status` the HTTP status."""

    def __init__(
        self, message: str, param: str | None = None, *, code: str = "invalid_param", status: int = 400
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.status = status

    def body(self) -> bytes:
        return orjson.dumps({"error": {"code": self.code, "message": self.message, "param": self.param}})

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "param": self.param}


# ------------------------------------------------------------------------------------------ the view

SORTS: tuple[str, ...] = (
    "volume", "price_change", "txns", "market_cap", "liquidity", "fdv", "created", "price",
)  # fmt: skip
ORDERS: tuple[str, ...] = ("desc", "asc")
DEFAULT_SORT, DEFAULT_WINDOW, DEFAULT_ORDER, DEFAULT_LIMIT = "volume", "24h", "desc", 30
MAX_LIMIT = 100
MAX_Q = 100
KNOWN_PROTOCOLS: tuple[str, ...] = (
    "Raydium", "Raydium CLMM", "Raydium CPMM", "PumpSwap", "Pump.fun", "Meteora", "Meteora DLMM", "Orca",
)  # fmt: skip
_KNOWN_BY_LOWER = {name.lower(): name for name in KNOWN_PROTOCOLS}

_NUMBER_PARAMS = (
    "min_liquidity_usd", "min_volume_usd", "min_market_cap_usd", "max_market_cap_usd", "max_age_h",
)  # fmt: skip
VIEW_PARAMS: frozenset[str] = frozenset(
    ("sort", "window", "order", "limit", *_NUMBER_PARAMS, "protocol", "q")
)
# The order of parameters in `View.key` and `View.as_dict()`.
_PARAM_ORDER = ("sort", "window", "order", "limit", *_NUMBER_PARAMS, "protocol", "q")

# Sorts that read `window`, and the value column each sort reads.
_WINDOWED_SORTS = frozenset({"volume", "price_change", "txns"})
_SORT_COLUMN = SORT_COLUMNS  # app.schema: the record figure each sort reads


@dataclass(frozen=True)
class View:
    """One normalised view. Build it with `parse_view`/`parse_query`; equal views have equal keys."""

    sort: str = DEFAULT_SORT
    window: str = DEFAULT_WINDOW
    order: str = DEFAULT_ORDER
    limit: int = DEFAULT_LIMIT
    min_liquidity_usd: float | int | None = None
    min_volume_usd: float | int | None = None
    min_market_cap_usd: float | int | None = None
    max_market_cap_usd: float | int | None = None
    max_age_h: float | int | None = None
    protocol: tuple[str, ...] = ()  # display names (canonical for known ones), sorted
    q: str | None = None  # stripped, lower-case

    @cached_property
    def filter_key(self) -> str:
        """Canonical text of every parameter but `limit` (what decides the rows and their order)."""
        parts = [f"sort={self.sort}", f"window={self.window}", f"order={self.order}"]
        for name in _NUMBER_PARAMS:
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{name}={_format_number(value)}")
        if self.protocol:
            parts.append("protocol=" + ",".join(quote(p, safe="") for p in self.protocol))
        if self.q is not None:
            parts.append("q=" + quote(self.q, safe=""))
        return "&".join(parts)

    @cached_property
    def key(self) -> str:
        """Canonical text of every parameter (a valid query string)."""
        return f"{self.filter_key}&limit={self.limit}"

    def as_dict(self) -> dict[str, Any]:
        """Every parameter, normalised (the SSE snapshot's `view`); absent filters are null."""
        return {
            "sort": self.sort,
            "window": self.window,
            "order": self.order,
            "limit": self.limit,
            "min_liquidity_usd": self.min_liquidity_usd,
            "min_volume_usd": self.min_volume_usd,
            "min_market_cap_usd": self.min_market_cap_usd,
            "max_market_cap_usd": self.max_market_cap_usd,
            "max_age_h": self.max_age_h,
            "protocol": list(self.protocol) if self.protocol else None,
            "q": self.q,
        }

    @cached_property
    def protocol_set(self) -> frozenset[str]:
        """The protocols, lower-case, for matching."""
        return frozenset(p.lower() for p in self.protocol)

    @cached_property
    def cursor_hash(self) -> bytes:
        """What a cursor records of its view: 6 bytes of a hash of `filter_key`."""
        return hashlib.blake2b(self.filter_key.encode(), digest_size=6).digest()


def _format_number(value: float | int) -> str:
    return str(value) if isinstance(value, int) else repr(value)


# --------------------------------------------------------------------------------------------- parse

_NUMBER_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def _message(name: str) -> str:
    if name == "sort":
        return "sort must be one of " + ", ".join(SORTS)
    if name == "window":
        return "window must be one of " + ", ".join(WINDOWS)
    if name == "order":
        return "order must be desc or asc"
    if name == "limit":
        return f"limit must be an integer from 1 to {MAX_LIMIT}"
    if name == "max_age_h":
        return "max_age_h must be a number of hours > 0"
    if name in _NUMBER_PARAMS:
        return f"{name} must be a number >= 0"
    if name == "protocol":
        return (
            "protocol must be a comma-separated list of protocol names, e.g. "
            + ", ".join(KNOWN_PROTOCOLS)
            + " (case-insensitive)"
        )
    if name == "q":
        return f"q must be text of 1 to {MAX_Q} characters (address prefix, or part of a name or ticker)"
    return f"{name} is not valid"  # pragma: no cover


def _bad(name: str) -> QueryError:
    return QueryError(_message(name), name)


def _choice(name: str, value: object, allowed: tuple[str, ...]) -> str:
    if isinstance(value, str) and value in allowed:
        return value
    raise _bad(name)


def _limit(value: object) -> int:
    if isinstance(value, bool):
        raise _bad("limit")
    if isinstance(value, str):
        if not (value.isascii() and value.isdigit()):
            raise _bad("limit")
        number = int(value)
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    else:
        raise _bad("limit")
    if not 1 <= number <= MAX_LIMIT:
        raise _bad("limit")
    return number


def _number(name: str, value: object) -> float | int:
    if isinstance(value, bool):
        raise _bad(name)
    if isinstance(value, str):
        if not _NUMBER_RE.fullmatch(value):
            raise _bad(name)
        number = float(value)
    elif isinstance(value, (int, float)):
        number = float(value)
    else:
        raise _bad(name)
    if not math.isfinite(number) or number < 0 or (name == "max_age_h" and number <= 0):
        raise _bad(name)
    if number.is_integer() and abs(number) < 2**53:
        return int(number)
    return number


def _protocols(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        items: list[object] = [value]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise _bad("protocol")
    names: dict[str, str] = {}
    for item in items:
        if not isinstance(item, str):
            raise _bad("protocol")
        for part in item.split(","):
            part = part.strip()
            if not part:
                continue
            if len(part) > 64:
                raise _bad("protocol")
            display = _KNOWN_BY_LOWER.get(part.lower()) or protocol_name(part) or part
            names.setdefault(display.lower(), display)
    if not names:
        if isinstance(value, (list, tuple)) and not value:
            return ()
        raise _bad("protocol")
    return tuple(sorted(names.values(), key=lambda n: (n.lower(), n)))


def _q(value: object) -> str:
    if not isinstance(value, str):
        raise _bad("q")
    text = value.strip()
    if not text or len(text) > MAX_Q:
        raise _bad("q")
    return text.lower()


def parse_view(params: Mapping[str, object], *, allowed_extra: Iterable[str] = ()) -> View:
    """A `View` from query-string values (str) or a WebSocket JSON object (numbers, lists, null).

    Unknown names (not §3, not in `allowed_extra`) and bad values raise `QueryError` naming the
    parameter. JSON `null` means "not given" (so `view.as_dict()` parses back to the same view). A list
    value stands for a repeated query parameter (rejected), except for `protocol`, where it is a list of
    names.
    """
    extra = frozenset(allowed_extra)
    values: dict[str, object] = {}
    for name, value in params.items():
        if name not in VIEW_PARAMS:
            if name in extra:
                continue
            raise QueryError(
                f"unknown parameter {name!r}; allowed: " + ", ".join(_PARAM_ORDER + tuple(sorted(extra))),
                str(name),
            )
        if isinstance(value, (list, tuple)) and name != "protocol":
            if len(value) != 1:
                raise QueryError(f"{name} is given more than once", name)
            value = value[0]
        if value is None:
            continue
        if isinstance(value, str) and name != "protocol" and value == "":
            raise _bad(name)
        values[name] = value

    kwargs: dict[str, Any] = {}
    if "sort" in values:
        kwargs["sort"] = _choice("sort", values["sort"], SORTS)
    if "window" in values:
        kwargs["window"] = _choice("window", values["window"], WINDOWS)
    if "order" in values:
        kwargs["order"] = _choice("order", values["order"], ORDERS)
    if "limit" in values:
        kwargs["limit"] = _limit(values["limit"])
    for name in _NUMBER_PARAMS:
        if name in values:
            kwargs[name] = _number(name, values[name])
    if "protocol" in values:
        kwargs["protocol"] = _protocols(values["protocol"])
    if "q" in values:
        kwargs["q"] = _q(values["q"])
    return View(**kwargs)


def parse_query(
    items: Iterable[tuple[str, str]], *, allowed_extra: Iterable[str] = ()
) -> tuple[View, dict[str, str]]:
    """A `View` from query-string pairs (e.g. `request.query_params.multi_items()`), plus the values of
    the `allowed_extra` parameters present (e.g. cursor, since). Any repeated name is a 400."""
    extra = frozenset(allowed_extra)
    view_params: dict[str, str] = {}
    extras: dict[str, str] = {}
    seen: set[str] = set()
    for name, value in items:
        if name in seen:
            raise QueryError(f"{name} is given more than once", name)
        seen.add(name)
        if name in VIEW_PARAMS:
            view_params[name] = value
        elif name in extra:
            extras[name] = value
        else:
            raise QueryError(
                f"unknown parameter {name!r}; allowed: " + ", ".join(_PARAM_ORDER + tuple(sorted(extra))),
                name,
            )
    return parse_view(view_params), extras


# ------------------------------------------------------------------------------------- value columns

_TIMESTAMPS: dict[str, float | None] = {}


def _timestamp(value: object) -> float | None:
    """Epoch seconds of an ISO 8601 `created_at` (memoised: the same strings recur in every version)."""
    if not isinstance(value, str):
        return None
    try:
        return _TIMESTAMPS[value]
    except KeyError:
        pass
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        result: float | None = parsed.timestamp()
    except ValueError:
        result = None
    if len(_TIMESTAMPS) >= 100_000:
        _TIMESTAMPS.clear()
    _TIMESTAMPS[value] = result
    return result


def _num(value: object) -> float | int | None:
    """A finite number, or None (null, NaN, infinity, anything else)."""
    cls = value.__class__
    if cls is float:
        return value if value - value == 0 else None  # type: ignore[operator,return-value]
    if cls is int:
        return value  # type: ignore[return-value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value if math.isfinite(value) else None
    return None


def _stat(record: Record, window: str, name: str) -> float | int | None:
    try:
        value = record["stats"][window][name]
    except (KeyError, TypeError, IndexError):
        return None
    return None if value is None else _num(value)


def _txns(record: Record, window: str) -> float | int | None:
    buys = _stat(record, window, "buys")
    sells = _stat(record, window, "sells")
    if buys is None:
        return sells
    if sells is None:
        return buys
    return buys + sells


def _text(record: Record) -> tuple[str, str, str]:
    name = record.get("token_name")
    ticker = record.get("token_ticker")
    return (
        str(record.get("token_address") or "").lower(),
        name.lower() if isinstance(name, str) else "",
        ticker.lower() if isinstance(ticker, str) else "",
    )


def _protocol_lower(record: Record) -> str | None:
    protocol = record.get("protocol")
    return protocol.lower() if isinstance(protocol, str) else None


_WINDOWED_COLUMNS = frozenset({"volume_usd", "price_change", "txns"})


def _column(version: Version, name: str, window: str | None = None) -> dict[str, Any]:
    """address -> value of one figure (None when unknown), built once per version."""
    if name not in _WINDOWED_COLUMNS:
        window = None
    key = ("query.col", name, window)
    column = version.cache.get(key)
    if column is not None:
        return column
    records = version.records
    if name == "txns":
        column = {a: _txns(r, window) for a, r in records.items()}  # type: ignore[arg-type]
    elif window is not None:
        column = {a: _stat(r, window, name) for a, r in records.items()}
    elif name == "created":
        column = {a: _timestamp(r.get("created_at")) for a, r in records.items()}
    elif name == "text":
        column = {a: _text(r) for a, r in records.items()}
    elif name == "protocol":
        column = {a: _protocol_lower(r) for a, r in records.items()}
    else:
        column = {a: _num(r.get(name)) for a, r in records.items()}
    version.cache[key] = column
    return column


# ------------------------------------------------------------------------------------------ ordering


def _by_address(version: Version) -> list[str]:
    """Every address ascending: the tie order every index starts from. Cached."""
    result = version.cache.get(("query.by_address",))
    if result is None:
        result = version.cache[("query.by_address",)] = sorted(version.records)
    return result


def ordered(version: Version, sort: str, window: str, order: str) -> list[str]:
    """Every address of `version` in view order: nulls last, ties by address ascending. Cached."""
    if sort not in _WINDOWED_SORTS:
        window = None  # type: ignore[assignment]
    key = ("query.ordered", sort, window, order)
    result = version.cache.get(key)
    if result is not None:
        return result
    column = _column(version, _SORT_COLUMN[sort], window)
    # Addresses ascending, then a stable sort by value (stable with reverse=True too): ties stay in
    # address order in both orders. Sorting by a plain number key is much cheaper than by tuples.
    by_address = _by_address(version)
    result = [a for a in by_address if column[a] is not None]
    result.sort(key=column.__getitem__, reverse=order == "desc")
    if len(result) < len(by_address):
        result += [a for a in by_address if column[a] is None]
    version.cache[key] = result
    return result


_CACHE_LIMIT = 4096  # entries of version.cache beyond which filtered views and pages are not kept


def _reference(view: View, now: float | None) -> int | None:
    """The instant (whole seconds) that `max_age_h` is measured from; None when the view has no age."""
    if view.max_age_h is None:
        return None
    return int(time.time() if now is None else now)


def filtered(version: Version, view: View, now: float | None = None) -> list[str]:
    """The whole view (every row that passes the filters, in view order) on `version`. Cached.

    `max_age_h` keeps tokens created at or after `int(now) - max_age_h * 3600`; `now` defaults to the
    wall clock. The result is shared: do not mutate it.
    """
    return _filtered(version, view, _reference(view, now))


def _filtered(version: Version, view: View, ref: int | None) -> list[str]:
    key = ("query.filtered", view.filter_key)
    hit = version.cache.get(key)
    if hit is not None and hit[0] == ref:
        return hit[1]
    addresses = ordered(version, view.sort, view.window, view.order)
    if view.min_liquidity_usd is not None:
        addresses = _at_least(addresses, _column(version, "liquidity_usd"), view.min_liquidity_usd)
    if view.min_volume_usd is not None:
        addresses = _at_least(addresses, _column(version, "volume_usd", view.window), view.min_volume_usd)
    if view.min_market_cap_usd is not None:
        addresses = _at_least(addresses, _column(version, "market_cap_usd"), view.min_market_cap_usd)
    if view.max_market_cap_usd is not None:
        column, limit = _column(version, "market_cap_usd"), view.max_market_cap_usd
        addresses = [a for a in addresses if (v := column[a]) is not None and v <= limit]
    if view.max_age_h is not None and ref is not None:
        addresses = _at_least(addresses, _column(version, "created"), ref - view.max_age_h * 3600.0)
    if view.protocol:
        column, wanted = _column(version, "protocol"), view.protocol_set
        addresses = [a for a in addresses if column[a] in wanted]
    if view.q is not None:
        column, q = _column(version, "text"), view.q
        addresses = [a for a in addresses if (t := column[a])[0].startswith(q) or q in t[1] or q in t[2]]
    if key in version.cache or len(version.cache) < _CACHE_LIMIT:
        version.cache[key] = (ref, addresses)
    return addresses


def _at_least(addresses: list[str], column: dict[str, Any], minimum: float) -> list[str]:
    return [a for a in addresses if (v := column[a]) is not None and v >= minimum]


# --------------------------------------------------------------------------------------------- pages

# A cursor is answered for 5.5 minutes after it was issued: CONTRACT §4 promises 5, and a first page
# may be served from the hot cache up to 30 s after its cursor was made (app/api/hot.py).
CURSOR_TTL_S = 330.0
_CURSOR_VERSION = 1
_MAC_BYTES = 16
_CURSOR_FIXED = struct.Struct(">QIIq6s4s")  # seq, position, issued, age reference, view hash, last hash
_MAX_CURSOR_CHARS = 1024


@dataclass
class Page:
    """One page of a view on one version. `offset` is the index of the first row in the whole view."""

    addresses: list[str]
    next_cursor: str | None
    total: int
    version: Version
    offset: int = 0
    ref: int | None = field(default=None, repr=False)  # age-filter reference time the walk uses


@dataclass(frozen=True)
class _Cursor:
    epoch: str
    seq: int
    position: int
    issued: int
    ref: int | None
    view_hash: bytes
    last_hash: bytes


def _short_hash(address: str) -> bytes:
    return hashlib.blake2b(address.encode(), digest_size=4).digest()


def _mac(secret: bytes, payload: bytes) -> bytes:
    return hmac.new(secret, payload, hashlib.sha256).digest()[:_MAC_BYTES]


def _encode_cursor(cursor: _Cursor, secret: bytes) -> str:
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


def _invalid_cursor(message: str = "cursor is not valid: pass a page's next_cursor unchanged") -> QueryError:
    return QueryError(message, "cursor", code="invalid_cursor", status=400)


def _expired(message: str) -> QueryError:
    return QueryError(message, "cursor", code="cursor_expired", status=410)


def _decode_cursor(text: str, secret: bytes) -> _Cursor:
    if not isinstance(text, str) or not text or len(text) > _MAX_CURSOR_CHARS or not text.isascii():
        raise _invalid_cursor()
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise _invalid_cursor() from None
    if len(raw) < 3 + _CURSOR_FIXED.size + _MAC_BYTES:
        raise _invalid_cursor()
    payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
    if not hmac.compare_digest(mac, _mac(secret, payload)):
        raise _invalid_cursor()
    kind, epoch_len = struct.unpack_from(">BH", payload)
    if kind != _CURSOR_VERSION or len(payload) != 3 + epoch_len + _CURSOR_FIXED.size:
        raise _invalid_cursor()
    try:
        epoch = payload[3 : 3 + epoch_len].decode()
    except UnicodeDecodeError:  # pragma: no cover - signed by us
        raise _invalid_cursor() from None
    seq, position, issued, ref, view_hash, last_hash = _CURSOR_FIXED.unpack_from(payload, 3 + epoch_len)
    return _Cursor(epoch, seq, position, issued, None if ref < 0 else ref, view_hash, last_hash)


def page(
    store: Any, view: View, cursor: str | None, now: float | None = None, *, secret: bytes
) -> Page:
    """One page of `view`: the first (on `store.latest()`) or the one `cursor` points at.

    A cursor is opaque and signed (HMAC-SHA256 with `secret`). It is bound to the view's filters and
    order (not its `limit`: a walk may change page size), its version and a position in the view.
    Raises QueryError 400 `invalid_cursor` (forged, damaged, other view) or 410 `cursor_expired` (over
    `CURSOR_TTL_S` old, another epoch, version no longer held). Each page with a next page holds its
    version (`store.hold`) so the walk keeps seeing it. `now` (wall clock by default) is the time for
    cursor ages and for `max_age_h`.
    """
    clock = time.time() if now is None else now
    if cursor is None:
        version = store.latest()
        offset = 0
        ref = _reference(view, clock)
        addresses = _filtered(version, view, ref)
    else:
        decoded = _decode_cursor(cursor, secret)
        if decoded.view_hash != view.cursor_hash:
            raise _invalid_cursor(
                "cursor belongs to a different view: keep the sort, window, order and filters"
            )
        if decoded.epoch != store.epoch:
            raise _expired("cursor is from an earlier history of the data; start again without a cursor")
        if clock - decoded.issued > CURSOR_TTL_S:
            raise _expired("cursor is over 5 minutes old; start again without a cursor")
        version = store.get(decoded.seq)
        if version is None or version.epoch != decoded.epoch:
            raise _expired("cursor's version of the data is no longer held; start again without a cursor")
        offset = decoded.position
        ref = decoded.ref if view.max_age_h is not None else None
        if view.max_age_h is not None and ref is None:
            raise _invalid_cursor()  # pragma: no cover - the view hash already differs
        addresses = _filtered(version, view, ref)
        if not 0 < offset <= len(addresses) or _short_hash(addresses[offset - 1]) != decoded.last_hash:
            raise _invalid_cursor()
    end = offset + view.limit
    next_cursor = None
    if end < len(addresses):
        store.hold(version.seq)
        next_cursor = _encode_cursor(
            _Cursor(
                version.epoch,
                version.seq,
                end,
                int(clock),
                ref,
                view.cursor_hash,
                _short_hash(addresses[end - 1]),
            ),
            secret,
        )
    return Page(addresses[offset:end], next_cursor, len(addresses), version, offset, ref)


def rows_json(version: Version, addresses: Iterable[str]) -> bytes:
    """A JSON array of the records of `addresses`, joined from the pre-encoded bytes."""
    encoded = version.encoded
    return b"[" + b",".join([encoded[a] for a in addresses]) + b"]"


def encode_page(page: Page, view: View) -> bytes:
    """The §4 body `{"data", "next_cursor", "epoch", "seq", "total"}` from pre-encoded record bytes."""
    head, tail = page_parts(page, view)
    return head + tail


def page_parts(page: Page, view: View) -> tuple[bytes, bytes]:
    """`encode_page`'s body in two parts: the data part, cached per version for a view's first page (key
    ("body", view.key)), and the cursor part, new for every request (it carries the time it was issued).
    The gzip body deflates the first once and joins the second (app.api.compression)."""
    version = page.version
    head = None
    key = ("body", view.key)
    if page.offset == 0:
        hit = version.cache.get(key)
        if hit is not None and hit[0] == page.ref:
            head = hit[1]
    if head is None:
        encoded = version.encoded
        head = b'{"data":[' + b",".join([encoded[a] for a in page.addresses]) + b'],"next_cursor":'
        if page.offset == 0 and (key in version.cache or len(version.cache) < _CACHE_LIMIT):
            version.cache[key] = (page.ref, head)
    tail = b"".join((orjson.dumps(page.next_cursor), b',"epoch":', orjson.dumps(version.epoch),
                     b',"seq":%d,"total":%d}' % (version.seq, page.total)))
    return head, tail


__all__ = [
    "CURSOR_TTL_S",
    "KNOWN_PROTOCOLS",
    "Page",
    "QueryError",
    "SORTS",
    "VIEW_PARAMS",
    "View",
    "encode_page",
    "page_parts",
    "filtered",
    "ordered",
    "page",
    "parse_query",
    "parse_view",
    "rows_json",
]
