"""A token's history (GET /api/tokens/{address}/history): what the series index costs and what an answer costs.

A DATA_DIR holding a full week at the default MAX_TOKENS: 2,000 tokens sampled once a minute for the last
two hours and once per half hour for seven days before (the ~460 slots the history keeps). Measured:
  build     the first series read after a restart: every slot read from disk into the per-token index
  memory    what the index holds (tracemalloc)
  record    one new slot (2,000 tokens) written and indexed, as the ingest does once a minute
  answer    one answer built (bucketing + JSON), per interval: what a request costs once per version
  cached    the same request again at the same version: the encoded bytes, through the real route

    python bench/bench_history.py
"""

from __future__ import annotations

import asyncio
import random
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from types import SimpleNamespace

import httpx
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.history import KEEP_EVERY_S, STEP_S, THIN_AFTER_S, WEEK_S, open_state  # noqa: E402
from app.history_series import points  # noqa: E402
from app.sources.values import iso  # noqa: E402

TOKENS = 2000
ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def mints(n: int, rng: random.Random) -> list[str]:
    return ["".join(rng.choice(ALPHABET) for _ in range(44)) for _ in range(n)]


def record(rng: random.Random, at: float | None = None) -> dict:
    record = {"price_usd": rng.uniform(1e-6, 1.0), "stats": {
        w: {"volume_usd": rng.uniform(0, 1e6)} for w in ("5m", "1h", "24h")}}
    if at is not None:
        record["updated_at"] = iso(at)
    return record


async def main() -> None:
    rng = random.Random(1)
    addresses = mints(TOKENS, rng)
    now = float(round(time.time()))
    times = [now - WEEK_S - THIN_AFTER_S + k * KEEP_EVERY_S for k in range(int(WEEK_S // KEEP_EVERY_S))]
    times += [now - THIN_AFTER_S + k * STEP_S for k in range(int(THIN_AFTER_S // STEP_S))]
    with tempfile.TemporaryDirectory() as data_dir:
        history, snapshots = open_state(data_dir, "bench")
        started = time.perf_counter()
        for t in times:
            await history.record({a: record(rng) for a in addresses}, t)
        print(f"seeded {len(history.times())} slots x {TOKENS} tokens in {time.perf_counter() - started:.1f} s")
        history.close()
        snapshots.close()

        history, snapshots = open_state(data_dir, "bench")
        started = time.perf_counter()
        series = await history.series(addresses[0])
        build = time.perf_counter() - started
        print(f"build     {build * 1000:8.0f} ms   ({len(series)} samples for one token)")
        history.close()
        snapshots.close()
        history, snapshots = open_state(data_dir, "bench")
        tracemalloc.start()
        await history.series(addresses[0])
        current, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"memory    {current / 1e6:8.1f} MB   (index of {len(history.times())} slots x {TOKENS} tokens)")

        started = time.perf_counter()
        await history.record({a: record(rng) for a in addresses}, now)
        print(f"record    {(time.perf_counter() - started) * 1000:8.1f} ms   (one slot: written, thinned, indexed)")

        live = record(rng, now + 1)
        for interval, limit in (("1m", 61), ("5m", 288), ("1h", 168), ("1d", 60)):
            series = await history.series(addresses[1])
            runs = []
            for _ in range(200):
                t0 = time.perf_counter()
                orjson.dumps({"points": points(series, [], live, interval, limit, now + 2)})
                runs.append(time.perf_counter() - t0)
            print(f"answer    {statistics.median(runs) * 1e6:8.0f} us   interval={interval} limit={limit}")

        await cached_route(history, addresses[1], live)
        history.close()
        snapshots.close()


async def cached_route(history, address: str, live: dict) -> None:
    """The route itself, in process (no network): the first answer, then the cached bytes."""
    from starlette.applications import Starlette

    from app.api.history_routes import routes

    version = SimpleNamespace(epoch="e", seq=1, records={address: live})
    app = Starlette(routes=routes)
    app.state.service = SimpleNamespace(store=SimpleNamespace(latest=lambda: version),
                                        ingest=SimpleNamespace(history=history), extras={})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as client:
        url = f"/api/tokens/{address}/history?interval=1h&limit=168"
        t0 = time.perf_counter()
        first = await client.get(url)
        print(f"route     {(time.perf_counter() - t0) * 1000:8.2f} ms   first answer ({len(first.content)} bytes)")
        runs = []
        for _ in range(500):
            t0 = time.perf_counter()
            await client.get(url)
            runs.append(time.perf_counter() - t0)
        print(f"cached    {statistics.median(runs) * 1e6:8.0f} us   the same request again (median of 500, "
              f"in-process ASGI client included)")


if __name__ == "__main__":
    asyncio.run(main())
