"""CPU time of one refresh cycle's merge and store update for N tracked tokens (default 2,000).

Every token is touched (the worst case: a cycle that refreshed everything), each with two pools from
two sources and Jupiter token info; prices move a little each cycle so every record really changes.

    python bench/bench_merge.py [N] [cycles]
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.config import load_settings  # noqa: E402
from app.ingest.merge import TokenState  # noqa: E402
from app.ingest.scheduler import Ingest  # noqa: E402
from app.model import WSOL_MINT, PoolObservation, TokenInfo, WindowStats  # noqa: E402
from app.serving import tune_gc  # noqa: E402
from app.store.memory import MemoryStore  # noqa: E402

ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def address(rng: random.Random) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(44))


def stats(rng: random.Random) -> dict[str, WindowStats]:
    return {w: WindowStats(rng.uniform(0, 1e6), rng.uniform(-50, 50), rng.randint(0, 9999), rng.randint(0, 9999))
            for w in ("5m", "1h", "6h", "24h")}


def touch(ingest: Ingest, rng: random.Random, now: float) -> None:
    for state in ingest.tokens.values():
        for key, pool in list(state.pools.items()):
            state.pools[key] = PoolObservation(**{**{f: getattr(pool, f) for f in pool.__slots__},
                                                  "price_usd": pool.price_usd * rng.uniform(0.99, 1.01),
                                                  "observed_at": now, "stats": stats(rng)})
        ingest._dirty.add(state.address)


def main(n: int = 2000, cycles: int = 20) -> None:
    rng = random.Random(1)
    settings = load_settings({}, dotenv=None)
    store = MemoryStore()
    ingest = Ingest(settings, store, clients={})
    now = time.time()
    for _ in range(n):
        mint = address(rng)
        state = ingest.tokens[mint] = TokenState(mint)
        for source in ("dexscreener", "geckoterminal"):
            state.add_pool(PoolObservation(source, address(rng), mint, now, "Name", "TKN", WSOL_MINT, "SOL",
                                           "Raydium", rng.uniform(1e-6, 1), rng.uniform(1e-9, 1e-2),
                                           rng.uniform(0, 1e6), rng.uniform(0, 1e8), rng.uniform(0, 1e8),
                                           now - rng.uniform(0, 1e6), None, stats(rng)))
        state.infos["jupiter"] = TokenInfo("jupiter", mint, now, "Name", "TKN", None, 0.1, 1e5, 1e6, 1e6)
    ingest.sol_usd = 150.0
    tune_gc()  # as python -m app does
    timings = []
    for cycle in range(cycles):
        now += 10
        touch(ingest, rng, now)
        ingest.sol_usd *= rng.uniform(0.999, 1.001)
        started = time.process_time()
        upserts, removals = ingest.merge_dirty(now)
        version = store.apply(upserts, removals)
        timings.append((time.process_time() - started) * 1000)
        assert version is not None and len(version.changed) == n
    timings.sort()
    print(f"merge + store update, {n} tokens all changed, {cycles} cycles (CPU ms): "
          f"median {statistics.median(timings):.1f}  p90 {timings[int(len(timings) * 0.9) - 1]:.1f}  "
          f"min {timings[0]:.1f}  max {timings[-1]:.1f}")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
