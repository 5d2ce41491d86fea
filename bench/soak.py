"""Soak: hours of ordinary and abusive clients against one `python -m app --demo`, watching what grows.

    python bench/soak.py --minutes 30 --streams 400 [--refresh 2] [--views-attack] [--queries-attack]
                         [--slowloris N] [--out soak.csv]

The server runs in its own process; the clients in another (`soak.py load`, raw asyncio sockets):

The server tracks at most `--max-tokens` tokens (fewer than the simulated market starts with: the data's
own size stays constant while the market launches new tokens).

- `--streams` streams, half SSE and half WebSocket, over 8 views; every 10 s a twentieth of them is closed
  and opened again (half of the SSE ones resuming with Last-Event-ID);
- REST load, ~20 requests/s: the cached first page, distinct filtered queries (a new `min_liquidity_usd`
  each time), and cursor pages;
- a slow cursor walker: `limit=1`, one page a minute, a new walk whenever its cursor expires (410);
- optional abuse: 200 WebSockets x 20 distinct views, 50,000 distinct queries, a slowloris.

Every 10 s this process samples the server: RSS and open descriptors (/proc), event-loop lag (the server's
`event_loop_lag_seconds` histogram), stream queue bytes and connections (/metrics), `/health` latency (its
own requests, 4 a second). It prints one line per minute, then the growth per minute after the warm-up
(a least-squares slope over the samples), and writes every sample to `--out` when given.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import abuse  # noqa: E402

VIEWS = ["sort=volume&limit=20", "sort=liquidity&limit=30", "sort=txns&window=5m&limit=20",
         "sort=price_change&window=1h&limit=25", "sort=market_cap&order=asc&limit=15", "sort=volume&window=1h&limit=10",
         "sort=fdv&limit=20", "sort=created&limit=20"]
SAMPLE_S = 10.0

# ------------------------------------------------------------------------------------------- the load


class Stream:
    """One SSE or WebSocket stream that reads and counts what it gets; `reopen` is the churn."""

    def __init__(self, host: str, port: int, kind: str, view: str, stats: dict[str, int]):
        self.host, self.port, self.kind, self.view, self.stats = host, port, kind, view, stats
        self.writer: asyncio.StreamWriter | None = None
        self.last_id: bytes | None = None
        self.task: asyncio.Task[None] | None = None

    def start(self, resume: bool = False) -> None:
        self.task = asyncio.create_task(self.run(resume))

    async def run(self, resume: bool) -> None:
        try:
            reader, writer = await abuse.connect(self.host, self.port)
        except OSError:
            abuse.bump(self.stats, "connect_failed")
            return
        self.writer = writer
        try:
            if self.kind == "sse":
                resume_header = f"Last-Event-ID: {self.last_id.decode()}\r\n" if resume and self.last_id else ""
                writer.write(f"GET /api/stream?{self.view} HTTP/1.1\r\nHost: x\r\n{resume_header}\r\n".encode())
            else:
                writer.write(abuse.ws_handshake("/ws"))
                await reader.readuntil(b"\r\n\r\n")
                params = dict(p.split("=") for p in self.view.split("&"))
                writer.write(abuse.ws_text(json.dumps({"op": "subscribe", "id": "s", "view": params}).encode()))
            abuse.bump(self.stats, "opened")
            frames = bytearray()
            while chunk := await reader.read(1 << 16):
                self.stats["bytes"] += len(chunk)
                if self.kind == "sse":
                    self.stats["deltas"] += chunk.count(b"event: delta")
                    ids = re.findall(rb"id: ([0-9a-f]+:\d+)\nevent: (?:delta|snapshot)", chunk)
                    if ids:
                        self.last_id = ids[-1]
                    continue
                frames += chunk
                for opcode, payload in abuse.ws_messages(frames):
                    if opcode == 0x9:  # the server's keep-alive ping: a client must answer it
                        writer.write(abuse.ws_text(payload, 0xA))
                    elif opcode == 0x1 and payload.startswith(b'{"type":"delta"'):
                        self.stats["deltas"] += 1
            abuse.bump(self.stats, "ended_by_server")
        except (OSError, asyncio.IncompleteReadError):
            abuse.bump(self.stats, "errors")
        except asyncio.CancelledError:
            pass
        finally:
            writer.close()

    async def reopen(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        self.start(resume=self.kind == "sse" and random.random() < 0.5)


async def rest_load(host: str, port: int, stats: dict[str, int], rate: float) -> None:
    counter = 0
    cursor: str | None = None
    while True:
        counter += 1
        kind = counter % 4
        if kind == 0:
            path = "/api/tokens"
        elif kind == 1:
            path = f"/api/tokens?sort=liquidity&window=1h&limit=30&min_liquidity_usd={counter}"
        elif kind == 2:
            path = f"/api/tokens?sort=volume&limit=30&cursor={cursor}" if cursor else "/api/tokens?sort=volume&limit=30"
        else:
            path = f"/api/tokens?sort=fdv&limit=100&q={random.choice('abcdefghijklmnop')}{counter % 50}"
        status, body, _ = await abuse.http_get(host, port, path)
        abuse.bump(stats, f"rest_{status}")
        if kind == 2:
            cursor = json.loads(body).get("next_cursor") if status == 200 else None
        await asyncio.sleep(1 / rate)


async def load(url: str, streams: int, seconds: float, views_attack: bool, queries_attack: bool,
               slowloris: int) -> dict[str, Any]:
    host, port = abuse.split(url)
    stats: dict[str, int] = {"bytes": 0, "deltas": 0}
    clients = [Stream(host, port, "sse" if i % 2 else "ws", VIEWS[i % len(VIEWS)], stats) for i in range(streams)]
    for client in clients:
        client.start()
        await asyncio.sleep(0.005)
    background = [asyncio.create_task(rest_load(host, port, stats, 20.0))]
    walker = asyncio.create_task(abuse.walker(url, seconds, 60.0))
    extra = []
    if views_attack:
        extra.append(asyncio.create_task(abuse.views(url, 200, 20, seconds)))
    if queries_attack:
        extra.append(asyncio.create_task(abuse.queries(url, 50_000, concurrency=8)))
    if slowloris:
        extra.append(asyncio.create_task(abuse.slowloris(url, slowloris, seconds, source="127.0.0.3")))
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        await asyncio.sleep(10)
        for client in random.sample(clients, max(1, streams // 20)):
            await client.reopen()
        abuse.bump(stats, "churned", max(1, streams // 20))
    for task in background:
        task.cancel()
    for client in clients:
        if client.task is not None:
            client.task.cancel()
    results = {"streams": stats, "walker": await walker}
    for task in extra:
        task.cancel()
    return results


# ------------------------------------------------------------------------------------------ sampling


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def parse_metrics(text: str) -> dict[str, float]:
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            try:
                values[name] = float(value)
            except ValueError:
                pass
    return values


def histogram_max_p99(before: dict[str, float], after: dict[str, float], name: str) -> tuple[float, float]:
    """(p99, max) bucket bounds of the observations between two scrapes of a histogram."""
    bounds = []
    for key, value in after.items():
        if key.startswith(name + "_bucket{le="):
            le = key.split('"')[1]
            bounds.append((float("inf") if le == "+Inf" else float(le), value - before.get(key, 0.0)))
    bounds.sort()
    total = bounds[-1][1] if bounds else 0
    if not total:
        return 0.0, 0.0
    p99 = next(b for b, count in bounds if count >= 0.99 * total)
    top = next(b for b, count in bounds if count >= total)
    return p99, top


async def sample_health(host: str, port: int, seconds: float) -> list[float]:
    latencies = []
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        status, _, took = await abuse.http_get(host, port, "/health")
        latencies.append(took if status == 200 else float("inf"))
        await asyncio.sleep(0.25)
    return latencies


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    if len(points) < 3:
        return 0.0
    xs, ys = [p[0] / 60 for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var if var else 0.0


async def soak(args: argparse.Namespace) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    data_dir = tempfile.mkdtemp(prefix="soak-")
    env = {**os.environ, "PORT": str(port), "HOST": "127.0.0.1", "DATA_DIR": data_dir, "LOG_LEVEL": "warning",
           "REFRESH_INTERVAL_S": str(args.refresh), "CLIENT_RATE_LIMIT": "0", "PYTHONPATH": str(ROOT),
           # The simulated market launches a token every 20 s or so; capping the tracked universe below its
           # starting size keeps the data's own size constant, so what grows is the service's.
           "MAX_TOKENS": str(args.max_tokens)}
    server = start([sys.executable, "-m", "app", "--demo"], cwd=ROOT, env=env)
    load_process = None
    samples: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + 60
        while (await abuse.http_get("127.0.0.1", port, "/ready"))[0] != 200:
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("the server did not become ready")
            await asyncio.sleep(0.5)
        command = [sys.executable, __file__, "load", "--url", url, "--streams", str(args.streams),
                   "--seconds", str(args.minutes * 60)]
        command += ["--views-attack"] * args.views_attack + ["--queries-attack"] * args.queries_attack
        command += ["--slowloris", str(args.slowloris)]
        load_process = start(command, stdout=subprocess.PIPE)
        started = time.monotonic()
        before = parse_metrics((await abuse.http_get("127.0.0.1", port, "/metrics"))[1].decode())
        cpu_before = cpu_s(server.pid)
        print(f"{'min':>5} {'RSS MB':>8} {'fds':>6} {'conns':>6} {'queue KB':>9} {'lag p99/max ms':>15} "
              f"{'health p99/max ms':>18} {'CPU %':>6}", flush=True)
        while time.monotonic() - started < args.minutes * 60:
            health = await sample_health("127.0.0.1", port, SAMPLE_S)
            after = parse_metrics((await abuse.http_get("127.0.0.1", port, "/metrics"))[1].decode())
            cpu_after = cpu_s(server.pid)
            lag = histogram_max_p99(before, after, "event_loop_lag_seconds")
            health.sort()
            sample = {
                "t": round(time.monotonic() - started, 1), "rss_mb": round(rss_mb(server.pid), 1),
                "fds": open_fds(server.pid),
                "connections": sum(v for k, v in after.items() if k.startswith("stream_connections")),
                "queue_kb": round(after.get("stream_queue_bytes", 0) / 1024, 1),
                "cache_mb": round(after.get("query_cache_bytes", 0) / 2**20, 1),
                "lag_p99_ms": lag[0] * 1000, "lag_max_ms": lag[1] * 1000,
                "health_p99_ms": round(health[int(len(health) * 0.99) - 1] * 1000, 1) if health else None,
                "health_max_ms": round(health[-1] * 1000, 1) if health else None,
                "cpu_pct": round((cpu_after - cpu_before) / SAMPLE_S * 100, 1),
                "dropped_slow": sum(v for k, v in after.items() if k.startswith("stream_dropped_slow_clients_total")),
            }
            samples.append(sample)
            before, cpu_before = after, cpu_after
            if len(samples) % int(60 / SAMPLE_S) == 0:
                s = sample
                print(f"{s['t'] / 60:5.1f} {s['rss_mb']:8.1f} {s['fds']:6d} {s['connections']:6.0f} "
                      f"{s['queue_kb']:9.1f} {s['lag_p99_ms']:7.0f}/{s['lag_max_ms']:<7.0f} "
                      f"{s['health_p99_ms']:9.1f}/{s['health_max_ms']:<8.1f} {s['cpu_pct']:6.1f}", flush=True)
        out, _ = load_process.communicate(timeout=120)
        print("load:", out.decode().strip()[-2000:])
    finally:
        if load_process is not None and load_process.poll() is None:
            load_process.kill()
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
    summarise(samples, args.warmup)
    if args.out:
        with open(args.out, "w") as out:  # noqa: ASYNC230 - once, at the end
            out.write("\n".join(json.dumps(s) for s in samples) + "\n")


def start(command: list[str], **kwargs: Any) -> subprocess.Popen:
    return subprocess.Popen(command, **kwargs)


def summarise(samples: list[dict[str, Any]], warmup: float) -> None:
    """Growth per minute after the warm-up: least-squares slopes, and the spread of RSS."""
    warm = [s for s in samples if s["t"] >= warmup * 60]
    if not warm:
        return
    rss = [(s["t"], s["rss_mb"]) for s in warm]
    low, high, mean = min(r for _, r in rss), max(r for _, r in rss), statistics.fmean(r for _, r in rss)
    growth = slope_per_minute(rss)
    print(f"after the {warmup:g}-minute warm-up ({len(warm)} samples): RSS {low:.1f}-{high:.1f} MB "
          f"({(high / low - 1) * 100:.1f} % max over min), "
          f"growth {growth:+.2f} MB/min ({growth / mean * 100:+.3f} %/min); "
          f"fds {slope_per_minute([(s['t'], s['fds']) for s in warm]):+.2f}/min; "
          f"loop lag p99 worst {max(s['lag_p99_ms'] for s in warm):.0f} ms; "
          f"/health p99 worst {max(s['health_p99_ms'] for s in warm):.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", nargs="?", default="soak", choices=["soak", "load"])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=6.0)
    parser.add_argument("--streams", type=int, default=400)
    parser.add_argument("--refresh", type=float, default=2.0, help="REFRESH_INTERVAL_S of the server")
    parser.add_argument("--max-tokens", type=int, default=250, help="MAX_TOKENS of the server")
    parser.add_argument("--views-attack", action="store_true")
    parser.add_argument("--queries-attack", action="store_true")
    parser.add_argument("--slowloris", type=int, default=0)
    parser.add_argument("--url")
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--out")
    args = parser.parse_args()
    abuse._raise_fd_limit()
    if args.role == "load":
        result = asyncio.run(load(args.url, args.streams, args.seconds, args.views_attack, args.queries_attack,
                                  args.slowloris))
        print(json.dumps(result), flush=True)
    else:
        asyncio.run(soak(args))


if __name__ == "__main__":
    main()
