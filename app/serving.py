"""Run an ASGI app with uvicorn inside the current event loop, on a loopback port (demo market, tests)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import uvicorn


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the host process."""

    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[override]
        yield

    def _log_started_message(self, listeners: Any) -> None:
        """Silent: an embedded server (the demo market, a test's) is not where the service listens, and its
        "Uvicorn running on" line would pass for the service's own (app.logs)."""


@contextlib.asynccontextmanager
async def serve_app(app: Any, host: str = "127.0.0.1", port: int = 0, lifespan: str = "on",
                    **config: Any) -> AsyncIterator[str]:
    """Serve `app` until the block ends; yields its base URL (http://host:port)."""
    options: dict[str, Any] = {"log_level": "warning", "access_log": False, "timeout_graceful_shutdown": 1,
                               "ws_max_size": 64 * 1024}
    options.update(config)
    server = EmbeddedServer(uvicorn.Config(app, host=host, port=port, lifespan=lifespan, **options))
    task = asyncio.create_task(server.serve(), name=f"uvicorn-{host}:{port}")
    deadline = time.monotonic() + 15.0
    while not server.started:
        if task.done():
            raise RuntimeError(f"server failed to start on {host}:{port}") from task.exception()
        if time.monotonic() > deadline:
            server.should_exit = True
            task.cancel()
            raise RuntimeError(f"server did not start within 15 s on {host}:{port}")
        await asyncio.sleep(0.005)
    bound = server.servers[0].sockets[0].getsockname()
    try:
        yield f"http://{host}:{bound[1]}"
    finally:
        server.should_exit = True
        try:
            await asyncio.wait_for(task, timeout=5.0)
        except (TimeoutError, Exception):  # noqa: BLE001 - shutting down regardless
            server.force_exit = True
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def tune_gc() -> None:
    """Fewer, cheaper garbage collections for a process that keeps many long-lived records.

    Every refresh cycle allocates tens of thousands of short-lived objects; with the default
    thresholds the collector runs dozens of times per cycle and now and then walks every stored
    record (a 50 ms pause at 2,000 tokens). Objects alive at start-up are frozen out of collection.
    """
    import gc

    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def release_memory() -> None:
    """Hand memory freed inside the heap back to the system (glibc's malloc_trim; elsewhere nothing).

    Cached pages are 100-200 KB each: malloc serves them from the heap, and after they are freed the heap
    keeps the pages unless trimmed, so RSS stayed at its peak (914 MB six idle minutes after a burst of
    distinct queries). Called from a worker thread after the caches let go of enough (app.streams.hub).
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name:
        return
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)
