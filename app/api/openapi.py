"""The OpenAPI 3.1 description of the REST API, built once from the same constants the code validates with.

`python -m app.api.openapi --postman > docs/postman_collection.json` writes a Postman collection from it.
"""

from __future__ import annotations

import sys
from typing import Any

import orjson

from app import query
from app.api.compression import gzip_body
from app.api.history_routes import openapi_path as history_path
from app.model import WINDOWS
from app.schema import token_json_schema, window_stats_json_schema

NUMBER_OR_NULL = {"type": ["number", "null"]}
INTEGER_OR_NULL = {"type": ["integer", "null"]}
STRING_OR_NULL = {"type": ["string", "null"]}
ISO_OR_NULL = {"type": ["string", "null"], "format": "date-time"}


TOKEN = token_json_schema()

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["code", "message", "param"], "properties": {
        "code": {"type": "string", "examples": ["invalid_param", "invalid_cursor", "cursor_expired", "not_found",
                                                 "invalid_address", "rate_limited", "too_many_views"]},
        "message": {"type": "string"},
        "param": STRING_OR_NULL,
    }}},
}

SOURCE_HEALTH = {
    "type": "object",
    "required": ["ok", "last_success", "last_error", "requests_last_min", "budget_per_min"],
    "properties": {
        "ok": {"type": ["boolean", "null"], "description": "whether the latest call succeeded (null: none yet)"},
        "last_success": ISO_OR_NULL,
        "last_error": {"oneOf": [{"type": "null"}, {"type": "object", "required": ["message", "at"], "properties": {
            "message": {"type": "string"}, "at": {"type": "string", "format": "date-time"}}}]},
        "requests_last_min": {"type": "integer"},
        "budget_per_min": {"type": "integer"},
        "circuit": {"type": "string", "enum": ["closed", "open", "half_open"]},
        "skipped_items": {"type": "integer"},
    },
}

HEALTH = {
    "type": "object",
    "required": ["status", "epoch", "seq", "tokens", "age_s", "sources"],
    "properties": {
        "status": {"type": "string", "enum": ["ok", "degraded"]},
        "epoch": {"type": "string"},
        "seq": {"type": "integer"},
        "tokens": {"type": "integer"},
        "age_s": {**NUMBER_OR_NULL, "description": "seconds since the last successful refresh from any source"},
        "stale": {"type": "boolean", "description": "serving a snapshot restored from disk, not yet refreshed"},
        "sol_usd": NUMBER_OR_NULL,
        "sources": {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/SourceHealth"}},
    },
}

ALERT = {
    "type": "object",
    "required": ["type", "token_address", "token_ticker", "window", "value", "threshold", "seq", "at"],
    "properties": {
        "type": {"type": "string", "enum": ["price_move", "volume_spike"]},
        "token_address": {"type": "string"},
        "token_ticker": STRING_OR_NULL,
        "window": {"type": "string", "enum": ["5m"]},
        "value": {"type": "number", "description": "price_move: the 5m price change in percent; volume_spike: 5m "
                  "volume as a multiple of the token's average 5m volume over the last hour"},
        "threshold": {"type": "number", "description": "in the unit of value: ALERT_PRICE_PCT or ALERT_VOLUME_X"},
        "volume_usd": {"type": "number", "description": "volume_spike only: the 5m volume in USD"},
        "seq": {"type": "integer"},
        "at": {"type": "string", "format": "date-time"},
    },
}


def _rate_limited(path: dict[str, Any]) -> dict[str, Any]:
    """`path` with the 429 every rate-limited endpoint may answer."""
    path["get"]["responses"]["429"] = RATE_LIMITED
    return path


RATE_LIMITED = {
    "description": "over CLIENT_RATE_LIMIT requests per second from this client (rate_limited)",
    "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds to wait"}},
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}


def _view_parameters() -> list[dict[str, Any]]:
    number = {"type": "number", "minimum": 0}
    return [
        {"name": "sort", "in": "query", "schema": {"type": "string", "enum": list(query.SORTS), "default": "volume"}},
        {"name": "window", "in": "query", "schema": {"type": "string", "enum": list(WINDOWS), "default": "24h"},
         "description": "used by sort=volume, price_change, txns and by min_volume_usd"},
        {"name": "order", "in": "query", "schema": {"type": "string", "enum": ["desc", "asc"], "default": "desc"}},
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 30}},
        {"name": "min_liquidity_usd", "in": "query", "schema": number},
        {"name": "min_volume_usd", "in": "query", "schema": number},
        {"name": "min_market_cap_usd", "in": "query", "schema": number},
        {"name": "max_market_cap_usd", "in": "query", "schema": number},
        {"name": "max_age_h", "in": "query", "schema": {"type": "number", "exclusiveMinimum": 0},
         "description": "only tokens whose main pool is younger than this many hours"},
        {"name": "protocol", "in": "query",
         "schema": {"type": "string", "pattern": r"^\s*[^,\s][^,]*(,\s*[^,\s][^,]*)*$"},
         "description": "comma list of protocol names, case-insensitive, e.g. PumpSwap,Raydium CLMM"},
        {"name": "q", "in": "query", "schema": {"type": "string", "minLength": 1, "maxLength": 100},
         "description": "prefix of the address, or part of the name or ticker, case-insensitive"},
    ]


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json({"$ref": "#/components/schemas/Error"}, description)


