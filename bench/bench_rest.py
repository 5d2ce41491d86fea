"""REST throughput and latency against one `python -m app --demo` process.

Three queries at 64 concurrent connections, the server on core 0 and the load generator on core 1:
  cached    the default first page, repeated (the dashboard poll)
  filtered  a distinct, uncached filtered query on every request (min_liquidity_usd varies)
  deep      a deep cursor page (offset ~150 of the default view, limit 30)
The load generator is wrk when installed, else a small asyncio HTTP/1.1 keep-alive client.

    python bench/bench_rest.py [seconds]
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.service_process import DemoProcess  # noqa: E402

CONNECTIONS = 64

FILTERED_LUA = """
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", "/api/tokens?sort=liquidity&window=1h&min_liquidity_usd=" .. (counter * 7 % 100000) .. "&limit=30")
end
"""


def run_wrk(url: str, seconds: int, script: str | None = None) -> dict[str, float]:
    command = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency"]
    if script:
        command += ["-s", script]
    if shutil.which("taskset"):
        command = ["taskset", "-c", "1", *command]
    out = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    result: dict[str, float] = {}
    for line in out.splitlines():
        parts = line.split()
        if line.startswith("Requests/sec:"):
            result["rps"] = float(parts[1])
        elif parts[:1] in (["50%"], ["99%"]):
            value = parts[1]
            scale = 1e-3 if value.endswith("us") else 1e3 if value.endswith("s") and not value.endswith("ms") else 1
            result["p" + parts[0][:-1]] = float(value.rstrip("ums")) * scale
        elif "Non-2xx" in line:
            result["errors"] = float(parts[-1])
    return result


async def python_load(urls: list[str], seconds: int) -> dict[str, float]:
    """Fallback generator: keep-alive GETs over raw sockets, latency per request."""
    host, port = "127.0.0.1", int(urls[0].split(":")[2].split("/")[0])
    paths = ["/" + u.split("/", 3)[3] for u in urls]
    latencies: list[float] = []
    deadline = time.monotonic() + seconds

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        while time.monotonic() < deadline:
            path = random.choice(paths)
            started = time.perf_counter()
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length")))
            await reader.readexactly(length)
            latencies.append((time.perf_counter() - started) * 1000)
        writer.close()

    await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
    latencies.sort()
    return {"rps": len(latencies) / seconds, "p50": statistics.median(latencies),
            "p99": latencies[int(len(latencies) * 0.99)]}


def deep_cursor(url: str) -> str:
    body = httpx.get(f"{url}/api/tokens", params={"limit": "30"}).json()
    for _ in range(4):
        body = httpx.get(f"{url}/api/tokens", params={"limit": "30", "cursor": body["next_cursor"]}).json()
    return body["next_cursor"]


def main(seconds: int = 10) -> None:
    with tempfile.TemporaryDirectory() as data:
        # One load generator is one client address: no per-client rate limit for a throughput bench.
        process = DemoProcess(Path(data), REFRESH_INTERVAL_S="10", LOG_LEVEL="warning", CLIENT_RATE_LIMIT="0")
        env_taskset = shutil.which("taskset")
        process.start()
        if env_taskset:
            subprocess.run(["taskset", "-pc", "0", str(process.process.pid)], capture_output=True)
        try:
            url = process.url
            cursor = deep_cursor(url)
            results = {}
            if shutil.which("wrk"):
                with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
                    lua.write(FILTERED_LUA)
                results["cached first page"] = run_wrk(f"{url}/api/tokens", seconds)
                results["distinct filtered queries"] = run_wrk(url, seconds, lua.name)
                results["deep cursor page"] = run_wrk(f"{url}/api/tokens?limit=30&cursor={cursor}", seconds)
                os.unlink(lua.name)
                generator = "wrk -t1 -c64"
            else:
                results["cached first page"] = asyncio.run(python_load([f"{url}/api/tokens"], seconds))
                results["distinct filtered queries"] = asyncio.run(python_load(
                    [f"{url}/api/tokens?sort=liquidity&min_liquidity_usd={i}" for i in range(5000)], seconds))
                results["deep cursor page"] = asyncio.run(python_load(
                    [f"{url}/api/tokens?limit=30&cursor={cursor}"], seconds))
                generator = "python asyncio client, 64 connections"
            tokens = httpx.get(f"{url}/health").json()["tokens"]
        finally:
            process.stop()
    print(f"REST, {tokens} tokens, {generator}, {seconds}s each, {os.cpu_count()} cores")
    for name, r in results.items():
        print(f"  {name:28s} {r['rps']:9.0f} req/s   p50 {r.get('p50', 0):6.2f} ms   p99 {r.get('p99', 0):6.2f} ms"
              + (f"   non-2xx {r['errors']:.0f}" if r.get("errors") else ""))


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:2]))
