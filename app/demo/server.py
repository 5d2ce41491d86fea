"""HTTP face of the simulated market: DexScreener, GeckoTerminal and Jupiter on one loopback server.

    /dexscreener/...                 DexScreener (base URL for DEXSCREENER_URL)
    /geckoterminal/api/v2/...        GeckoTerminal (base URL for GECKOTERMINAL_URL)
    /jupiter/...                     Jupiter (base URL for JUPITER_URL)
    /_control/...                    fault switches, request counts, manual ticks (not logged)
    /img/{key}.svg                   token images, so the demo page works offline (not logged)

Every request to an upstream is logged in `market.requests[source]` as (monotonic time received,
path relative to the source's base URL plus "?query" when present, status), faulted ones included.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from app.demo import shapes
from app.demo.market import (
    FAULT_KINDS,
    GT_DURATIONS,
    JUP_CATEGORIES,
    JUP_WINDOW_INDEX,
    SOURCES,
    Market,
    Token,
)
from app.serving import serve_app

DS_PREFIX = "/dexscreener"
GT_PREFIX = "/geckoterminal/api/v2"
JUP_PREFIX = "/jupiter"

DS_BATCH = 30
GT_BATCH = 30
JUP_PRICE_BATCH = 50
JUP_SEARCH_BATCH = 100
GT_PAGE_SIZE = 20
GT_MAX_PAGE = 10
JUP_HEADER_LIMIT = 600  # advertised in x-ratelimit-* when market.rate_limits["jupiter"] is None


class ORJSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def _json(body: bytes, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type="application/json")


def _split(raw: str) -> list[str]:
    return [a.strip() for a in raw.split(",") if a.strip()]


def _flag(value: str | None) -> bool:
    return value is not None and value.strip().lower() in ("true", "1", "yes")


# ----------------------------------------------------------------------------------------------------
# fault and logging gate (pure ASGI, one per source)
# ----------------------------------------------------------------------------------------------------
CLOUDFLARE_HTML = b"""<!DOCTYPE html>
<html lang="en-US"><head><title>Just a moment...</title>
<meta http-equiv="Content-Type" content="text/html; charset=UTF-8">
<meta name="robots" content="noindex,nofollow"></head>
<body><div class="main-wrapper" role="main"><div class="main-content">
<h1 class="zone-name-title h1">api.example.com</h1>
<h2 class="h2" id="challenge-running">Checking if the site connection is secure</h2>
<noscript><div class="h2"><span id="challenge-error-text">Enable JavaScript and cookies to continue</span></div></noscript>
</div></div><div class="footer" role="contentinfo"><div class="footer-inner">
<div class="clearfix diagnostic-wrapper"><div class="ray-id">Ray ID: <code>8f1c2d3e4a5b6c7d</code></div></div>
<div class="text-center" id="footer-text">Performance &amp; security by Cloudflare</div></div></div></body></html>
"""


def _error_body(source: str, status: int) -> tuple[bytes, str]:
    if source == "geckoterminal":
        if status == 429:
            return orjson.dumps({"status": {"error_code": 429, "error_message":
                                 "You've exceeded the Rate Limit. Please visit "
                                 "https://www.coingecko.com/en/api/pricing to subscribe to our API plans "
                                 "for higher rate limits."}}), "application/json"
        return orjson.dumps({"errors": [{"status": str(status), "title": "Internal Server Error"}]}), \
            "application/json"
    if source == "jupiter":
        msg = "Too Many Requests" if status == 429 else "Internal Server Error"
        return orjson.dumps({"code": status, "message": msg}), "application/json"
    msg = b"Too Many Requests" if status == 429 else b"Internal Server Error"
    return msg, "text/plain; charset=utf-8"


class SourceGate:
    """Logs every request for one source, applies its fault and rate limit, adds Jupiter's headers."""

    def __init__(self, market: Market, source: str, prefix: str, app: Callable[..., Awaitable[None]]) -> None:
        self.market = market
        self.source = source
        self.prefix = prefix
        self.app = app
        self.window: deque[float] = deque()
        self.log_base = 0

    def _log_start(self, received: float, path: str) -> int:
        log = self.market.requests.setdefault(self.source, [])
        if len(log) >= 100_000:
            del log[:50_000]
            self.log_base += 50_000
        log.append((received, path, 0))
        return self.log_base + len(log) - 1

    def _log_end(self, idx: int, received: float, path: str, status: int) -> None:
        log = self.market.requests.setdefault(self.source, [])
        j = idx - self.log_base
        if 0 <= j < len(log) and log[j][0] == received:
            log[j] = (received, path, status)

    def _rate_headers(self, now: float) -> list[tuple[bytes, bytes]]:
        limit = self.market.rate_limits.get(self.source) or JUP_HEADER_LIMIT
        current = len(self.window)
        reset = time.time() + ((self.window[0] + 60.0 - now) if self.window else 60.0)
        return [
            (b"x-ratelimit-remaining", str(max(0, limit - current)).encode()),
            (b"x-ratelimit-current", str(current).encode()),
            (b"x-ratelimit-reset", str(int(reset)).encode()),
        ]

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        received = time.monotonic()
        path = scope["path"][len(self.prefix):] or "/"
        qs = scope.get("query_string", b"")
        if qs:
            path = f"{path}?{qs.decode('latin-1')}"
        idx = self._log_start(received, path)
        window = self.window
        while window and window[0] <= received - 60.0:
            window.popleft()
        window.append(received)
        extra = self._rate_headers(received) if self.source == "jupiter" else []
        status_box = [0]

        async def send_plain(status: int, body: bytes, content_type: str, headers: list | None = None) -> None:
            status_box[0] = status
            hdrs = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
            hdrs += headers or []
            hdrs += extra
            await send({"type": "http.response.start", "status": status, "headers": hdrs})
            await send({"type": "http.response.body", "body": body})

        try:
            limit = self.market.rate_limits.get(self.source)
            if limit is not None and len(window) > limit:
                retry = max(1, int(window[0] + 60.0 - received) + 1)
                body, ctype = _error_body(self.source, 429)
                await send_plain(429, body, ctype, [(b"retry-after", str(retry).encode())])
                return
            fault = self.market.faults.pick(self.source)
            kind = fault.kind if fault else None
            if kind == "429":
                body, ctype = _error_body(self.source, 429)
                hdrs = [] if fault.retry_after is None else [(b"retry-after", _num(fault.retry_after))]
                await send_plain(fault.status or 429, body, ctype, hdrs)
                return
            if kind == "500":
                body, ctype = _error_body(self.source, 500)
                await send_plain(fault.status or 500, body, ctype)
                return
            if kind == "html":
                await send_plain(fault.status or 200, CLOUDFLARE_HTML, "text/html; charset=UTF-8",
                                 [(b"server", b"cloudflare"), (b"cf-ray", b"8f1c2d3e4a5b6c7d-AMS")])
                return
            if kind == "slow":
                await asyncio.sleep(float(fault.delay))
            if kind == "truncated":
                captured: dict[str, Any] = {"status": 200, "headers": [], "body": b""}

                async def capture(message: dict) -> None:
                    if message["type"] == "http.response.start":
                        captured["status"] = message["status"]
                        captured["headers"] = message.get("headers", [])
                    elif message["type"] == "http.response.body":
                        captured["body"] += message.get("body", b"")

                await self.app(scope, receive, capture)
                full = captured["body"]
                ctype = dict(captured["headers"]).get(b"content-type", b"application/json").decode()
                await send_plain(fault.status or 200, full[: len(full) // 2], ctype)
                return

            async def send_wrapped(message: dict) -> None:
                if message["type"] == "http.response.start":
                    status_box[0] = message["status"]
                    if extra:
                        message = dict(message)
                        message["headers"] = list(message.get("headers", [])) + extra
                await send(message)

            await self.app(scope, receive, send_wrapped)
        finally:
            self._log_end(idx, received, path, status_box[0] or 500)


def _num(x: float) -> bytes:
    return str(int(x) if float(x).is_integer() else x).encode()


# ----------------------------------------------------------------------------------------------------
# DexScreener
# ----------------------------------------------------------------------------------------------------
def _dexscreener_app(m: Market) -> Starlette:
    def bad(msg: str) -> Response:
        return ORJSONResponse({"error": msg}, status_code=400)

    async def profiles(request: Request) -> Response:
        return _json(m.cached(("ds_body", "profiles"), lambda: orjson.dumps(
            [shapes.ds_feed_item(m, item, None, False) for item in m.ds_profiles()])))

    async def boosts_latest(request: Request) -> Response:
        return _json(m.cached(("ds_body", "boosts_latest"), lambda: orjson.dumps(
            [shapes.ds_feed_item(m, item, amount, True) for item, amount in m.ds_boosts_latest()])))

    async def boosts_top(request: Request) -> Response:
        def build() -> bytes:
            items = []
            for item in m.ds_boosts_top():
                amount = item.boost_active if isinstance(item, Token) else None
                items.append(shapes.ds_feed_item(m, item, amount or (10 if isinstance(item, Token) else None), True))
            return orjson.dumps(items)

        return _json(m.cached(("ds_body", "boosts_top"), build))

    def pairs_for_tokens(mints: list[str]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        for mint in mints:
            for p in shapes.ds_token_pairs(m, mint):
                if p.address not in seen:
                    seen.add(p.address)
                    out.append(shapes.ds_pair(m, p))
        return out

    async def tokens_v1(request: Request) -> Response:
        chain = request.path_params["chain"]
        mints = _split(request.path_params["addresses"])
        if len(mints) > DS_BATCH:
            return bad(f"Too many token addresses: at most {DS_BATCH}")
        if chain != "solana":
            return ORJSONResponse([])
        return ORJSONResponse(pairs_for_tokens(mints))

    async def token_pairs(request: Request) -> Response:
        if request.path_params["chain"] != "solana":
            return ORJSONResponse([])
        return ORJSONResponse(pairs_for_tokens([request.path_params["token"]]))

    async def pairs(request: Request) -> Response:
        ids = _split(request.path_params["ids"])
        if len(ids) > DS_BATCH:
            return bad(f"Too many pair addresses: at most {DS_BATCH}")
        found = []
        if request.path_params["chain"] == "solana":
            for pid in ids:
                p = m.pools.get(pid)
                if p is not None and m.ds_visible(p):
                    found.append(shapes.ds_pair(m, p))
        return ORJSONResponse({"schemaVersion": "1.0.0", "pairs": found or None})

    async def legacy_tokens(request: Request) -> Response:
        mints = _split(request.path_params["addresses"])
        if len(mints) > DS_BATCH:
            return bad(f"Too many token addresses: at most {DS_BATCH}")
        found = pairs_for_tokens(mints)
        return ORJSONResponse({"schemaVersion": "1.0.0", "pairs": found or None})

    async def search(request: Request) -> Response:
        q = (request.query_params.get("q") or "").strip()
        if not q:
            return bad("q is required")
        ql = q.lower()
        found: list[dict[str, Any]] = []
        if q in m.pools and m.ds_visible(m.pools[q]):
            found.append(shapes.ds_pair(m, m.pools[q]))
        for t in m.tokens:
            if len(found) >= 30:
                break
            if t.mint == q or ql in t.name.lower() or ql == t.symbol.lower():
                for p in m.ds_pools(t):
                    if len(found) < 30:
                        found.append(shapes.ds_pair(m, p))
        return ORJSONResponse({"schemaVersion": "1.0.0", "pairs": found})

    return Starlette(routes=[
        Route("/token-profiles/latest/v1", profiles),
        Route("/token-boosts/latest/v1", boosts_latest),
        Route("/token-boosts/top/v1", boosts_top),
        Route("/tokens/v1/{chain}/{addresses}", tokens_v1),
        Route("/token-pairs/v1/{chain}/{token}", token_pairs),
        Route("/latest/dex/pairs/{chain}/{ids}", pairs),
        Route("/latest/dex/tokens/{addresses}", legacy_tokens),
        Route("/latest/dex/search", search),
    ])


# ----------------------------------------------------------------------------------------------------
# GeckoTerminal
# ----------------------------------------------------------------------------------------------------
def _gt_error(status: int, title: str) -> Response:
    return ORJSONResponse({"errors": [{"status": str(status), "title": title}]}, status_code=status)


def _geckoterminal_app(m: Market) -> Starlette:
    def include_set(request: Request) -> set[str]:
        return set(_split(request.query_params.get("include", "")))

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
        return _json(list_body(("trending", duration), lambda: m.gt_trending(duration), page, include_set(request)))

    async def new_pools(request: Request) -> Response:
        if not network_ok(request):
            return _gt_error(404, "Not Found")
        page = page_of(request)
        if isinstance(page, Response):
            return page
        return _json(list_body(("new",), m.gt_new_pools, page, include_set(request)))

    async def pools_multi(request: Request) -> Response:
        ids = _split(request.path_params["addresses"])
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
        if token == p.quote.mint:
            token = "quote"
        elif token == p.base.mint:
            token = "base"
        if token not in ("base", "quote"):
            return _gt_error(400, "token must be base, quote or a token address of the pool")
        return ORJSONResponse(shapes.gt_ohlcv(m, p, timeframe, aggregate, limit, currency, token, before))

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
        mints = _split(request.path_params["addresses"])
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
        mints = _split(request.path_params["addresses"])
        if len(mints) > GT_BATCH:
            return _gt_error(400, f"Maximum {GT_BATCH} addresses")
        if request.path_params["network"] != "solana":
            return _gt_error(404, "Not Found")
        qp = request.query_params
        flags = {k: _flag(qp.get(k)) for k in ("include_market_cap", "mcap_fdv_fallback", "include_24hr_vol",
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


# ----------------------------------------------------------------------------------------------------
# Jupiter
# ----------------------------------------------------------------------------------------------------
def _jupiter_app(m: Market) -> Starlette:
    def bad(msg: str) -> Response:
        return ORJSONResponse({"error": msg}, status_code=400)

    async def price_v3(request: Request) -> Response:
        ids = _split(request.query_params.get("ids", ""))
        if not ids:
            return bad("ids is required")
        if len(ids) > JUP_PRICE_BATCH:
            return bad(f"Too many ids: at most {JUP_PRICE_BATCH}")
        out: dict[str, Any] = {}
        for mint in ids:
            t = m.by_mint.get(mint)
            if t is not None and m.jup_priced(t):
                out[mint] = shapes.jup_price(m, t)
        return ORJSONResponse(out)

    async def search(request: Request) -> Response:
        query = (request.query_params.get("query") or "").strip()
        if not query:
            return bad("query is required")
        parts = _split(query)
        if len(parts) > JUP_SEARCH_BATCH:
            return bad(f"Too many mints: at most {JUP_SEARCH_BATCH}")
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
            return bad("limit must be an integer")
        if not 1 <= limit <= 100:
            return bad("limit must be between 1 and 100")
        return _json(m.cached(("jup_body", category, window, limit), lambda: orjson.dumps(
            [shapes.jup_token(m, t) for t in m.jup_top(category, window, limit)])))

    async def recent(request: Request) -> Response:
        return _json(m.cached(("jup_body", "recent"), lambda: orjson.dumps(
            [shapes.jup_token(m, t) for t in m.jup_recent()])))

    async def tag(request: Request) -> Response:
        q = request.query_params.get("query", "")
        if q not in ("verified", "lst"):
            return bad("query must be verified or lst")
        tokens = [m.sol] if q == "lst" else [m.sol, m.usdc] + [t for t in m.tokens if t.verified and t.jup_known]
        return ORJSONResponse([shapes.jup_token(m, t) for t in tokens])

    return Starlette(routes=[
        Route("/price/v3", price_v3),
        Route("/tokens/v2/search", search),
        Route("/tokens/v2/recent", recent),
        Route("/tokens/v2/tag", tag),
        Route("/tokens/v2/{category}/{window}", toplist),
    ])


# ----------------------------------------------------------------------------------------------------
# control and images
# ----------------------------------------------------------------------------------------------------
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


def _control_app(m: Market) -> Starlette:
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


def _image_app(m: Market) -> Starlette:
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


def create_market_app(market: Market) -> Starlette:
    """The three upstreams (plus /_control and /img) on one Starlette app."""
    return Starlette(routes=[
        Mount(DS_PREFIX, app=SourceGate(market, "dexscreener", DS_PREFIX, _dexscreener_app(market))),
        Mount(GT_PREFIX, app=SourceGate(market, "geckoterminal", GT_PREFIX, _geckoterminal_app(market))),
        Mount(JUP_PREFIX, app=SourceGate(market, "jupiter", JUP_PREFIX, _jupiter_app(market))),
        Mount("/_control", app=_control_app(market)),
        Mount("/img", app=_image_app(market)),
    ])


# ----------------------------------------------------------------------------------------------------
# running it in-process
# ----------------------------------------------------------------------------------------------------
@dataclass
class RunningMarket:
    market: Market
    host: str
    port: int

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def dexscreener_url(self) -> str:
        return self.base_url + DS_PREFIX

    @property
    def geckoterminal_url(self) -> str:
        return self.base_url + GT_PREFIX

    @property
    def jupiter_url(self) -> str:
        return self.base_url + JUP_PREFIX

    @property
    def control_url(self) -> str:
        return self.base_url + "/_control"


def _quiet_http_protocol() -> type:
    """uvicorn's HTTP protocol without access logging: the market must not flood the host's access log."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as base
    except ImportError:  # pragma: no cover - httptools not installed
        from uvicorn.protocols.http.h11_impl import H11Protocol as base

    class QuietProtocol(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.access_log = False

    return QuietProtocol


@contextlib.asynccontextmanager
async def serve_market(
    market: Market,
    host: str = "127.0.0.1",
    port: int = 0,
    tick_interval: float | None = 1.0,
    *,
    local_images: bool = True,
) -> AsyncIterator[RunningMarket]:
    """Serve `market` with uvicorn in the running event loop; tick it every `tick_interval` seconds."""
    # log_config/log_level None, access_log True: uvicorn's Config would otherwise reconfigure (or silence)
    # the process-wide "uvicorn.*" loggers, which the host service's own uvicorn shares; QuietProtocol keeps
    # the market's own requests out of the access log.
    async with serve_app(create_market_app(market), host=host, port=port, lifespan="off", log_config=None,
                         log_level=None, access_log=True, http=_quiet_http_protocol()) as base_url:
        running = RunningMarket(market=market, host=host, port=int(base_url.rsplit(":", 1)[1]))
        if local_images:
            market.image_base = running.base_url + "/img"
            market.invalidate()

        ticker: asyncio.Task | None = None
        if tick_interval:
            async def tick_forever() -> None:
                while True:
                    await asyncio.sleep(tick_interval)
                    market.tick()

            ticker = asyncio.create_task(tick_forever(), name="demo-market-ticker")
        try:
            yield running
        finally:
            if ticker is not None:
                ticker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ticker
