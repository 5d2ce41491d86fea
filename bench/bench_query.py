"""Timings of app.query over 2,000 random records: `python bench/bench_query.py`.

Prints, per operation, the mean time of one call: building each sorted index on a fresh version,
a cached first page (page + page_parts), a filtered page on a fresh version with its index built,
and a deep cursor page.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
from datetime import UTC, datetime

import orjson

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from app.ingest.leader import changeset  # noqa: E402
from app.query import SORTS, ViewCache, filtered, ordered, page, page_parts, parse_view  # noqa: E402
from app.store.base import Version  # noqa: E402
from app.store.memory import MemoryStore  # noqa: E402

N = 2000
SECRET = b"bench"
NOW = time.time()
PROTOCOLS = [
    "Raydium", "Raydium CLMM", "Raydium CPMM", "PumpSwap", "Pump.fun", "Meteora", "Meteora DLMM", "Orca",
]  # fmt: skip
ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def maybe(rng: random.Random, value):
    return None if rng.random() < 0.1 else value


def record(rng: random.Random, address: str) -> dict:
    stats = {}
    for window in ("5m", "1h", "6h", "24h", "7d"):
        stats[window] = {
            "volume_usd": maybe(rng, rng.lognormvariate(10, 3)),
            "volume_sol": maybe(rng, rng.lognormvariate(5, 3)),
            "price_change": maybe(rng, rng.uniform(-90, 300)),
            "buys": maybe(rng, rng.randint(0, 10000)),
            "sells": maybe(rng, rng.randint(0, 10000)),
        }
    created = NOW - rng.uniform(0, 90 * 86400)
    name = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz ") for _ in range(rng.randint(3, 20))).title()
    return {
        "token_address": address,
        "token_name": name,
        "token_ticker": name.replace(" ", "")[:6].upper(),
        "price_sol": maybe(rng, rng.lognormvariate(-10, 3)),
        "market_cap_sol": maybe(rng, rng.lognormvariate(8, 3)),
        "volume_sol": maybe(rng, rng.lognormvariate(5, 3)),
        "liquidity_sol": maybe(rng, rng.lognormvariate(4, 2)),
        "transaction_count": maybe(rng, rng.randint(0, 20000)),
        "price_1hr_change": maybe(rng, rng.uniform(-90, 300)),
        "protocol": rng.choice(PROTOCOLS),
        "price_usd": maybe(rng, rng.lognormvariate(-5, 3)),
        "market_cap_usd": maybe(rng, rng.lognormvariate(13, 3)),
        "fdv_usd": maybe(rng, rng.lognormvariate(13, 3)),
        "liquidity_usd": maybe(rng, rng.lognormvariate(10, 2)),
        "pair_address": "".join(rng.choice(ALPHABET) for _ in range(44)),
        "created_at": maybe(rng, iso(created)),
        "image_url": "https://example.invalid/x.png",
        "stats": stats,
        "sources": ["dexscreener", "geckoterminal"],
        "updated_at": "2026-11-22T16:20:00.123Z",
    }


def fresh(records: dict, encoded: dict) -> Version:
    return Version("bench", 1, records, encoded, NOW)


def timed(label: str, fn, iterations: int) -> None:
    fn()
    start = time.perf_counter()
    for _ in range(iterations):
        fn()
    mean = (time.perf_counter() - start) / iterations
    print(f"{label:<58} {mean * 1e6:10.1f} us")


def main() -> None:
    rng = random.Random(42)
    addresses = {"".join(rng.choice(ALPHABET) for _ in range(rng.randint(32, 44))) for _ in range(N)}
    records = {a: record(rng, a) for a in addresses}
    encoded = {a: orjson.dumps(r) for a, r in records.items()}
    print(f"{len(records)} records")

    print("\nbuilding an index on a fresh version (value column + sort):")
    for sort in SORTS:
        for order in ("desc", "asc"):
            build = lambda s=sort, o=order: ordered(fresh(records, encoded), s, "24h", o)  # noqa: E731
            timed(f"  ordered({sort}, 24h, {order})", build, 50)

    print("\nwith the value column already built (sort only):")
    base = fresh(records, encoded)
    cache = ViewCache()
    ordered(base, "volume", "24h", "asc", cache)

    def sort_only() -> None:
        cache.discard(base, ("ordered", "volume", "24h", "desc"))
        ordered(base, "volume", "24h", "desc", cache)

    timed("  ordered(volume, 24h, desc)", sort_only, 200)

    store = MemoryStore()
    token = store.lease.acquire("bench")
    asyncio.run(store.commit(changeset(store.latest(), dict(records), committed_at=time.time()), token))
    version = store.latest()
    view = parse_view({})
    for sort in SORTS:
        ordered(version, sort, "24h", "desc", cache)

    print("\nqueries on a version whose indexes exist:")

    def first_page() -> bytes:
        return b"".join(page_parts(page(store, view, None, secret=SECRET, cache=cache), view, cache))

    timed("  cached first page (page + page_parts), default view", first_page, 5000)

    views = {
        "min_liquidity_usd + protocol": parse_view(
            {"min_liquidity_usd": "20000", "protocol": "raydium,orca"}
        ),
        "q=ab (text search)": parse_view({"q": "ab"}),
        "max_age_h=240 + min_volume_usd": parse_view({"max_age_h": "240", "min_volume_usd": "1000"}),
        "all filters": parse_view(
            {"min_liquidity_usd": "1000", "min_volume_usd": "10", "min_market_cap_usd": "1000",
             "max_market_cap_usd": "1e9", "max_age_h": "1000", "protocol": "pumpswap,raydium", "q": "a"}
        ),
    }  # fmt: skip

    for label, filtered_view in views.items():
        # Warm the value columns once, then time a miss of the filtered-view cache.
        filtered(version, filtered_view, cache=cache)

        def uncached(v=filtered_view) -> bytes:
            ref = None if v.max_age_h is None else int(time.time())
            cache.discard(version, ("filtered", v.filter_key, ref))
            cache.discard(version, ("head", v.key, ref))
            return b"".join(page_parts(page(store, v, None, secret=SECRET, cache=cache), v, cache))

        timed(f"  filtered page, not cached: {label}", uncached, 2000)

        def cached(v=filtered_view) -> bytes:
            return b"".join(page_parts(page(store, v, None, secret=SECRET, cache=cache), v, cache))

        timed(f"  filtered page, cached: {label}", cached, 5000)

    deep_view = parse_view({"limit": "100"})
    cursor = None
    for _ in range(15):  # to row 1,500
        cursor = page(store, deep_view, cursor, secret=SECRET, cache=cache).next_cursor

    def deep() -> bytes:
        return b"".join(page_parts(page(store, deep_view, cursor, secret=SECRET, cache=cache), deep_view, cache))

    timed("  deep cursor page (rows 1500-1599, limit 100)", deep, 5000)

    body = deep()
    assert len(orjson.loads(body)["data"]) == 100


if __name__ == "__main__":
    main()
