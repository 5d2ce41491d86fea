"""The simulated market's /_control routes (faults, request counts, ticks, limits) and /img token images."""

from __future__ import annotations

import hashlib
import time
from typing import TYPE_CHECKING, Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.demo.model import FAULT_KINDS, SOURCES
from app.demo.responses import ORJSONResponse

if TYPE_CHECKING:
    from app.demo.market import Market


def request_counts(m: Market) -> dict[str, Any]:
    now = time.monotonic()
    out: dict[str, Any] = {}
    for source in SOURCES:
        log = m.requests.get(source, [])
        by_status: dict[str, int] = {}
        recent = 0
        for t, _, status in log:
            by_status[str(status)] = by_status.get(str(status), 0) + 1
            if t > now - 60.0:
                recent += 1
        out[source] = {"total": len(log), "by_status": by_status, "last_60s": recent}
    return out


def control_app(m: Market) -> Starlette:
    async def faults(request: Request) -> Response:
        if request.method == "GET":
            return ORJSONResponse({"faults": m.faults.as_dict()})
        try:
            body = orjson.loads(await request.body() or b"{}")
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object")
            source = body.pop("source", None)
            kind = body.pop("kind", None)
            if kind is None:
                if source is not None and source not in SOURCES:
                    raise ValueError(f"unknown source {source!r}")
                m.faults.clear(source)
            else:
                if source is None:
                    for s in SOURCES:
                        m.faults.set(s, kind, **body)
                else:
                    m.faults.set(source, kind, **body)
        except (ValueError, TypeError, orjson.JSONDecodeError) as exc:
            return ORJSONResponse({"error": str(exc), "kinds": list(FAULT_KINDS), "sources": list(SOURCES)},
                                  status_code=400)
        return ORJSONResponse({"faults": m.faults.as_dict()})

    async def requests_(request: Request) -> Response:
        return ORJSONResponse(request_counts(m))

    async def tick(request: Request) -> Response:
        n = 1
        raw = await request.body()
        if raw:
            try:
                n = int(orjson.loads(raw).get("n", 1))
            except (ValueError, AttributeError, TypeError, orjson.JSONDecodeError):
                return ORJSONResponse({"error": "body must be {\"n\": <int>}"}, status_code=400)
        m.tick(max(1, min(n, 10_000)))
        return ORJSONResponse(state(request))

    def state(request: Request) -> dict[str, Any]:
        return {"tick": m.tick_no, "sol_usd": m.sol_usd, "tokens": len(m.tokens), "pools": len(m.pools)}

    async def get_state(request: Request) -> Response:
        return ORJSONResponse(state(request))

    async def rate_limits(request: Request) -> Response:
        if request.method == "POST":
            try:
                body = orjson.loads(await request.body() or b"{}")
                for source, limit in body.items():
                    if source not in SOURCES:
                        raise ValueError(f"unknown source {source!r}")
                    m.rate_limits[source] = None if limit is None else int(limit)
            except (ValueError, TypeError, AttributeError, orjson.JSONDecodeError) as exc:
                return ORJSONResponse({"error": str(exc)}, status_code=400)
        return ORJSONResponse(m.rate_limits)

    return Starlette(routes=[
        Route("/faults", faults, methods=["GET", "POST"]),
        Route("/requests", requests_),
        Route("/tick", tick, methods=["POST"]),
        Route("/state", get_state),
        Route("/rate_limits", rate_limits, methods=["GET", "POST"]),
    ])


_COLORS = ("#f94144", "#f3722c", "#f8961e", "#f9c74f", "#90be6d", "#43aa8b", "#577590", "#9b5de5", "#00bbf9")


def image_app(m: Market) -> Starlette:
    async def image(request: Request) -> Response:
        key = request.path_params["key"]
        if key.endswith(".svg"):
            key = key[:-4]
        t = m.by_mint.get(key) or (m.sol if key == "sol" else m.usdc if key == "usdc" else None)
        if t is None:
            return Response("Not Found", status_code=404)
        h = hashlib.blake2s(t.mint.encode(), digest_size=2).digest()
        color = _COLORS[h[0] % len(_COLORS)]
        letters = "".join(ch for ch in t.symbol if ch.isalnum())[:2] or "?"
        svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" viewBox="0 0 64 64">'
               f'<circle cx="32" cy="32" r="32" fill="{color}"/><text x="32" y="41" font-size="24" '
               f'font-family="sans-serif" font-weight="bold" text-anchor="middle" fill="#fff">{letters}</text></svg>')
        return Response(svg, media_type="image/svg+xml", headers={"cache-control": "public, max-age=86400"})

    return Starlette(routes=[Route("/{key}", image)])
