"""View parameters (CONTRACT §3): parse and normalise them from a query string or a WebSocket object.

Every number is ASCII (`min_liquidity_usd=１２` is a 400 like `limit=１２`): the same text must mean
the same view however it arrives, and a digit that only Unicode knows is almost always a mistake.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any
from urllib.parse import quote

import orjson

from app.model import WINDOWS
from app.schema import SORT_COLUMNS
from app.sources.protocols import protocol_name

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
WINDOWED_SORTS = frozenset({"volume", "price_change", "txns"})
SORT_COLUMN = SORT_COLUMNS  # app.schema: the record figure each sort reads


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

_NUMBER_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)


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
        try:
            number = float(value)
        except OverflowError:  # an integer too big for a float
            raise _bad(name) from None
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
