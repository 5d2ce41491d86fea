"""Several processes over one Redis: `python bench/bench_cluster.py [--seconds S] [--subscribers N]`.

The simulated market runs in a process of its own (outside every measured process); the service runs
with STORE=redis (REDIS_URL, default redis://127.0.0.1:6379, under a fresh key prefix) and
REFRESH_INTERVAL_S=1, ALERT_PRICE_PCT=1 (so most versions raise an alert, whose `at` is the commit time).

1. REST with WEB_CONCURRENCY=1 and 2: the cached first page, then distinct filtered queries, 64 keep-alive
   connections from one asyncio load generator (bench/bench_rest.py's), each connection landing on the
   worker whose accept() won. Reported with the server's CPU (all its processes) over the window, so
   req/s per server CPU-second shows what each process gives, whatever the core count.
2. Streams with WEB_CONCURRENCY=1 and 2: N subscribers (half SSE, half WebSocket; bench/bench_streams.py's
   clients), commit -> delta arrival p50/p99 from the alerts, server CPU per delivered message.
3. Commit -> follower delta: two single-process instances on two ports (one leads), 100 SSE/WS clients on
   each; the commit -> arrival time on the follower minus that on the leader is the replication lag.

Prints Markdown rows; docs/BENCHMARKS.md ("Several processes") records results. With WEB_CONCURRENCY=2
on two cores the load generator shares the cores with the workers: say so when quoting the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_rest import python_load  # noqa: E402
from bench_streams import VIEWS, Stats, open_clients, pct, proc_cpu_s  # noqa: E402

MARKET = """
import asyncio, sys
from app.demo.market import Market
from app.demo.server import serve_market
async def main():
    async with serve_market(Market(), tick_interval=1.0) as m:
        print(m.base_url, flush=True)
        await asyncio.Event().wait()
asyncio.run(main())
"""


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def descendants(pid: int) -> list[int]:
    """The process and every process below it (uvicorn's workers, multiprocessing's helpers)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def cpu_of(pids: list[int]) -> dict[int, float]:
    out = {}
    for pid in pids:
        try:
            out[pid] = proc_cpu_s(pid)
        except OSError:
            pass
    return out


class Service:
    def __init__(self, market: str, prefix: str, workers: int, redis_url: str, max_connections: int):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data = tempfile.mkdtemp(prefix="bench-cluster-")
        env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(self.port), "STORE": "redis", "REDIS_URL": redis_url,
               "REDIS_PREFIX": prefix, "WEB_CONCURRENCY": str(workers), "REFRESH_INTERVAL_S": "1",
               "LOG_LEVEL": "warning", "ALERT_PRICE_PCT": "1", "DATA_DIR": self.data,
               "MAX_CONNECTIONS": str(max_connections), "DEXSCREENER_URL": market + "/dexscreener",
               "GECKOTERMINAL_URL": market + "/geckoterminal/api/v2", "JUPITER_URL": market + "/jupiter"}
        self.process = subprocess.Popen([sys.executable, "-m", "app"], cwd=ROOT, env=env)

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if urllib.request.urlopen(self.url + "/ready", timeout=2).status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"{self.url} did not become ready")

    def health(self) -> dict:
        import json

        return json.loads(urllib.request.urlopen(self.url + "/health", timeout=5).read())

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
        shutil.rmtree(self.data, ignore_errors=True)


