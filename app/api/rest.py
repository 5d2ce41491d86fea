"""REST routes: token views, one token, health, readiness, metrics."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app import query
from app.api import compression, history_routes
from app.api.errors import unknown_param
from app.api.openapi import SPEC_BYTES, SPEC_GZIP
from app.api.responses import JSONBytes, error
from app.runtime import Runtime
from app.sources.values import is_mint
from app.store.base import Version

T = TypeVar("T")


def service(request: Request) -> Runtime:
    return request.app.state.service


async def list_tokens(request: Request) -> Response:
    svc = service(request)
    try:
        view, extra = query.parse_query(request.query_params.multi_items(), allowed_extra=("cursor",))
    except query.QueryError as exc:
        return JSONBytes(exc.body(), status_code=exc.status)
    cursor = extra.get("cursor")
    latest = svc.store.latest()
    if cursor is None:
        # The ETag names the version and the query: a repeated poll of an unchanged view costs nothing.
        etag = f'"{latest.epoch}:{latest.seq}:{_digest(view.key)}"'
        if (held := compression.matched(request, etag)) is not None:
            return compression.not_modified(held)
    try:
        page = query.page(svc.store, view, cursor, now=time.time(), secret=svc.store.secret, cache=svc.views)
    except query.QueryError as exc:
        return JSONBytes(exc.body(), status_code=exc.status)
    version = page.version
    etag = f'"{version.epoch}:{version.seq}:{_digest(view.key + (cursor or ""))}"'
    if cursor is not None and (held := compression.matched(request, etag)) is not None:
        return compression.not_modified(held)
    head, tail = query.page_parts(page, view, svc.views)
    body = head + tail
    gzipped = None
    if len(body) > compression.MIN_SIZE and compression.wants_gzip(request):
        # The rows deflated once per version, view and position; the cursor part joined per request.
        deflated = _derived(svc, version, ("head-gzip", view.key, page.ref, page.offset, view.limit),
                            lambda: compression.deflate_head(head))
        gzipped = compression.gzip_join(deflated, tail)
    if cursor is None:
        svc.hot.put(version.epoch, version.seq, request.scope["query_string"], body, etag, gzipped)
    return compression.answer(request, body, etag, gzipped, headers={"Cache-Control": "no-cache"})


async def get_token(request: Request) -> Response:
    address = request.path_params["address"]
    if not is_mint(address):
        return error(400, "invalid_address", "address must be base58 of 32 to 44 characters", "address")
    if (rejected := unknown_param(request)) is not None:
        return rejected
    svc = service(request)
    version = svc.store.latest()
    encoded = version.encoded.get(address)
    if encoded is None:
        return error(404, "not_found", f"token {address} is not tracked", "address")
    # The tag names the record's bytes, not the version: a token polled while others change stays a 304.
    etag = f'"{version.epoch}:{address[:8]}:{hashlib.blake2s(encoded, digest_size=8).hexdigest()}"'
    return compression.answer(request, encoded, etag, lambda: _derived(
        svc, version, ("record-gzip", address), lambda: compression.gzip_body(encoded)),
        headers={"Cache-Control": "no-cache"})


async def alerts(request: Request) -> Response:
    if (rejected := unknown_param(request, ("limit",))) is not None:
        return rejected
    raw = request.query_params.get("limit", "50")
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 1000:
        return error(400, "invalid_param", "limit must be an integer from 1 to 1000", "limit")
    svc = service(request)
    version = svc.store.latest()  # its alerts: the same list on every instance
    limit = int(raw)
    body = _derived(svc, version, ("alerts", limit),
                    lambda: orjson.dumps({"data": version.recent_alerts[-limit:][::-1]}))
    return compression.answer(request, body, None, lambda: _derived(
        svc, version, ("alerts-gzip", limit), lambda: compression.gzip_body(body)))


async def health(request: Request) -> Response:
    if (rejected := unknown_param(request)) is not None:
        return rejected
    return compression.answer(request, orjson.dumps(service(request).health()))  # measured now: made each time


async def ready(request: Request) -> Response:
    if (rejected := unknown_param(request)) is not None:
        return rejected
    svc = service(request)
    if svc.store.latest().records:
        return JSONBytes({"ready": True, "seq": svc.store.latest().seq})
    return JSONBytes({"ready": False}, status_code=503, headers={"Retry-After": "1"})


async def metrics(request: Request) -> Response:
    if (rejected := unknown_param(request)) is not None:
        return rejected
    svc = service(request)
    svc.metrics.tokens.set(len(svc.store.latest().records))
    svc.metrics.seq.set(svc.store.latest().seq)
    summary = svc.store.summary()
    for source, entry in (summary.sources.items() if summary is not None else ()):
        svc.metrics.skipped_items.labels(source).set(entry.get("skipped_items") or 0)
    return Response(svc.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


async def openapi(request: Request) -> Response:
    if (rejected := unknown_param(request)) is not None:
        return rejected
    return compression.answer(request, SPEC_BYTES, None, SPEC_GZIP)


def _digest(text: str) -> str:
    return hashlib.blake2s(text.encode(), digest_size=6).hexdigest()


def _derived(svc: Runtime, version: Version, key: tuple[Any, ...], make: Callable[[], T]) -> T:
    """Bytes derived from `version` (an answer, its gzip), made once: kept in the byte-bounded cache of
    everything derived from versions (app.query.cache)."""
    hit = svc.views.get(version, key)
    if hit is None:
        hit = make()
        data = hit.data if isinstance(hit, compression.Deflated) else hit
        svc.views.put(version, key, hit, size=len(data) + 64)  # type: ignore[arg-type]
    return hit


routes = [
    Route("/api/tokens", list_tokens, methods=["GET"]),
    Route("/api/tokens/{address}", get_token, methods=["GET"]),
    *history_routes.routes,
    Route("/api/alerts", alerts, methods=["GET"]),
    Route("/health", health, methods=["GET"]),
    Route("/ready", ready, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
    Route("/openapi.json", openapi, methods=["GET"]),
]
