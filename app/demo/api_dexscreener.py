"""The simulated market's DexScreener API."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.demo import shapes
from app.demo.model import Token
from app.demo.responses import ORJSONResponse, bad_request, json_bytes, split_list

if TYPE_CHECKING:
    from app.demo.market import Market

DS_BATCH = 30
ANSWER_CAP = 30  # pairs per answer, whatever was asked (upstreams.md §1 quirks)


def dexscreener_app(m: Market) -> Starlette:
    """DexScreener's endpoints (upstreams.md §1), every pairs answer cut at 30 pairs in no fixed order."""

    async def profiles(request: Request) -> Response:
        return json_bytes(m.cached(("ds_body", "profiles"), lambda: orjson.dumps(
            [shapes.ds_feed_item(m, item, None, False) for item in m.ds_profiles()])))

    async def boosts_latest(request: Request) -> Response:
        return json_bytes(m.cached(("ds_body", "boosts_latest"), lambda: orjson.dumps(
            [shapes.ds_feed_item(m, item, amount, True) for item, amount in m.ds_boosts_latest()])))

    async def boosts_top(request: Request) -> Response:
        def build() -> bytes:
            items = []
            for item in m.ds_boosts_top():
                amount = item.boost_active if isinstance(item, Token) else None
                items.append(shapes.ds_feed_item(m, item, amount or (10 if isinstance(item, Token) else None), True))
            return orjson.dumps(items)

        return json_bytes(m.cached(("ds_body", "boosts_top"), build))

    def pairs_for_tokens(mints: list[str]) -> list[dict[str, Any]]:
        """Every pair naming one of `mints` (either side), in no fixed order, cut at ANSWER_CAP."""
        pools: list = []
        seen: set[str] = set()
        for mint in mints:
            for p in shapes.ds_token_pairs(m, mint):
                if p.address not in seen:
                    seen.add(p.address)
                    pools.append(p)
        return [shapes.ds_pair(m, p) for p in cut(pools)]

    def cut(items: list) -> list:
        """DexScreener's answer cap: at most 30 pairs, in no documented order (a fresh order per answer)."""
        items = list(items)
        m.answer_rng.shuffle(items)
        return items[:ANSWER_CAP]

    async def tokens_v1(request: Request) -> Response:
        chain = request.path_params["chain"]
        mints = split_list(request.path_params["addresses"])
        if len(mints) > DS_BATCH:
            return bad_request(f"Too many token addresses: at most {DS_BATCH}")
        if chain != "solana":
            return ORJSONResponse([])
        return ORJSONResponse(pairs_for_tokens(mints))

    async def token_pairs(request: Request) -> Response:
        if request.path_params["chain"] != "solana":
            return ORJSONResponse([])
        return ORJSONResponse(pairs_for_tokens([request.path_params["token"]]))

    async def pairs(request: Request) -> Response:
        ids = split_list(request.path_params["ids"])
        if len(ids) > DS_BATCH:
            return bad_request(f"Too many pair addresses: at most {DS_BATCH}")
        found = []
        if request.path_params["chain"] == "solana":
            for pid in ids:
                p = m.pools.get(pid)
                if p is not None and m.ds_visible(p):
                    found.append(shapes.ds_pair(m, p))
        return ORJSONResponse({"schemaVersion": "1.0.0", "pairs": found or None})

    async def legacy_tokens(request: Request) -> Response:
        mints = split_list(request.path_params["addresses"])
        if len(mints) > DS_BATCH:
            return bad_request(f"Too many token addresses: at most {DS_BATCH}")
        found = pairs_for_tokens(mints)
        return ORJSONResponse({"schemaVersion": "1.0.0", "pairs": found or None})

    async def search(request: Request) -> Response:
        q = (request.query_params.get("q") or "").strip()
        if not q:
            return bad_request("q is required")
        ql = q.lower()
        found: list = []
        if q in m.pools and m.ds_visible(m.pools[q]):
            found.append(m.pools[q])
        for t in m.tokens:
            if t.mint == q or ql in t.name.lower() or ql == t.symbol.lower():
                found.extend(m.ds_pools(t))
        return ORJSONResponse({"schemaVersion": "1.0.0", "pairs": [shapes.ds_pair(m, p) for p in cut(found)]})

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