def forget(redis_url: str, prefix: str) -> None:
    """Delete a run's keys (never FLUSHALL: the server may be shared)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{{{prefix}}}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


async def rest(service: Service, seconds: int) -> list[dict]:
    rows = []
    queries = {"cached first page": [f"{service.url}/api/tokens"],
               "distinct filtered queries": [f"{service.url}/api/tokens?sort=liquidity&min_liquidity_usd={i}"
                                             for i in range(5000)]}
    for name, urls in queries.items():
        pids = descendants(service.process.pid)
        before, t0 = cpu_of(pids), time.monotonic()
        result = await python_load(urls, seconds)
        elapsed = time.monotonic() - t0
        after = cpu_of(pids)
        busy = {pid: (after[pid] - before[pid]) / elapsed for pid in after if pid in before}
        server_cores = sum(busy.values())
        rows.append({"query": name, **result, "server_cores": server_cores,
                     "rps_per_core": result["rps"] / max(server_cores, 1e-9),
                     "per_process": sorted(round(v, 2) for v in busy.values() if v > 0.05)})
    return rows


async def streams(service: Service, n: int, seconds: float) -> dict:
    stats = Stats()
    clients = await open_clients(n, service.port, stats, VIEWS[:4])
    await asyncio.sleep(5)
    pids = descendants(service.process.pid)
    before, messages0 = cpu_of(pids), sum(c.messages for c in clients)
    stats.measuring = True
    await asyncio.sleep(seconds)
    stats.measuring = False
    after, messages = cpu_of(pids), sum(c.messages for c in clients) - messages0
    busy = {pid: (after[pid] - before[pid]) / seconds for pid in after if pid in before}
    for client in clients:
        if client.transport is not None:
            client.transport.close()
    lat = stats.alert_latency
    return {"held": sum(1 for c in clients if not c.closed), "p50": pct(lat, 0.5) * 1000, "p99": pct(lat, 0.99) * 1000,
            "timed": len(lat), "cpu_us_per_msg": sum(busy.values()) * seconds / max(messages, 1) * 1e6,
            "per_process": sorted(round(v, 2) for v in busy.values() if v > 0.05)}


async def follower_lag(market: str, redis_url: str, seconds: float) -> dict:
    prefix = "bench:" + secrets.token_hex(4)
    first = Service(market, prefix, 1, redis_url, 1000)
    first.wait_ready()
    second = Service(market, prefix, 1, redis_url, 1000)
    second.wait_ready()
    try:
        health = first.health()
        leader, follower = (first, second) if health["role"] == "leader" else (second, first)
        out = {}
        stats = {}
        clients = []
        for name, service in (("leader", leader), ("follower", follower)):
            stats[name] = Stats()
            clients += await open_clients(100, service.port, stats[name], VIEWS[:4])
        await asyncio.sleep(3)
        for s in stats.values():
            s.measuring = True
        await asyncio.sleep(seconds)
        for name, s in stats.items():
            out[name] = (pct(s.alert_latency, 0.5) * 1000, pct(s.alert_latency, 0.99) * 1000, len(s.alert_latency))
        for client in clients:
            if client.transport is not None:
                client.transport.close()
        return out
    finally:
        first.stop()
        second.stop()
        forget(redis_url, prefix)


def start_market() -> tuple[subprocess.Popen, str]:
    market = subprocess.Popen([sys.executable, "-c", MARKET], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    return market, market.stdout.readline().strip()


async def main(seconds: int, subscribers: int, redis_url: str) -> None:
    market, base = start_market()
    try:
        print(f"machine: {os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f} at start")
        for workers in (1, 2):
            prefix = "bench:" + secrets.token_hex(4)
            service = Service(base, prefix, workers, redis_url, subscribers + 200)
            try:
                service.wait_ready()
                await asyncio.sleep(10)  # the universe fills in
                tokens = service.health()["tokens"]
                for row in await rest(service, seconds):
                    print(f"| REST {row['query']} | {workers} | {row['rps']:,.0f} req/s | {row['p50']:.1f} / "
                          f"{row['p99']:.1f} ms | {row['server_cores']:.2f} | {row['rps_per_core']:,.0f} | "
                          f"{row['per_process']} | {tokens} tokens |", flush=True)
                result = await streams(service, subscribers, seconds)
                print(f"| streams, {subscribers} subscribers | {workers} | held {result['held']} | "
                      f"{result['p50']:.0f} / {result['p99']:.0f} ms ({result['timed']} timed) | "
                      f"{result['cpu_us_per_msg']:.1f} µs/msg | {result['per_process']} |", flush=True)
            finally:
                service.stop()
                forget(redis_url, prefix)
        lag = await follower_lag(base, redis_url, seconds)
        for name, (p50, p99, n) in lag.items():
            print(f"| commit -> delta on the {name} | {p50:.1f} / {p99:.1f} ms | {n} timed |", flush=True)
    finally:
        market.terminate()
        market.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--subscribers", type=int, default=2000)
    parser.add_argument("--redis", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379"))
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.run(main(args.seconds, args.subscribers, args.redis))
    except ImportError:
        asyncio.run(main(args.seconds, args.subscribers, args.redis))
