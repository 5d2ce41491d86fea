"""Bytes on the wire per stream client: `python bench/bench_wire.py [--seconds S]`.

Starts `python -m app --demo` with the default settings (REFRESH_INTERVAL_S=10, the demo market ticking
every second), waits for the first data, then holds one SSE client on the default view (`/api/stream`,
30 rows) and one on a 100-row view for S seconds (default 120) and reports, per view:

- bytes per minute received (the whole SSE stream: snapshot excluded, deltas, alerts and heartbeats),
- the snapshot's size and the mean delta size, and their ratio,
- deltas per minute.

Plain TCP and HTTP/1.1, no compression (the figure the contract's "bytes per client" bar counts).
docs/BENCHMARKS.md ("Wire") records results before and after a change.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(os.environ.get("SERVICE_ROOT", Path(__file__).resolve().parents[1]))  # measure another checkout
VIEWS = {"default (30 rows)": "", "100 rows": "limit=100"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def watch(port: int, query: str, seconds: float) -> dict[str, float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET /api/stream?{query} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n".encode())
    await writer.drain()
    buffer = b""
    while b"event: snapshot" not in buffer or b"\n\n" not in buffer.split(b"event: snapshot", 1)[1]:
        buffer += await reader.read(65536)  # until the snapshot event is whole
    head, _, rest = buffer.partition(b"event: snapshot")
    snapshot, _, after = rest.partition(b"\n\n")
    stream = bytearray(after)
    started = time.monotonic()
    while (left := seconds - (time.monotonic() - started)) > 0:
        try:
            stream += await asyncio.wait_for(reader.read(65536), timeout=left)
        except TimeoutError:
            break
    writer.close()
    # Chunked transfer framing is counted too: it is on the wire.
    events = bytes(stream).split(b"\n\n")
    deltas = [e for e in events if b"event: delta" in e]
    minutes = seconds / 60
    mean_delta = sum(map(len, deltas)) / len(deltas) if deltas else 0.0
    return {"bytes_per_min": len(stream) / minutes, "snapshot": len(snapshot), "mean_delta": mean_delta,
            "ratio": mean_delta / len(snapshot), "deltas_per_min": len(deltas) / minutes}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=120.0)
    args = parser.parse_args()
    port = free_port()
    data_dir = tempfile.mkdtemp(prefix="bench-wire-")
    env = {**os.environ, "PORT": str(port), "HOST": "127.0.0.1", "DATA_DIR": data_dir, "LOG_LEVEL": "warning",
           "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen([sys.executable, "-m", "app", "--demo"], env=env, cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1).status == 200:
                    break
            except OSError:
                await asyncio.sleep(0.2)  # polling readiness of a starting process
        results = await asyncio.gather(*(watch(port, q, args.seconds) for q in VIEWS.values()))
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(data_dir, ignore_errors=True)
    print("| view | bytes/min | snapshot | mean delta | delta/snapshot | deltas/min |")
    print("|---|---|---|---|---|---|")
    for name, r in zip(VIEWS, results):
        print(f"| {name} | {r['bytes_per_min'] / 1024:.1f} KiB | {r['snapshot'] / 1024:.1f} KiB | "
              f"{r['mean_delta'] / 1024:.2f} KiB | {r['ratio']:.2f} | {r['deltas_per_min']:.1f} |")


if __name__ == "__main__":
    asyncio.run(main())
