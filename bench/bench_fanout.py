"""CPU cost of the stream fan-out itself, in process: `python bench/bench_fanout.py [N] [versions]`.

N SSE and N WebSocket subscribers (default 2,000 each) on 4 views of 60 tokens, every one idle with a
direct writer that takes every write (the fast path, app.streams.direct, without sockets): what is
measured is the hub's own work per version (the delta per view, framing once per framing and id, the
wire bytes once per writer key, the per-subscriber loop), not the kernel's. Each version changes 20
tokens; the figure is the wall time from the commit to the end of the fan-out pass, median and p90 over
`versions` (default 60). `SERVICE_ROOT=<checkout>` measures another checkout (before the transport seam,
`Hub.connect` took "sse"/"ws" and writers framed one text at a time; both are handled here).
docs/BENCHMARKS.md ("Streams") records results.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(os.environ.get("SERVICE_ROOT", Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(ROOT))

from app import query  # noqa: E402
from app.api.metrics import Metrics  # noqa: E402
from app.streams.hub import Hub  # noqa: E402
from tests.stores import memory_store  # noqa: E402

try:
    from app.streams.frames import SSE, WS  # noqa: E402

    KINDS: dict[str, Any] = {"sse": SSE, "ws": WS}
except ImportError:  # a checkout before the transport seam
    KINDS = {"sse": "sse", "ws": "ws"}


class TakesEverything:
    """A direct writer whose socket always has room; `wire` as today (frames) or as before (one text)."""

    key = None
    bits = None

    def wire(self, frames: Any) -> bytes:
        if isinstance(frames, str):
            return frames.encode()
        return b"".join(f if isinstance(f, bytes) else f.encode() for f in frames)

    def write(self, wire: bytes) -> bool:
        return True


def record(address: str, price: float, updated_at: str) -> dict[str, Any]:
    stats = {w: {"volume_usd": 1000.0 + price, "volume_sol": 7.0, "price_change": price / 10, "buys": 10, "sells": 9}
             for w in ("5m", "1h", "6h", "24h")}
    stats["7d"] = {"volume_usd": None, "volume_sol": None, "price_change": None, "buys": None, "sells": None}
    return {"token_address": address, "token_name": "Cat " + address[:4], "token_ticker": address[:3],
            "price_sol": price / 150, "market_cap_sol": 10.0 * price, "volume_sol": 7.0, "liquidity_sol": 3.0,
            "transaction_count": 19, "price_1hr_change": price / 10, "protocol": "Orca", "price_usd": price,
            "market_cap_usd": 1500.0 * price, "fdv_usd": 1500.0 * price, "liquidity_usd": 450.0 + price,
            "pair_address": None, "created_at": "2026-01-01T00:00:00Z", "image_url": None, "stats": stats,
            "sources": ["dexscreener"], "updated_at": updated_at}


async def main(n: int, versions: int) -> None:
    store = memory_store(epoch="e")
    addresses = [f"A{'x' * 31}Mint{i}" for i in range(60)]
    store.apply({a: record(a, 1.0 + i, "0") for i, a in enumerate(addresses)})
    hub = Hub(store.store, Metrics(), 10 * n, heartbeat_s=1e9)
    views = [query.parse_view({"limit": 30}), query.parse_view({"limit": 20, "sort": "price"}),
             query.parse_view({"limit": 30, "sort": "liquidity"}), query.parse_view({"limit": 25, "order": "asc"})]
    loop = asyncio.get_running_loop()
    connections = []
    for i in range(n):
        for kind in ("sse", "ws"):
            connection = hub.connect(KINDS[kind])
            hub.subscribe(connection, None if kind == "sse" else f"s{i % 3}", view=views[i % 4])
            connection.take()  # the snapshot
            connection.direct_writer = TakesEverything()
            connection._waiter = loop.create_future()  # parked: its writer waits for frames
            connections.append(connection)
    times = []
    for step in range(1, versions + 1):
        started = time.perf_counter()
        store.apply({a: record(a, 2.0 + i + step, str(step)) for i, a in enumerate(addresses[:20])})
        while hub.fanout_pass.todo or hub.fanout_pass.scheduled:
            await asyncio.sleep(0)  # the pass continues from the loop in slices
        times.append(time.perf_counter() - started)
        for connection in connections:
            connection.queue.clear()
            connection.queued_bytes = 0
    times.sort()
    written = sum(hub.written_directly.values())
    print(f"{n:,} SSE + {n:,} WebSocket subscribers, {versions} versions: per version median "
          f"{statistics.median(times) * 1000:.2f} ms, p90 {times[int(len(times) * 0.9)] * 1000:.2f} ms; "
          f"{written:,} deltas written directly")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000, int(sys.argv[2]) if len(sys.argv) > 2 else 60))
