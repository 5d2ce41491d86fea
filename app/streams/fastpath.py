"""Whether the stream fast path (app.streams.direct) can work on the server this process runs: said once.

The direct writers reach into uvicorn's httptools HTTP protocol and its websockets-sansio WebSocket
protocol; on uvicorn before 0.53 they are silently never used (the stalled-client and direct-path stream
tests fail there), and on another server or protocol each connection falls back to the ASGI path. That
is correct but 2-3x dearer at thousands of subscribers, so start-up logs what it found and /metrics
exports it (`stream_fast_path_available{kind}`), instead of an operator finding out from a CPU graph.
"""

from __future__ import annotations

import importlib
import logging

log = logging.getLogger("app")  # a start-up line, like the one saying what the process serves

MIN_UVICORN = (0, 53)
PROTOCOLS = {
    "sse": "uvicorn.protocols.http.httptools_impl",  # with app.edge's EdgeProtocol built on it
    "ws": "uvicorn.protocols.websockets.websockets_sansio_impl",
}


def uvicorn_version() -> tuple[int, ...]:
    try:
        import uvicorn
    except ImportError:  # pragma: no cover - a dependency
        return ()
    return tuple(int(part) for part in uvicorn.__version__.split(".")[:2] if part.isdigit())


def availability() -> dict[str, bool]:
    """Per connection kind: whether this uvicorn has the protocol the direct writer knows."""
    recent = uvicorn_version() >= MIN_UVICORN
    found: dict[str, bool] = {}
    for kind, module in PROTOCOLS.items():
        try:
            importlib.import_module(module)
        except ImportError:
            found[kind] = False
        else:
            found[kind] = recent
    return found


def report(found: dict[str, bool]) -> None:
    """One log line at start-up: on, or why not."""
    version = ".".join(map(str, uvicorn_version())) or "none"
    if all(found.values()):
        log.info("stream fast path on (uvicorn %s: httptools and websockets-sansio)", version)
    else:
        off = ", ".join(kind for kind, ok in found.items() if not ok)
        log.warning("stream fast path off for %s (uvicorn %s; it needs uvicorn >= %d.%d with httptools and "
                    "websockets-sansio): every live delta goes through the ASGI send", off, version, *MIN_UVICORN)
