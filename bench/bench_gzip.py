"""REST answers plain and gzip'd: `python bench/bench_gzip.py [seconds]`.

Starts `python -m app --demo` (REFRESH_INTERVAL_S=10, as bench_rest.py), then:

1. sizes: each answer over 1 KiB fetched plain and with `Accept-Encoding: gzip` (the first page of the
   default view and of a 100-row view, one token, the latest 100 alerts, /openapi.json);
2. load: the 100-row first page, repeated (the dashboard poll, from the hot path) for `seconds` each
   plain and gzip'd, 16 keep-alive connections from an asyncio client: requests per second, latency,
   the server's CPU per request (utime+stime of its process over the run) and bytes on the wire.

docs/BENCHMARKS.md ("Wire") records the results.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.service_process import DemoProcess  # noqa: E402

CONNECTIONS = 16


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sizes(url: str) -> list[tuple[str, int, int]]:
    first = httpx.get(f"{url}/api/tokens", params={"limit": "100"}).json()
    address = first["data"][0]["token_address"]
    rows = []
    for name, path in [("first page, default view", "/api/tokens"),
                       ("first page, 100 rows", "/api/tokens?limit=100"),
                       ("one token", f"/api/tokens/{address}"),
                       ("latest 100 alerts", "/api/alerts?limit=100"),
                       ("/openapi.json", "/openapi.json")]:
        plain = httpx.get(url + path, headers={"Accept-Encoding": "identity"})
        with httpx.stream("GET", url + path, headers={"Accept-Encoding": "gzip"}) as response:
            raw = b"".join(response.iter_raw())
        encoded = response.headers.get("content-encoding") == "gzip"
        assert not encoded or len(gzip.decompress(raw)) == len(plain.content)
        rows.append((name, len(plain.content), len(raw) if encoded else len(plain.content)))
    return rows


async def load(port: int, path: str, accept: str, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    received = 0
    deadline = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal received
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        request = f"GET {path} HTTP/1.1\r\nHost: bench\r\nAccept-Encoding: {accept}\r\n\r\n".encode()
        while time.monotonic() < deadline:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head[:40]
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length")))
            await reader.readexactly(length)
            received += len(head) + length
            latencies.append((time.perf_counter() - started) * 1000)
        writer.close()

    await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
    latencies.sort()
    return {"requests": len(latencies), "rps": len(latencies) / seconds, "p50": statistics.median(latencies),
            "p99": latencies[int(len(latencies) * 0.99)], "bytes": received}


def main(seconds: float = 10.0) -> None:
    with tempfile.TemporaryDirectory() as data:
        process = DemoProcess(Path(data), REFRESH_INTERVAL_S="10", LOG_LEVEL="warning", ALERT_PRICE_PCT="1",
                              CLIENT_RATE_LIMIT="0")  # one load generator, many requests: not a client to limit
        process.start()
        try:
            time.sleep(12)  # a refresh or two: alerts to list, the universe filled in
            print("| answer | plain | gzip | ratio |\n|---|---:|---:|---:|")
            for name, plain, zipped in sizes(process.url):
                print(f"| {name} | {plain:,} B | {zipped:,} B | {zipped / plain:.2f} |")
            print(f"\n| 100-row first page, repeated, {CONNECTIONS} connections | req/s | p50 | p99 | "
                  "server CPU / request | on the wire |\n|---|---:|---:|---:|---:|---:|")
            pid = process.process.pid
            for accept in ("identity", "gzip"):
                asyncio.run(load(process.port, "/api/tokens?limit=100", accept, 1.0))  # the hot entry is made
                before = cpu_s(pid)
                result = asyncio.run(load(process.port, "/api/tokens?limit=100", accept, seconds))
                spent = cpu_s(pid) - before
                print(f"| {accept} | {result['rps']:,.0f} | {result['p50']:.2f} ms | {result['p99']:.2f} ms | "
                      f"{spent / result['requests'] * 1e6:.0f} µs | {result['bytes'] / seconds / 1e6:.1f} MB/s |")
        finally:
            process.stop()


if __name__ == "__main__":
    main(*(float(a) for a in sys.argv[1:2]))
