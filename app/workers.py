"""`WEB_CONCURRENCY=N`: N worker processes of the service on one port, each an instance of the deployment.

uvicorn's supervisor binds the port once and hands the socket to N spawned workers (the kernel spreads
connections among them) and restarts a worker that dies. Each worker builds its own runtime from the
environment, as `uvicorn app.main:app` would, and joins the others through Redis (`STORE=redis`: the
configuration refuses several workers on the memory store). With `--demo`, this parent process serves the
one simulated market all workers read from, so the deployment sees one market, not N.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import Any

import uvicorn

from app import edge
from app.config import Settings

log = logging.getLogger("app")


class MarketThread(threading.Thread):
    """The simulated market on its own event loop in a daemon thread of the parent process."""

    def __init__(self) -> None:
        super().__init__(name="demo-market", daemon=True)
        self.urls: dict[str, str] = {}
        self.ready = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
            self.error = exc
            self.ready.set()

    async def _serve(self) -> None:
        from app.demo.market import Market
        from app.demo.server import serve_market

        async with serve_market(Market(), tick_interval=1.0) as market:
            self.urls = {"DEXSCREENER_URL": market.dexscreener_url, "GECKOTERMINAL_URL": market.geckoterminal_url,
                         "JUPITER_URL": market.jupiter_url}
            self.ready.set()
            await asyncio.Event().wait()


def start_market() -> dict[str, str]:
    """Start the one simulated market; the upstream URL variables every worker should read."""
    thread = MarketThread()
    thread.start()
    thread.ready.wait(30)
    if thread.error is not None or not thread.urls:
        raise RuntimeError(f"the simulated market did not start: {thread.error!r}")
    return thread.urls


def worker_app() -> Any:
    """The app of one worker (uvicorn calls this factory in each worker process)."""
    from app.main import create_app
    from app.serving import tune_gc

    tune_gc()
    return create_app(edge=edge.process_edge())


def serve_workers(settings: Settings) -> int:
    """Run `settings.web_concurrency` workers on HOST:PORT until stopped (the exit status). The workers read
    their settings from the environment, so what this process decided (the demo market's URLs) goes there."""
    if settings.demo:
        os.environ.update(start_market())
        os.environ["DEMO"] = "0"  # the workers use this market, not one each
    log.info("serving on %s:%d with %d worker processes", settings.host, settings.port, settings.web_concurrency)
    # The same server options as the single-process path in app.__main__, the HTTP edge's limits included.
    settings, edge_options = edge.uvicorn_options(settings)
    # Workers are spawned processes: they name the edge protocol by import path and build it from the
    # environment (a class made at run time cannot be handed to them).
    if "http" in edge_options:
        edge_options["http"] = "app.edge:EdgeProtocol"
    uvicorn.run("app.workers:worker_app", factory=True, host=settings.host, port=settings.port,
                workers=settings.web_concurrency, log_level=settings.log_level, access_log=False,
                timeout_graceful_shutdown=3, lifespan="on", ws_max_size=64 * 1024, **edge_options)
    return 0
