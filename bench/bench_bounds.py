"""One abusive client at a time against `python -m app --demo`, with /health timed from another address:

    python bench/bench_bounds.py views         # 200 WebSockets x 20 distinct views from one client
    python bench/bench_bounds.py views-spread  # the same from 200 addresses (the process cap applies)
    python bench/bench_bounds.py queries       # 50,000 distinct filtered queries from one client
    python bench/bench_bounds.py queries-unlimited   # the same with CLIENT_RATE_LIMIT=0: caches bound it
    python bench/bench_bounds.py slowloris [--fd-limit 512]   # 1,000 never-finished requests
    python bench/bench_bounds.py stalled       # a WebSocket and an SSE stream that stop reading

For each: what the abusive client got (bench/abuse.py's summary), /health latency from 127.0.0.2 during
the attack (4 a second: p50, p99, max), the server's RSS before, at the end and after 60 idle seconds,
and its event-loop lag. docs/BENCHMARKS.md ("Bounds") records results.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import abuse  # noqa: E402
from soak import histogram_max_p99, parse_metrics, rss_mb  # noqa: E402

HEALTH_FROM = "127.0.0.2"


async def health_sampler(host: str, port: int, stop: asyncio.Event, latencies: list[float],
                         rest: list[float] | None = None) -> None:
    """/health 4 times a second (and a REST first page after each, into `rest`), from another address."""
    while not stop.is_set():
        status, _, took = await abuse.http_get(host, port, "/health", HEALTH_FROM)
        latencies.append(took if status == 200 else float("inf"))
        if rest is not None:
            status, _, took = await abuse.http_get(host, port, "/api/tokens?limit=5&sort=liquidity", HEALTH_FROM)
            rest.append(took if status == 200 else float("inf"))
        await asyncio.sleep(0.25)


def quantiles(values: list[float]) -> str:
    if not values:
        return "-"
    values = sorted(values)
    pick = lambda q: values[min(len(values) - 1, int(len(values) * q))] * 1000  # noqa: E731
    return f"p50 {pick(0.5):.1f} ms, p99 {pick(0.99):.1f} ms, max {values[-1] * 1000:.1f} ms (n={len(values)})"


async def run(scenario: str, fd_limit: int | None, idle_s: float) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PORT": str(port), "HOST": "127.0.0.1", "DATA_DIR": tempfile.mkdtemp(prefix="bounds-"),
           "LOG_LEVEL": "warning", "PYTHONPATH": str(ROOT)}
    if scenario in ("views-spread", "queries-unlimited", "stalled"):
        env["CLIENT_RATE_LIMIT"] = "0"
    if scenario == "views":
        env["CLIENT_RATE_LIMIT"] = "0"  # the view caps, not the rate, are what this measures

    def limit() -> None:
        if fd_limit:
            resource.setrlimit(resource.RLIMIT_NOFILE, (fd_limit, fd_limit))

    server = start([sys.executable, "-m", "app", "--demo"], cwd=ROOT, env=env, preexec_fn=limit)
    try:
        deadline = time.monotonic() + 60
        while (await abuse.http_get("127.0.0.1", port, "/ready"))[0] != 200:
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("the server did not become ready")
            await asyncio.sleep(0.5)
        await asyncio.sleep(20)  # some versions; the indexes of the usual views exist
        rss_before = rss_mb(server.pid)
        before = parse_metrics((await abuse.http_get("127.0.0.1", port, "/metrics"))[1].decode())
        baseline: list[float] = []
        stop = asyncio.Event()
        sampler = asyncio.create_task(health_sampler("127.0.0.1", port, stop, baseline))
        await asyncio.sleep(10)
        stop.set()
        await sampler
        latencies: list[float] = []
        rest: list[float] = []
        stop = asyncio.Event()
        sampler = asyncio.create_task(health_sampler("127.0.0.1", port, stop, latencies, rest))
        started = time.monotonic()
        report: Any
        if scenario in ("views", "views-spread"):
            report = await abuse.views(url, 200, 20, 30.0, spread=scenario == "views-spread")
        elif scenario in ("queries", "queries-unlimited"):
            report = await abuse.queries(url, 50_000, concurrency=16)
        elif scenario == "slowloris":
            report = await abuse.slowloris(url, 1000, 30.0)
        else:
            report = await asyncio.gather(abuse.stalled(url, "ws"), abuse.stalled(url, "sse"))
        took = time.monotonic() - started
        stop.set()
        await sampler
        after = parse_metrics((await abuse.http_get("127.0.0.1", port, "/metrics"))[1].decode())
        rss_end = rss_mb(server.pid)
        lag = histogram_max_p99(before, after, "event_loop_lag_seconds")
        await asyncio.sleep(idle_s)
        rss_idle = rss_mb(server.pid)
        idle = parse_metrics((await abuse.http_get("127.0.0.1", port, "/metrics"))[1].decode())
        print(f"scenario: {scenario} ({took:.0f} s{f', fd limit {fd_limit}' if fd_limit else ''})")
        print(f"  attacker got: {report}")
        print(f"  /health from another address, before: {quantiles(baseline)}")
        print(f"  /health from another address, during: {quantiles(latencies)}")
        print(f"  REST first page from another address, during: {quantiles(rest)}")
        print(f"  event-loop lag during: p99 <= {lag[0] * 1000:.0f} ms, max <= {lag[1] * 1000:.0f} ms")
        print(f"  RSS: before {rss_before:.0f} MB, at the end {rss_end:.0f} MB, "
              f"after {idle_s:.0f} s idle {rss_idle:.0f} MB; query caches at the end "
              f"{after.get('query_cache_bytes', 0) / 2**20:.1f} MB, "
              f"idle {idle.get('query_cache_bytes', 0) / 2**20:.1f} MB")
        dropped = sum(v for k, v in after.items() if k.startswith("stream_dropped_slow_clients_total"))
        print(f"  dropped as too slow: {dropped:.0f}")
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()


def start(command: list[str], **kwargs: Any) -> subprocess.Popen:
    return subprocess.Popen(command, **kwargs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=["views", "views-spread", "queries", "queries-unlimited", "slowloris",
                                             "stalled"])
    parser.add_argument("--fd-limit", type=int, default=None, help="the server's open-file limit (soft and hard)")
    parser.add_argument("--idle", type=float, default=60.0, help="seconds to wait before the last RSS reading")
    args = parser.parse_args()
    abuse._raise_fd_limit()
    asyncio.run(run(args.scenario, args.fd_limit, args.idle))


if __name__ == "__main__":
    main()
