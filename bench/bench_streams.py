"""Stream fan-out under load: `python bench/bench_streams.py [N] [--seconds S] [--views V] [--kind K] [--deflate]`.

Starts `python -m app --demo` (REFRESH_INTERVAL_S=1: the simulated market ticks every second and the
service commits about one version a second), opens N subscribers (half SSE, half WebSocket, spread over
V views; `--kind ws` or `--kind sse`: all of one kind) with raw asyncio sockets (one process, uvloop when
installed), and measures for S seconds:

- commit -> delta arrival, end to end. A delta carries no commit time (and the contract shapes stay as
  they are), but an alert does: its `at` is the commit time of its version (ms) and its `seq` that
  version. The bench runs the server with a low ALERT_PRICE_PCT so that most versions raise an alert
  for some token in some view; for every such version, each client's delta arrival (wall clock, same
  machine) minus that commit time. Alerts themselves (queued after every delta of their version) are
  timed the same way.
- delta arrival spread: for every version, each client's delta arrival minus the first client's.
- the server's own view (from /metrics): `stream_delivery_seconds` (commit -> live delta handed to the
  client's socket) and `stream_fanout_seconds` (publish() computing and queueing a version for all).
- server RSS per connection: VmRSS after connecting (and a few versions) minus before, over N.
- server CPU per delivered message: (utime+stime) over the measured window / messages the clients got;
  "net" subtracts the server's CPU rate measured for 10 s before any subscriber connected (its ingest
  and the simulated market run in the same process).
- bytes on the wire per client per minute (everything the clients read in the window, framing included).

`--deflate`: the WebSocket clients offer permessage-deflate as browsers do (`client_max_window_bits`,
nothing else) and inflate what they get; compare with the same run without it (docs/BENCHMARKS.md, "Wire").

Prints a Markdown table row per run; docs/BENCHMARKS.md ("Streams") records results.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import zlib
from datetime import datetime
from pathlib import Path

ROOT = Path(os.environ.get("SERVICE_ROOT", Path(__file__).resolve().parents[1]))  # measure another checkout
VIEWS = [
    "sort=volume&limit=20",
    "sort=liquidity&limit=30",
    "sort=txns&window=5m&limit=20",
    "sort=price_change&window=1h&limit=25",
    "sort=market_cap&order=asc&limit=15",
    "sort=volume&window=1h&limit=10",
    "sort=fdv&limit=20",
    "sort=created&limit=20",
]
SSE_DELTA = re.compile(rb"id: [0-9a-f]+:(\d+)\nevent: delta\n")
WS_DELTA = re.compile(rb'\{"type":"delta","id":"s","epoch":"[0-9a-f]+","seq":(\d+)')
SSE_ALERT = re.compile(rb'event: alert\ndata: \{[^\n]*?"seq":(\d+),"at":"([^"]+)"')
WS_ALERT = re.compile(rb'\{"type":"alert","id":"s"[^\n]*?"seq":(\d+),"at":"([^"]+)"')
TAIL = 600  # bytes kept from the previous read so a match split across reads is still found
DEFLATE_OFFER = "permessage-deflate; client_max_window_bits"  # what Chromium offers


def parse_at(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class Client(asyncio.Protocol):
    """A subscriber that records when each delta and alert arrives (raw bytes, no full parsing)."""

    def __init__(self, kind: str, path: str, stats: Stats, deflate: bool = False):
        self.kind, self.path, self.stats = kind, path, stats
        self.inflater = Inflater(stats) if deflate and kind == "ws" else None
        self.transport: asyncio.Transport | None = None
        self.tail = b""
        self.handshaken = asyncio.get_running_loop().create_future()
        self.connected = False
        self.closed = False
        self.seen: set[bytes] = set()
        self.deltas: dict[int, float] = {}
        self.messages = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.kind == "sse":
            transport.write(f"GET /api/stream?{self.path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())  # type: ignore[attr-defined]
        else:
            key = base64.b64encode(os.urandom(16)).decode()
            offer = f"Sec-WebSocket-Extensions: {DEFLATE_OFFER}\r\n" if self.inflater is not None else ""
            transport.write((f"GET /ws HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"  # type: ignore[attr-defined]
                             f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n").encode())

    def data_received(self, data: bytes) -> None:
        now = wall = time.time()
        if self.stats.measuring:
            self.stats.bytes += len(data)
        if self.inflater is not None:
            data = self.inflater.feed(data)  # the messages' text, once the handshake is through
            if self.inflater.handshaken and not self.handshaken.done():
                self.handshaken.set_result(None)
            if not data:
                return
        elif not self.handshaken.done() and b"\r\n\r\n" in self.tail + data:
            self.handshaken.set_result(None)
        buffer = self.tail + data
        self.tail = buffer[-TAIL:]
        sse = self.kind == "sse"
        if (b"event: delta" if sse else b'"type":"delta"') in buffer:
            for match in (SSE_DELTA if sse else WS_DELTA).finditer(buffer):
                seq = int(match.group(1))
                if seq not in self.deltas:
                    self.deltas[seq] = now
                    self.messages += 1
                    self.stats.deltas += 1
        if b"alert" not in buffer:
            return
        for match in (SSE_ALERT if sse else WS_ALERT).finditer(buffer):
            key = match.group(0)[-120:]
            if key in self.seen:
                continue
            self.seen.add(key)
            if len(self.seen) > 256:
                self.seen.clear()
                self.seen.add(key)
            self.messages += 1
            committed = parse_at(match.group(2).decode())
            self.stats.commit_at[int(match.group(1))] = committed
            if self.stats.measuring:
                self.stats.alert_latency.append(wall - committed)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.stats.lost += 1

    def subscribe(self, view: str) -> None:
        params = dict(part.split("=") for part in view.split("&"))
        body = ('{"op":"subscribe","id":"s","view":{' + ",".join(
            f'"{k}":{v if v.isdigit() else chr(34) + v + chr(34)}' for k, v in params.items()) + "}}").encode()
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(body))
        assert len(body) < 126
        self.transport.write(bytes([0x81, 0x80 | len(body)]) + mask + masked)  # type: ignore[union-attr]


class Inflater:
    """A WebSocket client's side of permessage-deflate: frames in, messages' text out.

    When the server compresses each message on its own (`server_no_context_takeover`), a compressed
    payload always inflates to the same text: inflated once per distinct payload for all the clients of
    this process, which keeps the load generator's CPU for reading sockets, not for zlib. Otherwise (a
    server that keeps its context, such as the service before it negotiated this) each client keeps its
    own decompressor."""

    memo: dict[bytes, bytes] = {}

    def __init__(self, stats: Stats):
        self.stats = stats
        self.buffer = b""
        self.handshaken = False
        self.decoder: zlib._Decompress | None = None  # a server with context takeover: this client's own

    def feed(self, data: bytes) -> bytes:
        buffer = self.buffer + data
        if not self.handshaken:
            head, sep, buffer = buffer.partition(b"\r\n\r\n")
            if not sep:
                self.buffer = head
                return b""
            self.handshaken = True
            agreed = head.lower()
            self.stats.deflate_agreed += b"permessage-deflate" in agreed
            if b"server_no_context_takeover" not in agreed:
                self.decoder = zlib.decompressobj(-15)
        out = []
        while len(buffer) >= 2:
            first, size, at = buffer[0], buffer[1] & 0x7F, 2
            if size == 126:
                if len(buffer) < 4:
                    break
                size, at = int.from_bytes(buffer[2:4], "big"), 4
            elif size == 127:
                if len(buffer) < 10:
                    break
                size, at = int.from_bytes(buffer[2:10], "big"), 10
            if len(buffer) < at + size:
                break
            payload, buffer = buffer[at:at + size], buffer[at + size:]
            if first & 0x40 and self.decoder is not None:
                payload = self.decoder.decompress(payload + b"\x00\x00\xff\xff")
                self.stats.inflated += 1
            elif first & 0x40:  # RSV1: compressed
                text = self.memo.get(payload)
                if text is None:
                    if len(self.memo) > 4096:
                        self.memo.clear()
                    text = self.memo[payload] = zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")
                    self.stats.inflated += 1
                payload = text
            out.append(payload)
        self.buffer = buffer
        return b"\n".join(out)


class Stats:
    def __init__(self) -> None:
        self.bytes = 0  # read by all clients while measuring
        self.deflate_agreed = 0  # WebSocket handshakes that agreed permessage-deflate
        self.inflated = 0
        self.deltas = 0
        self.lost = 0
        self.measuring = False
        self.alert_latency: list[float] = []
        self.commit_at: dict[int, float] = {}  # seq -> commit time, from the `at` of its alerts


def proc_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def metrics(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("stream_"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def histogram_quantiles(before: dict[str, float], after: dict[str, float], name: str) -> dict[str, str]:
    """p50/p99 upper bounds from the bucket counts gained between two scrapes."""
    buckets = []
    for key, value in after.items():
        if key.startswith(name + "_bucket{"):
            le = key.split('le="')[1].split('"')[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), value - before.get(key, 0.0)))
    buckets.sort()
    total = buckets[-1][1] if buckets else 0
    out = {"count": f"{total:.0f}"}
    top = max((le for le, _ in buckets if le != float("inf")), default=float("nan"))
    for q in (0.5, 0.99):
        bound = next((le for le, count in buckets if total and count >= q * total), float("nan"))
        out[f"p{int(q * 100)}"] = f"<= {bound * 1000:.0f} ms" if bound != float("inf") else f"> {top * 1000:.0f} ms"
    return out


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def open_clients(n: int, port: int, stats: Stats, views: list[str], kinds: str = "mixed",
                       deflate: bool = False) -> list[Client]:
    loop = asyncio.get_running_loop()
    clients: list[Client] = []
    batch = 250
    for start in range(0, n, batch):
        group = []
        for i in range(start, min(n, start + batch)):
            kind = ("sse" if i % 2 == 0 else "ws") if kinds == "mixed" else kinds
            view = views[(i // 2) % len(views)]
            group.append(Client(kind, view, stats, deflate))

        async def connect(client: Client) -> None:
            for attempt in range(5):
                try:
                    await loop.create_connection(lambda: client, "127.0.0.1", port)
                    break
                except OSError:
                    await asyncio.sleep(0.2 * (attempt + 1))
            await asyncio.wait_for(client.handshaken, 30)
            if client.kind == "ws":
                client.subscribe(client.path)

        await asyncio.gather(*(connect(c) for c in group))
        clients.extend(group)
    return clients


async def run(n: int, seconds: float, n_views: int, alert_pct: float = 1.0, kinds: str = "mixed",
              deflate: bool = False) -> dict[str, object]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if n + 200 > hard:
        raise SystemExit(f"need {n + 200} open files, the hard limit is {hard}")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    data_dir = tempfile.mkdtemp(prefix="bench-streams-")
    env = {**os.environ, "PORT": str(port), "HOST": "127.0.0.1", "REFRESH_INTERVAL_S": "1", "LOG_LEVEL": "warning",
           "MAX_CONNECTIONS": str(n + 100), "DATA_DIR": data_dir, "ALERT_PRICE_PCT": str(alert_pct),
           # one load generator is one client address: no per-client limits
           "CLIENT_RATE_LIMIT": "0", "MAX_VIEWS_PER_CLIENT": "1000000"}
    server = subprocess.Popen([sys.executable, "-m", "app", "--demo"], cwd=ROOT, env=env)
    stats = Stats()
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2).status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("the server did not become ready")
            await asyncio.sleep(0.2)
        await asyncio.sleep(5)  # the universe fills in; the first versions are the big ones
        idle_cpu0, idle_t0 = proc_cpu_s(server.pid), time.monotonic()
        await asyncio.sleep(10)  # the server's own work (ingest, the simulated market) with no subscriber
        idle_rate = (proc_cpu_s(server.pid) - idle_cpu0) / (time.monotonic() - idle_t0)
        rss_before = proc_rss_kb(server.pid)
        t0 = time.monotonic()
        clients = await open_clients(n, port, stats, VIEWS[:n_views], kinds, deflate)
        connect_s = time.monotonic() - t0
        await asyncio.sleep(5)  # a few versions: queues, buffers and channels in use
        rss_after = proc_rss_kb(server.pid)
        before = metrics(port)
        cpu0 = proc_cpu_s(server.pid)
        messages0 = sum(c.messages for c in clients)
        stats.measuring = True
        print(f"measuring (server pid {server.pid})", file=sys.stderr, flush=True)
        window_start = time.time()
        await asyncio.sleep(seconds)
        stats.measuring = False
        window_end = time.time()
        await asyncio.sleep(2)  # the last version's frames arrive
        cpu = proc_cpu_s(server.pid) - cpu0
        messages = sum(c.messages for c in clients) - messages0
        after = metrics(port)
        # Delta arrival spread, per version, over the clients that are subscribed to a view it changed.
        by_seq: dict[int, list[float]] = {}
        for client in clients:
            for seq, at in client.deltas.items():
                if window_start <= at <= window_end + 2:
                    by_seq.setdefault(seq, []).append(at)
        spreads, latencies = [], []
        for seq, times in by_seq.items():
            first = min(times)
            spreads.extend(t - first for t in times)
            if seq in stats.commit_at:
                latencies.extend(t - stats.commit_at[seq] for t in times)
        alive = sum(1 for c in clients if not c.closed)
        result = {
            "subscribers": n,
            "kinds": kinds + (" (deflate offered)" if deflate else ""),
            "deflate_agreed": stats.deflate_agreed,
            "held": alive,
            "bytes_per_client_per_min": round(stats.bytes / max(alive, 1) / seconds * 60),
            "connect_s": round(connect_s, 1),
            "versions": len(by_seq),
            "messages": messages,
            "commit_to_delta_ms": {q: round(pct(latencies, v) * 1000, 1)
                                   for q, v in (("p50", 0.5), ("p99", 0.99), ("max", 1.0))},
            "deltas_timed": len(latencies),
            "commit_to_alert_ms": {q: round(pct(stats.alert_latency, v) * 1000, 1)
                                   for q, v in (("p50", 0.5), ("p99", 0.99), ("max", 1.0))},
            "alerts_timed": len(stats.alert_latency),
            "delta_spread_ms": {q: round(pct(spreads, v) * 1000, 1) for q, v in (("p50", 0.5), ("p99", 0.99),
                                                                                 ("max", 1.0))},
            "server_delivery": histogram_quantiles(before, after, "stream_delivery_seconds"),
            "server_fanout": histogram_quantiles(before, after, "stream_fanout_seconds"),
            "rss_per_connection_kb": round((rss_after - rss_before) / n, 1),
            "rss_mb": round(rss_after / 1024, 1),
            "cpu_us_per_message": round(cpu / max(messages, 1) * 1e6, 1),
            "net_cpu_us_per_message": round(max(0.0, cpu - idle_rate * seconds) / max(messages, 1) * 1e6, 1),
            "idle_server_cpu_pct": round(idle_rate * 100, 1),
            "server_cpu_pct": round(cpu / seconds * 100, 1),
            "dropped_slow": after.get('stream_dropped_slow_clients_total{kind="sse"}', 0)
            + after.get('stream_dropped_slow_clients_total{kind="ws"}', 0),
        }
        for client in clients:
            if client.transport is not None:
                client.transport.close()
        return result
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(data_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("subscribers", type=int, nargs="?", default=1000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--alert-pct", type=float, default=1.0,
                        help="ALERT_PRICE_PCT for the server: small enough that most versions raise alerts")
    parser.add_argument("--kind", choices=("mixed", "ws", "sse"), default="mixed",
                        help="mixed: half SSE, half WebSocket; ws or sse: all of that kind")
    parser.add_argument("--deflate", action="store_true", help="WebSocket clients offer permessage-deflate")
    args = parser.parse_args()
    coro = run(args.subscribers, args.seconds, args.views, args.alert_pct, args.kind, args.deflate)
    try:
        import uvloop

        result = uvloop.run(coro)
    except ImportError:
        result = asyncio.run(coro)
    for key, value in result.items():
        print(f"{key:>24}: {value}")


if __name__ == "__main__":
    main()
