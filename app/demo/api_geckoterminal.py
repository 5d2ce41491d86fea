"""The simulated market's GeckoTerminal API."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.demo import shapes
from app.demo.model import GT_DURATIONS, Token
from app.demo.responses import ORJSONResponse, flag, json_bytes, split_list

if TYPE_CHECKING:
    from app.demo.market import Market

GT_BATCH = 30
GT_PAGE_SIZE = 20
GT_MAX_PAGE = 10


def _gt_error(status: int, title: str) -> Response:
    return ORJSONResponse({"errors": [{"status": str(status), "title": title}]}, status_code=status)


def geckoterminal_app(m: Market) -> Starlette:
    """GeckoTerminal's endpoints (upstreams.md §2)."""

    def include_set(request: Request) -> set[str]:
        return set(split_list(request.query_params.get("include", "")))

    def network_ok(request: Request) -> bool:
        return request.path_params.get("network", "solana") == "solana"

    def page_of(request: Request) -> int | Response:
        raw = request.query_params.get("page", "1")
        try:
            page = int(raw)
        except ValueError:
            return _gt_error(400, "page must be an integer")
        if page < 1:
            return _gt_error(400, "page must be at least 1")
        return page

    def list_body(key: tuple, pools_fn: Callable[[], list], page: int, include: set[str]) -> bytes:
        def build() -> bytes:
            pools = pools_fn()[(page - 1) * GT_PAGE_SIZE: page * GT_PAGE_SIZE] if page <= GT_MAX_PAGE else []
            return orjson.dumps(shapes.gt_pool_list(m, pools, include))

        return m.cached(("gt_body", *key, page, tuple(sorted(include))), build)

    async def trending(request: Request) -> Response:
        if not network_ok(request):
            return _gt_error(404, "Not Found")
        page = page_of(request)
        if isinstance(page, Response):
            return page
        duration = request.query_params.get("duration", "24h")
        if duration not in dict(GT_DURATIONS):
            return _gt_error(400, "duration must be one of 5m, 1h, 6h, 24h")
        body = list_body(("trending", duration), lambda: m.gt_trending(duration), page, include_set(request))
        return json_bytes(body)

    async def new_pools(request: Request) -> Response:
        if not network_ok(request):
            return _gt_error(404, "Not Found")
        page = page_of(request)
        if isinstance(page, Response):
            return page
        return json_bytes(list_body(("new",), m.gt_new_pools, page, include_set(request)))

    async def pools_multi(request: Request) -> Response:
        ids = split_list(request.path_params["addresses"])
        if len(ids) > GT_BATCH:
            return _gt_error(400, f"Maximum {GT_BATCH} addresses")
        if not network_ok(request):
            return _gt_error(404, "Not Found")
        pools = []
        for pid in ids:
            p = m.pools.get(pid)
            if p is not None and m.gt_visible(p):
                pools.append(p)
        return ORJSONResponse(shapes.gt_pool_list(m, pools, include_set(request)))

    async def pool_one(request: Request) -> Response:
        p = m.pools.get(request.path_params["pool"])
        if p is None or not m.gt_visible(p) or not network_ok(request):
            return _gt_error(404, "Not Found")
        body = shapes.gt_pool_list(m, [p], include_set(request))
        body["data"] = body["data"][0]
        return ORJSONResponse(body)

    async def ohlcv(request: Request) -> Response:
        p = m.pools.get(request.path_params["pool"])
        if p is None or not m.gt_visible(p) or not network_ok(request):
            return _gt_error(404, "Not Found")
        qp = request.query_params
        timeframe = request.path_params["timeframe"]
        try:
            aggregate = int(qp.get("aggregate", "1"))
            limit = int(qp.get("limit", "100"))
            before = int(float(qp["before_timestamp"])) if "before_timestamp" in qp else None
        except ValueError:
            return _gt_error(400, "aggregate, limit and before_timestamp must be integers")
        if not shapes.gt_timeframe_ok(timeframe, aggregate):
            return _gt_error(400, "Invalid timeframe or aggregate")
        if not 1 <= limit <= 1000:
            return _gt_error(400, "limit must be between 1 and 1000")
        currency = qp.get("currency", "usd")
        token = qp.get("token", "base")
        if currency not in ("usd", "token"):
            return _gt_error(400, "currency must be usd or token")
        base, quote = shapes.gt_sides(p)  # `base` and `quote` as GeckoTerminal orients the pool
        side = {"base": base, "quote": quote, p.base.mint: p.base, p.quote.mint: p.quote}.get(token)
        if side is None:
            return _gt_error(400, "token must be base, quote or a token address of the pool")
        empty = flag(qp.get("include_empty_intervals"))
        return ORJSONResponse(shapes.gt_ohlcv(m, p, timeframe, aggregate, limit, currency, side, before, empty))

    def token_body(tokens: list[Token], single_pool: bool, include: set[str], one: bool) -> dict[str, Any]:
        data = []
        included: list[dict[str, Any]] = []
        seen: set[str] = set()
        for t in tokens:
            top = shapes.gt_token_pools(m, t, single_pool)
            if not top:
                continue
            data.append(shapes.gt_token(m, t, top))
            if "top_pools" in include:
                for p in top:
                    if p.address not in seen:
                        seen.add(p.address)
                        included.append(shapes.gt_pool(m, p))
        body: dict[str, Any] = {"data": data[0] if one else data}
        if "top_pools" in include:
            body["included"] = included
        return body

    async def tokens_multi(request: Request) -> Response:
        mints = split_list(request.path_params["addresses"])
        if len(mints) > GT_BATCH:
            return _gt_error(400, f"Maximum {GT_BATCH} addresses")
        if not network_ok(request):
            return _gt_error(404, "Not Found")
        seen: set[str] = set()
        tokens = []
        for mint in mints:
            t = m.by_mint.get(mint)
            if t is not None and mint not in seen:
                seen.add(mint)
                tokens.append(t)
        return ORJSONResponse(token_body(tokens, True, include_set(request), False))

    async def token_one(request: Request) -> Response:
        t = m.by_mint.get(request.path_params["mint"])
        if t is None or not network_ok(request) or not shapes.gt_known(m, t):
            return _gt_error(404, "Not Found")
        return ORJSONResponse(token_body([t], False, include_set(request), True))

    async def simple_price(request: Request) -> Response:
        mints = split_list(request.path_params["addresses"])
        if len(mints) > GT_BATCH:
            return _gt_error(400, f"Maximum {GT_BATCH} addresses")
        if request.path_params["network"] != "solana":
            return _gt_error(404, "Not Found")
        qp = request.query_params
        flags = {k: flag(qp.get(k)) for k in ("include_market_cap", "mcap_fdv_fallback", "include_24hr_vol",
                                               "include_24hr_price_change", "include_total_reserve_in_usd")}
        tokens = [m.by_mint[x] for x in dict.fromkeys(mints) if x in m.by_mint]
        return ORJSONResponse(shapes.gt_simple_price(m, tokens, flags))

    async def search_pools(request: Request) -> Response:
        q = (request.query_params.get("query") or "").strip()
        network = request.query_params.get("network", "solana")
        page = page_of(request)
        if isinstance(page, Response):
            return page
        pools = []
        if q and network == "solana":
            ql = q.lower()
            for p in m.pools.values():
                if not m.gt_visible(p):
                    continue
                if q in (p.address, p.base.mint, p.quote.mint) or ql in p.base.name.lower() \
                        or ql == p.base.symbol.lower():
                    pools.append(p)
            pools.sort(key=lambda p: -p.gt_state[3])
        pools = pools[(page - 1) * GT_PAGE_SIZE: page * GT_PAGE_SIZE]
        return ORJSONResponse(shapes.gt_pool_list(m, pools, include_set(request)))

    return Starlette(routes=[
        Route("/networks/{network}/trending_pools", trending),
        Route("/networks/{network}/new_pools", new_pools),
        Route("/networks/{network}/pools/multi/{addresses}", pools_multi),
        Route("/networks/{network}/pools/{pool}/ohlcv/{timeframe}", ohlcv),
        Route("/networks/{network}/pools/{pool}", pool_one),
        Route("/networks/{network}/tokens/multi/{addresses}", tokens_multi),
        Route("/networks/{network}/tokens/{mint}", token_one),
        Route("/simple/networks/{network}/token_price/{addresses}", simple_price),
        Route("/search/pools", search_pools),
    ])
