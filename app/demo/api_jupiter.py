"""The simulated market's Jupiter API."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.demo import shapes
from app.demo.model import JUP_CATEGORIES, JUP_WINDOW_INDEX
from app.demo.responses import ORJSONResponse, bad_request, json_bytes, split_list

if TYPE_CHECKING:
    from app.demo.market import Market

JUP_PRICE_BATCH = 50
JUP_SEARCH_BATCH = 100


def jupiter_app(m: Market) -> Starlette:
    """Jupiter's Price v3 and Tokens v2 (upstreams.md §3)."""

    async def price_v3(request: Request) -> Response:
        ids = split_list(request.query_params.get("ids", ""))
        if not ids:
            return bad_request("ids is required")
        if len(ids) > JUP_PRICE_BATCH:
            return bad_request(f"Too many ids: at most {JUP_PRICE_BATCH}")
        out: dict[str, Any] = {}
        for mint in ids:
            t = m.by_mint.get(mint)
            if t is not None and m.jup_priced(t):
                out[mint] = shapes.jup_price(m, t)
        return ORJSONResponse(out)

    async def search(request: Request) -> Response:
        query = (request.query_params.get("query") or "").strip()
        if not query:
            return bad_request("query is required")
        parts = split_list(query)
        if len(parts) > JUP_SEARCH_BATCH:
            return bad_request(f"Too many mints: at most {JUP_SEARCH_BATCH}")
        out = []
        hits = [m.by_mint.get(x) for x in dict.fromkeys(parts)]
        if any(hits):
            for t in hits:
                if t is not None and t.jup_known:
                    out.append(shapes.jup_token(m, t))
        else:
            ql = query.lower()
            for t in m.tokens:
                if t.jup_known and (ql == t.symbol.lower() or ql in t.name.lower()):
                    out.append(shapes.jup_token(m, t))
                    if len(out) >= 20:
                        break
        return ORJSONResponse(out)

    async def toplist(request: Request) -> Response:
        category = request.path_params["category"]
        window = request.path_params["window"]
        if category not in JUP_CATEGORIES or window not in JUP_WINDOW_INDEX:
            return ORJSONResponse({"error": "Not Found"}, status_code=404)
        try:
            limit = int(request.query_params.get("limit", "50"))
        except ValueError:
            return bad_request("limit must be an integer")
        if not 1 <= limit <= 100:
            return bad_request("limit must be between 1 and 100")
        return json_bytes(m.cached(("jup_body", category, window, limit), lambda: orjson.dumps(
            [shapes.jup_token(m, t) for t in m.jup_top(category, window, limit)])))

    async def recent(request: Request) -> Response:
        return json_bytes(m.cached(("jup_body", "recent"), lambda: orjson.dumps(
            [shapes.jup_token(m, t) for t in m.jup_recent()])))

    async def tag(request: Request) -> Response:
        q = request.query_params.get("query", "")
        if q not in ("verified", "lst"):
            return bad_request("query must be verified or lst")
        tokens = [m.sol] if q == "lst" else [m.sol, m.usdc] + [t for t in m.tokens if t.verified and t.jup_known]
        return ORJSONResponse([shapes.jup_token(m, t) for t in tokens])

    return Starlette(routes=[
        Route("/price/v3", price_v3),
        Route("/tokens/v2/search", search),
        Route("/tokens/v2/recent", recent),
        Route("/tokens/v2/tag", tag),
        Route("/tokens/v2/{category}/{window}", toplist),
    ])
