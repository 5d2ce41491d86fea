"""The token record's schema (CONTRACT §2): its fields in order, their JSON types, and RECORD_VERSION.

One place for what a record is, read by everything that depends on its shape: the merge that builds it
(tests hold its output to `RECORD_FIELDS`, key order included), the OpenAPI description
(`token_json_schema`), the query columns (`SORT_COLUMNS`) and the snapshot saved in DATA_DIR, which
carries `RECORD_VERSION` so a snapshot of another shape is ignored instead of served.

Bump RECORD_VERSION whenever a field is added, removed, renamed, reordered or changes meaning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

RECORD_VERSION = 1

SOURCES: tuple[str, ...] = ("dexscreener", "geckoterminal", "jupiter")
WINDOWS: tuple[str, ...] = ("5m", "1h", "6h", "24h", "7d")
STAT_FIELDS: tuple[str, ...] = ("volume_usd", "volume_sol", "price_change", "buys", "sells")

_NUMBER = {"type": ["number", "null"]}
_INTEGER = {"type": ["integer", "null"]}
_STRING = {"type": ["string", "null"]}
_TIME = {"type": ["string", "null"], "format": "date-time"}


@dataclass(frozen=True)
class Field:
    name: str
    json: dict[str, Any]  # the JSON schema of its value
    description: str | None = None


FIELDS: tuple[Field, ...] = (
    # The classic discovery record's ten fields first.
    Field("token_address", {"type": "string"}, "Solana mint, base58"),
    Field("token_name", _STRING),
    Field("token_ticker", _STRING),
    Field("price_sol", _NUMBER),
    Field("market_cap_sol", _NUMBER),
    Field("volume_sol", _NUMBER, "24h volume in SOL"),
    Field("liquidity_sol", _NUMBER),
    Field("transaction_count", _INTEGER, "24h buys + sells"),
    Field("price_1hr_change", _NUMBER, "percent"),
    Field("protocol", _STRING),
    Field("price_usd", _NUMBER),
    Field("market_cap_usd", _NUMBER),
    Field("fdv_usd", _NUMBER),
    Field("liquidity_usd", _NUMBER),
    Field("pair_address", _STRING),
    Field("created_at", _TIME),
    Field("image_url", _STRING),
    Field("stats", {"type": "object", "required": list(WINDOWS),
                    "properties": {w: {"$ref": "#/components/schemas/WindowStats"} for w in WINDOWS}}),
    Field("sources", {"type": "array", "items": {"type": "string", "enum": list(SOURCES)}}),
    Field("updated_at", {"type": "string", "format": "date-time"}),
)
RECORD_FIELDS: tuple[str, ...] = tuple(f.name for f in FIELDS)

_STAT_JSON = {"volume_usd": _NUMBER, "volume_sol": _NUMBER, "price_change": _NUMBER, "buys": _INTEGER,
              "sells": _INTEGER}

# The value each sort reads: a top-level figure, a figure of `stats[window]` (volume_usd, price_change),
# or one derived from the record ("txns": buys + sells of the window, "created": created_at as a time).
SORT_COLUMNS: dict[str, str] = {
    "volume": "volume_usd",
    "price_change": "price_change",
    "txns": "txns",
    "market_cap": "market_cap_usd",
    "liquidity": "liquidity_usd",
    "fdv": "fdv_usd",
    "created": "created",
    "price": "price_usd",
}
DERIVED_COLUMNS = {"txns": ("buys", "sells"), "created": ("created_at",)}


def token_json_schema() -> dict[str, Any]:
    """The record as OpenAPI 3.1 (JSON Schema) describes it."""
    properties = {}
    for f in FIELDS:
        properties[f.name] = {**f.json, "description": f.description} if f.description else dict(f.json)
    return {
        "type": "object",
        "description": "One token, keyed by its mint (CONTRACT §2). Unknown figures are null, never 0.",
        "required": list(RECORD_FIELDS),
        "properties": properties,
    }


def window_stats_json_schema() -> dict[str, Any]:
    """One `stats` window as OpenAPI describes it."""
    return {"type": "object", "required": list(STAT_FIELDS),
            "properties": {f: dict(_STAT_JSON[f]) for f in STAT_FIELDS}}
