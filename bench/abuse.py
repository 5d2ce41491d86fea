"""Clients, good and bad, for the soak (bench/soak.py) and for running one at a time against any server:

    python bench/abuse.py slowloris --url http://127.0.0.1:8000 --connections 1000 --seconds 30
    python bench/abuse.py views --url ... --connections 200 --views 20    # distinct views over WebSocket
    python bench/abuse.py queries --url ... --count 50000                  # distinct REST queries
    python bench/abuse.py walker --url ... --every 60                      # a limit=1 cursor walk, slowly
    python bench/abuse.py stalled --url ... --kind ws                      # a stream that stops reading

Raw asyncio sockets, no HTTP library (thousands of connections from one process); every function returns
(or prints, from the command line) a JSON summary of what happened.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
import struct
import sys
import time
import urllib.parse
from typing import Any

# ---------------------------------------------------------------------------------------------- helpers


def split(url: str) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80


async def connect(host: str, port: int, source: str | None = None) -> tuple[asyncio.StreamReader,
                                                                              asyncio.StreamWriter]:
    return await asyncio.open_connection(host, port, local_addr=(source, 0) if source else None)


async def http_get(host: str, port: int, path: str, source: str | None = None) -> tuple[int, bytes, float]:
    """One GET on a new connection: (status, body, seconds); status 0 when it failed or took over 10 s."""
    timeout = 10.0
    started = time.perf_counter()
    try:
        reader, writer = await asyncio.wait_for(connect(host, port, source), timeout)
    except (TimeoutError, OSError):
        return 0, b"", time.perf_counter() - started
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = await asyncio.wait_for(reader.read(), timeout)
    except (TimeoutError, OSError):
        return 0, b"", time.perf_counter() - started
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    try:
        status = int(head.split(b" ", 2)[1])
    except (IndexError, ValueError):
        status = 0
    if b"transfer-encoding: chunked" in head.lower():
        body = dechunk(body)
    return status, body, time.perf_counter() - started


def dechunk(body: bytes) -> bytes:
    out, i = bytearray(), 0
    while True:
        end = body.find(b"\r\n", i)
        if end < 0:
            return bytes(out)
        size = int(body[i:end] or b"0", 16)
        if size == 0:
            return bytes(out)
        out += body[end + 2:end + 2 + size]
        i = end + 4 + size


def ws_handshake(path: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()


def ws_text(payload: bytes, opcode: int = 0x1) -> bytes:
    """One masked client frame (text by default; 0xA for a pong)."""
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    size = len(payload)
    first = 0x80 | opcode
    head = bytes([first, 0x80 | size]) if size < 126 else bytes([first, 0x80 | 126]) + struct.pack(">H", size)
    return head + mask + masked


async def open_ws(host: str, port: int, source: str | None = None) -> tuple[asyncio.StreamReader,
                                                                             asyncio.StreamWriter]:
    reader, writer = await connect(host, port, source)
    writer.write(ws_handshake("/ws"))
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        writer.close()
        raise ConnectionError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
    return reader, writer


def ws_messages(buffer: bytearray) -> list[tuple[int, bytes]]:
    """Complete server frames at the front of `buffer` (consumed), as (opcode, payload)."""
    frames = []
    while len(buffer) >= 2:
        opcode, size, i = buffer[0] & 0x0F, buffer[1] & 0x7F, 2
        if size == 126:
            if len(buffer) < 4:
                break
            size, i = struct.unpack_from(">H", buffer, 2)[0], 4
        elif size == 127:
            if len(buffer) < 10:
                break
            size, i = struct.unpack_from(">Q", buffer, 2)[0], 10
        if len(buffer) < i + size:
            break
        frames.append((opcode, bytes(buffer[i:i + size])))
        del buffer[:i + size]
    return frames


def bump(report: dict[str, Any], key: str, by: int = 1) -> None:
    report[key] = report.get(key, 0) + by


# -------------------------------------------------------------------------------------------- attackers


async def slowloris(url: str, connections: int, seconds: float, reconnect_delay: float = 1.0,
                    trickle_s: float = 2.0, source: str | None = None) -> dict[str, Any]:
    """`connections` requests that are never finished (a header line every `trickle_s`); a connection the
    server closes is opened again after `reconnect_delay`."""
    host, port = split(url)
    report: dict[str, Any] = {"connections": connections}
    stop = time.monotonic() + seconds

    async def one() -> None:
        while time.monotonic() < stop:
            try:
                reader, writer = await connect(host, port, source)
            except OSError:
                bump(report, "connect_failed")
                await asyncio.sleep(reconnect_delay)
                continue
            bump(report, "opened")
            answer = b""
            try:
                writer.write(b"GET /api/tokens HTTP/1.1\r\nHost: x\r\n")
                while time.monotonic() < stop:
                    writer.write(b"X-Slow: 1\r\n")
                    await writer.drain()
                    try:
                        answer = await asyncio.wait_for(reader.read(256), trickle_s)
                    except TimeoutError:
                        continue
                    break
            except OSError:
                pass
            finally:
                writer.close()
            if time.monotonic() < stop:
                bump(report, "closed_by_server")
                if answer.startswith(b"HTTP/1.1 "):
                    bump(report, "answered_" + answer[9:12].decode(errors="replace"))
                await asyncio.sleep(reconnect_delay)

    tasks = []
    for _ in range(connections):
        tasks.append(asyncio.create_task(one()))
        await asyncio.sleep(0.001)
    await asyncio.gather(*tasks)
    return report


async def views(url: str, connections: int, per_connection: int, seconds: float,
                source: str | None = None, spread: bool = False) -> dict[str, Any]:
    """`connections` WebSockets each subscribing `per_connection` distinct views, held for `seconds`; with
    `spread`, each connection from its own loopback address (127.0.x.y: as many clients)."""
    host, port = split(url)
    report: dict[str, Any] = {"asked": connections * per_connection}

    async def one(n: int) -> None:
        address = f"127.0.{n // 250 + 1}.{n % 250 + 1}" if spread else source
        try:
            reader, writer = await open_ws(host, port, address)
        except (OSError, ConnectionError) as exc:
            bump(report, f"refused: {exc}"[:60])
            return
        for i in range(per_connection):
            view = {"sort": "liquidity", "min_liquidity_usd": n * per_connection + i, "limit": 50}
            writer.write(ws_text(json.dumps({"op": "subscribe", "id": f"s{i}", "view": view}).encode()))
        buffer, answered, stop = bytearray(), 0, time.monotonic() + seconds
        try:
            while time.monotonic() < stop:
                try:
                    chunk = await asyncio.wait_for(reader.read(1 << 16), max(0.01, stop - time.monotonic()))
                except TimeoutError:
                    break
                if not chunk:
                    bump(report, "closed_by_server")
                    break
                buffer += chunk
                for opcode, payload in ws_messages(buffer):
                    if opcode != 1 or answered >= per_connection:
                        continue
                    message = json.loads(payload)
                    if message["type"] == "snapshot":
                        answered += 1
                        bump(report, "subscribed")
                    elif message["type"] == "error":
                        answered += 1
                        bump(report, "error_" + message["code"])
        finally:
            writer.close()

    await asyncio.gather(*(one(n) for n in range(connections)))
    return report


async def queries(url: str, count: int, concurrency: int = 32, source: str | None = None) -> dict[str, Any]:
    """`count` distinct filtered REST queries (limit=100 pages, the largest bodies)."""
    host, port = split(url)
    report: dict[str, Any] = {"count": count}
    numbers = iter(range(count))

    async def worker() -> None:
        for n in numbers:
            status, _, _ = await http_get(host, port, f"/api/tokens?limit=100&sort=fdv&min_liquidity_usd={n}", source)
            bump(report, f"status_{status}")

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    report["seconds"] = round(time.monotonic() - started, 1)
    return report


async def walker(url: str, seconds: float, every: float, source: str | None = None) -> dict[str, Any]:
    """A `limit=1` cursor walk taking a page every `every` seconds; a new walk when its cursor expires."""
    host, port = split(url)
    report: dict[str, Any] = {"pages": 0, "walks": 1}
    stop = time.monotonic() + seconds
    cursor = None
    while time.monotonic() < stop:
        path = "/api/tokens?limit=1&sort=volume" + (f"&cursor={cursor}" if cursor else "")
        status, body, _ = await http_get(host, port, path, source)
        if status == 200:
            report["pages"] += 1
            cursor = json.loads(body)["next_cursor"]
        elif status == 410:
            bump(report, "expired")
            cursor = None
            report["walks"] += 1
        else:
            bump(report, f"status_{status}")
            cursor = None
        await asyncio.sleep(every)
    return report


async def dropped_slow(host: str, port: int, kind: str) -> float:
    """The server's count of clients of `kind` it dropped as too slow (from /metrics)."""
    _, body, _ = await http_get(host, port, "/metrics")
    for line in body.decode(errors="replace").splitlines():
        if line.startswith(f'stream_dropped_slow_clients_total{{kind="{kind}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def stalled(url: str, kind: str, limit: int = 100, source: str | None = None) -> dict[str, Any]:
    """A stream that stops reading (tiny receive buffer) until the server says (on /metrics) it dropped a
    slow client; then reads what is left: how long it took, and how the stream ended (WebSocket close
    code, or the SSE stream's last chunk)."""
    host, port = split(url)
    before = await dropped_slow(host, port, kind)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    if source:
        sock.bind((source, 0))
    await loop.sock_connect(sock, (host, port))
    started = time.monotonic()
    if kind == "sse":
        await loop.sock_sendall(sock, f"GET /api/stream?limit={limit} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    else:
        await loop.sock_sendall(sock, ws_handshake("/ws"))
        head = b""
        while b"\r\n\r\n" not in head:
            head += await loop.sock_recv(sock, 1)
        await loop.sock_sendall(sock, ws_text(json.dumps({"op": "subscribe", "id": "s",
                                                          "view": {"limit": limit}}).encode()))
    report: dict[str, Any] = {"kind": kind}
    while await dropped_slow(host, port, kind) <= before:
        if time.monotonic() - started > 120:
            report["judged"] = "never"
            sock.close()
            return report
        await asyncio.sleep(0.25)
    report["judged_after_s"] = round(time.monotonic() - started, 1)
    data = bytearray()
    report["ended"] = "eof"
    try:
        while chunk := await asyncio.wait_for(loop.sock_recv(sock, 1 << 20), 10):
            data += chunk
    except ConnectionResetError:
        report["ended"] = "reset"
    except TimeoutError:
        report["ended"] = "still open"
    report["ended_after_s"] = round(time.monotonic() - started, 1)
    if kind == "ws":
        closes = [p for op, p in ws_messages(bytearray(data)) if op == 8]
        report["close_code"] = struct.unpack(">H", closes[-1][:2])[0] if closes else None
    else:
        report["sse_end"] = data.endswith(b"\r\n0\r\n\r\n")
    sock.close()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["slowloris", "views", "queries", "walker", "stalled"])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--views", type=int, default=20)
    parser.add_argument("--count", type=int, default=50000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--every", type=float, default=60.0)
    parser.add_argument("--reconnect-delay", type=float, default=1.0)
    parser.add_argument("--kind", choices=["sse", "ws"], default="ws")
    parser.add_argument("--source", default=None, help="local address to connect from (e.g. 127.0.0.2)")
    parser.add_argument("--spread", action="store_true", help="views: each connection from its own address")
    args = parser.parse_args()
    if args.what == "slowloris":
        coro = slowloris(args.url, args.connections, args.seconds, args.reconnect_delay, source=args.source)
    elif args.what == "views":
        coro = views(args.url, args.connections, args.views, args.seconds, args.source, args.spread)
    elif args.what == "queries":
        coro = queries(args.url, args.count, source=args.source)
    elif args.what == "walker":
        coro = walker(args.url, args.seconds, args.every, args.source)
    else:
        coro = stalled(args.url, args.kind, source=args.source)
    _raise_fd_limit()
    print(json.dumps(asyncio.run(coro)), flush=True)


def _raise_fd_limit() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


if __name__ == "__main__":
    sys.exit(main())
