"""What CORS costs per request: app/api/cors.py's middleware around a trivial ASGI app, in-process.

Three requests, each with the five headers a browser or client typically sends:
  no Origin        curl, bots, servers: one header scan, no wrapped `send`
  Origin, `*`      a page on another site, CORS_ORIGINS=* (the default)
  Origin, a list   CORS_ORIGINS=https://a.example,https://dash.example.com

    python bench/bench_cors.py [iterations]
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.api.cors import CorsMiddleware  # noqa: E402

HEADERS = [(b"host", b"api.example.com"), (b"user-agent", b"bench"), (b"accept", b"*/*"),
           (b"accept-encoding", b"gzip"), (b"connection", b"keep-alive")]


async def inner(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b"{}"})


async def receive():
    return {"type": "http.request", "body": b""}


async def sink(message) -> None:
    pass


async def per_request(app, headers, n: int) -> float:
    scope = {"type": "http", "method": "GET", "path": "/api/tokens", "headers": headers}
    for _ in range(1000):
        await app(scope, receive, sink)
    started = time.perf_counter()
    for _ in range(n):
        await app(scope, receive, sink)
    return (time.perf_counter() - started) / n * 1e6


async def main(n: int) -> None:
    origin = [*HEADERS, (b"origin", b"https://dash.example.com")]
    base = await per_request(inner, HEADERS, n)
    rows = [
        ("no CORS middleware", base),
        ("no Origin", await per_request(CorsMiddleware(inner, ("*",)), HEADERS, n)),
        ("Origin, *", await per_request(CorsMiddleware(inner, ("*",)), origin, n)),
        ("Origin, a list", await per_request(CorsMiddleware(inner, ("https://a.example", "https://dash.example.com")),
                                             origin, n)),
    ]
    print(f"{'request':<22}{'µs/request':>12}{'added':>10}")
    for name, value in rows:
        print(f"{name:<22}{value:>12.2f}{value - base:>10.2f}")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000))
