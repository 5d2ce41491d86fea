"""HTTP face of the simulated market: DexScreener, GeckoTerminal and Jupiter on one loopback server.

    /dexscreener/...                 DexScreener (base URL for DEXSCREENER_URL)
    /geckoterminal/api/v2/...        GeckoTerminal (base URL for GECKOTERMINAL_URL)
    /jupiter/...                     Jupiter (base URL for JUPITER_URL)
    /_control/...                    fault switches, request counts, manual ticks (not logged)
    /img/{key}.svg                   token images, so the demo page works offline (not logged)

Every request to an upstream is logged in `market.requests[source]` as (monotonic time received,
path relative to the source's base URL plus "?query" when present, status), faulted ones included
(app.demo.gate). Each upstream's handlers are in app.demo.api_*.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Mount

from app.demo.api_dexscreener import dexscreener_app
from app.demo.api_geckoterminal import GT_MAX_PAGE, GT_PAGE_SIZE, geckoterminal_app  # noqa: F401 - for tests
from app.demo.api_jupiter import jupiter_app
from app.demo.control import control_app, image_app, request_counts  # noqa: F401 - request_counts for tests
from app.demo.gate import SourceGate
from app.demo.market import Market
from app.serving import serve_app

DS_PREFIX = "/dexscreener"
GT_PREFIX = "/geckoterminal/api/v2"
JUP_PREFIX = "/jupiter"


def create_market_app(market: Market) -> Starlette:
    """The three upstreams (plus /_control and /img) on one Starlette app."""
    return Starlette(routes=[
        Mount(DS_PREFIX, app=SourceGate(market, "dexscreener", DS_PREFIX, dexscreener_app(market))),
        Mount(GT_PREFIX, app=SourceGate(market, "geckoterminal", GT_PREFIX, geckoterminal_app(market))),
        Mount(JUP_PREFIX, app=SourceGate(market, "jupiter", JUP_PREFIX, jupiter_app(market))),
        Mount("/_control", app=control_app(market)),
        Mount("/img", app=image_app(market)),
    ])


# ----------------------------------------------------------------------------------------------------
# running it in-process
# ----------------------------------------------------------------------------------------------------
@dataclass
class RunningMarket:
    market: Market
    host: str
    port: int

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def dexscreener_url(self) -> str:
        return self.base_url + DS_PREFIX

    @property
    def geckoterminal_url(self) -> str:
        return self.base_url + GT_PREFIX

    @property
    def jupiter_url(self) -> str:
        return self.base_url + JUP_PREFIX

    @property
    def control_url(self) -> str:
        return self.base_url + "/_control"


def _quiet_http_protocol() -> type:
    """uvicorn's HTTP protocol without access logging: the market must not flood the host's access log."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as base
    except ImportError:  # pragma: no cover - httptools not installed
        from uvicorn.protocols.http.h11_impl import H11Protocol as base

    class QuietProtocol(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.access_log = False

    return QuietProtocol


@contextlib.asynccontextmanager
async def serve_market(
    market: Market,
    host: str = "127.0.0.1",
    port: int = 0,
    tick_interval: float | None = 1.0,
    *,
    local_images: bool = True,
) -> AsyncIterator[RunningMarket]:
    """Serve `market` with uvicorn in the running event loop; tick it every `tick_interval` seconds."""
    # log_config/log_level None, access_log True: uvicorn's Config would otherwise reconfigure (or silence)
    # the process-wide "uvicorn.*" loggers, which the host service's own uvicorn shares; QuietProtocol keeps
    # the market's own requests out of the access log.
    async with serve_app(create_market_app(market), host=host, port=port, lifespan="off", log_config=None,
                         log_level=None, access_log=True, http=_quiet_http_protocol()) as base_url:
        running = RunningMarket(market=market, host=host, port=int(base_url.rsplit(":", 1)[1]))
        if local_images:
            market.image_base = running.base_url + "/img"
            market.invalidate()

        ticker: asyncio.Task | None = None
        if tick_interval:
            async def tick_forever() -> None:
                while True:
                    await asyncio.sleep(tick_interval)
                    market.tick()

            ticker = asyncio.create_task(tick_forever(), name="demo-market-ticker")
        try:
            yield running
        finally:
            if ticker is not None:
                ticker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ticker