def build_spec() -> dict[str, Any]:
    page = {"type": "object", "required": ["data", "next_cursor", "epoch", "seq", "total"], "properties": {
        "data": {"type": "array", "items": {"$ref": "#/components/schemas/Token"}},
        "next_cursor": STRING_OR_NULL,
        "epoch": {"type": "string"},
        "seq": {"type": "integer"},
        "total": {"type": "integer", "description": "records in the whole filtered view"},
    }}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Solana meme-coin token stream", "version": "0.1.0",
                 "description": "Merged DexScreener, GeckoTerminal and Jupiter data per mint: REST snapshots, "
                                "SSE at /api/stream and WebSocket at /ws. The reference for every figure, view, "
                                "message, resume and limit is docs/API.md in the project's repository."},
        "paths": {
            "/api/tokens": {"get": {
                "summary": "A view of the tracked tokens",
                "operationId": "listTokens",
                "parameters": [*_view_parameters(),
                               {"name": "cursor", "in": "query", "schema": {"type": "string", "minLength": 1},
                                "description": "next_cursor of the previous page; the walk sees one version"},
                               {"name": "If-None-Match", "in": "header", "schema": {"type": "string"}}],
                "responses": {
                    "200": {**_json(page, "one page of the view"),
                            "headers": {"ETag": {"schema": {"type": "string"}}}},
                    "304": {"description": "the view has not changed since the ETag given"},
                    "400": _error("a bad or unknown parameter, or a malformed cursor"),
                    "410": _error("the cursor's walk is over 5 minutes old, its version is no longer held, or it "
                                  "is from before a restart (cursor_expired)"),
                    "429": RATE_LIMITED,
                },
            }},
            "/api/tokens/{address}": {"get": {
                "summary": "One token",
                "operationId": "getToken",
                "parameters": [{"name": "address", "in": "path", "required": True,
                                "schema": {"type": "string", "pattern": "^[1-9A-HJ-NP-Za-km-z]{32,44}$"}}],
                "responses": {"200": _json({"$ref": "#/components/schemas/Token"}, "the record"),
                              "400": _error("not base58 of 32 to 44 characters (invalid_address)"),
                              "404": _error("well-formed but not tracked (not_found)"),
                              "429": RATE_LIMITED},
            }},
            "/api/tokens/{address}/history": _rate_limited(history_path()),
            "/api/alerts": {"get": {
                "summary": "The latest alerts, newest first",
                "operationId": "listAlerts",
                "parameters": [{"name": "limit", "in": "query",
                                "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50}}],
                "responses": {"200": _json({"type": "object", "required": ["data"], "properties": {
                    "data": {"type": "array", "items": {"$ref": "#/components/schemas/Alert"}}}}, "alerts"),
                    "400": _error("a bad or unknown parameter"),
                    "429": RATE_LIMITED},
            }},
            "/api/stream": {"get": {
                "summary": "Server-Sent Events of one view: snapshot, delta, alert, heartbeat",
                "operationId": "streamView",
                "parameters": [*_view_parameters(),
                               {"name": "since", "in": "query", "schema": {"type": "string"},
                                "description": "<epoch>:<seq> to resume from on a first connection"},
                               {"name": "Last-Event-ID", "in": "header", "schema": {"type": "string"}}],
                "responses": {"200": {"description": "an event stream (text/event-stream)",
                                      "content": {"text/event-stream": {}}},
                              "400": _error("a bad or unknown parameter"),
                              "429": RATE_LIMITED,
                              "503": _error("over MAX_CONNECTIONS, or a new view over MAX_VIEWS or "
                                            "MAX_VIEWS_PER_CLIENT; retry after Retry-After")},
            }},
            "/health": {"get": {"summary": "Freshness and per-source state", "operationId": "health",
                                "responses": {"200": _json({"$ref": "#/components/schemas/Health"}, "health")}}},
            "/ready": {"get": {"summary": "200 once data is served", "operationId": "ready",
                               "responses": {"200": _json({"type": "object"}, "ready"),
                                             "503": _json({"type": "object"}, "not yet")}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "operationId": "metrics",
                                 "responses": {"200": {"description": "Prometheus text format",
                                                       "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
            "/openapi.json": {"get": {"summary": "This document", "operationId": "openapi",
                                      "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1")}}},
        },
        "components": {"schemas": {"Token": TOKEN, "WindowStats": window_stats_json_schema(), "Error": ERROR,
                                   "Health": HEALTH, "SourceHealth": SOURCE_HEALTH, "Alert": ALERT}},
    }


SPEC_BYTES = orjson.dumps(build_spec())
SPEC_GZIP = gzip_body(SPEC_BYTES)  # made once, at start (app.api.compression)


def postman_collection(spec: dict[str, Any]) -> dict[str, Any]:
    """A Postman v2.1 collection with one request per GET operation, base URL in {{baseUrl}}."""
    items = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            params = [p for p in operation.get("parameters", []) if p["in"] == "query"]
            raw_path = path.replace("{address}", "{{address}}")
            items.append({
                "name": operation.get("summary", path),
                "request": {
                    "method": method.upper(),
                    "url": {
                        "raw": "{{baseUrl}}" + raw_path,
                        "host": ["{{baseUrl}}"],
                        "path": [part for part in raw_path.split("/") if part],
                        "query": [{"key": p["name"], "value": str(p["schema"].get("default", "")), "disabled": True,
                                   "description": p.get("description", "")} for p in params],
                    },
                },
            })
    return {
        "info": {"name": spec["info"]["title"], "description": spec["info"]["description"],
                 "schema": "https://schema.getpostman.com/json/collection/v2.1.0/collection.json"},
        "variable": [{"key": "baseUrl", "value": "http://localhost:8000"},
                     {"key": "address", "value": "So11111111111111111111111111111111111111112"}],
        "item": items,
    }


if __name__ == "__main__":
    spec = build_spec()
    out = postman_collection(spec) if "--postman" in sys.argv else spec
    sys.stdout.write(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode() + "\n")
