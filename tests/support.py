"""Shared test helpers: run the real app (or the demo market) over loopback HTTP, and wait on conditions
(never fixed sleeps)."""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import anyio
import httpx
import pytest

from app.config import Settings, load_settings
from app.demo.market import Market
from app.demo.server import RunningMarket, serve_market
from app.edge import edge_of, uvicorn_options
from app.main import create_app
from app.runtime import Options
from app.serving import serve_app

T = TypeVar("T")


def fast_settings(market, **overrides) -> Settings:
    """Settings pointed at a running demo market, with intervals short enough for tests.

    Each call gets its own empty DATA_DIR, so no test restores another's snapshot.
    """
    overrides.setdefault("data_dir", tempfile.mkdtemp(prefix="tokenstream-test-"))
    base = load_settings({
        "REFRESH_INTERVAL_S": "0.25", "DISCOVERY_INTERVAL_S": "0.5", "CACHE_TTL_S": "0",
        "RATE_LIMITS": "dexscreener=3000,geckoterminal=600,jupiter=1200", "HEARTBEAT_S": "1",
    }, dotenv=None)
    return base.with_(dexscreener_url=market.dexscreener_url, geckoterminal_url=market.geckoterminal_url,
                      jupiter_url=market.jupiter_url, **overrides)


@pytest.fixture
async def srv() -> AsyncIterator[RunningMarket]:
    """The demo market (seed 7) on loopback, not ticking, so a test reads the same figures on every call.

    A fixture for every test module (tests/conftest.py imports it)."""
    async with serve_market(Market(seed=7), tick_interval=None) as running:
        yield running


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """A plain HTTP client, for calling the market's upstream APIs as the service would."""
    async with httpx.AsyncClient(timeout=5.0) as c:
        yield c


@contextlib.asynccontextmanager
async def running_service(settings: Settings, options: Options | None = None) -> AsyncIterator[tuple[str, object]]:
    """The whole service on a loopback port behind the same HTTP edge as `python -m app`, its parts built as
    `options` say; yields (base_url, app)."""
    settings, edge_options = uvicorn_options(settings)
    app = create_app(settings, options, edge_of(edge_options))
    async with serve_app(app, **edge_options) as base_url:
        yield base_url, app


async def wait_for(check: Callable[[], Awaitable[T] | T], timeout: float = 20.0,  # noqa: ASYNC109 - polled
                   interval: float = 0.05,
                   message: str = "condition") -> T:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        result = check()
        if hasattr(result, "__await__"):
            result = await result  # type: ignore[misc]
        if result:
            return result  # type: ignore[return-value]
        last = result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message} (last: {last!r})")
        await anyio.sleep(interval)


async def get_json(client: httpx.AsyncClient, url: str, **kw) -> object:
    response = await client.get(url, **kw)
    response.raise_for_status()
    return response.json()
