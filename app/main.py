"""create_app(settings): the routes and the lifespan. Everything stateful is built by app.runtime.open_runtime in
the lifespan and torn down with it."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route, WebSocketRoute

from app.api.cors import CorsMiddleware
from app.api.errors import EXCEPTION_HANDLERS
from app.api.hot import HotPathMiddleware
from app.api.limits import RateLimitMiddleware
from app.api.middleware import MetricsMiddleware
from app.api.rest import routes as rest_routes
from app.config import Settings, load_settings
from app.edge import Edge
from app.runtime import Options, open_runtime
from app.streams.sse import stream
from app.streams.ws import websocket_endpoint

PAGE = Path(__file__).parent / "static" / "index.html"

log = logging.getLogger("app")


def create_app(settings: Settings | None = None, options: Options | None = None, edge: Edge | None = None) -> Starlette:
    """The ASGI app. Without `settings`, they are read from the environment when the app starts; `options`
    (app.runtime.Options) is for tests and benchmarks that build a part differently; `edge` is the HTTP
    edge (app.edge) it is served behind, for /metrics."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        current = settings or load_settings()
        log.info("%s", describe(current))  # the first line says what this process serves
        async with open_runtime(current, options or Options(), edge) as runtime:
            app.state.service = runtime
            yield

    routes = [
        Route("/", page, methods=["GET"]),
        *rest_routes,
        Route("/api/stream", stream, methods=["GET"]),
        WebSocketRoute("/ws", websocket_endpoint),
    ]
    cors = Middleware(CorsMiddleware, origins=settings.cors_origins if settings is not None else None)
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers=EXCEPTION_HANDLERS,
                     middleware=[cors, Middleware(MetricsMiddleware), Middleware(RateLimitMiddleware),
                                 Middleware(HotPathMiddleware)])


async def page(request: Request) -> Response:
    """The live page: one static file, no build step."""
    return FileResponse(PAGE, media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-cache"})


def describe(settings: Settings) -> str:
    """One line: what the service is about to serve, and from what."""
    upstreams = "the simulated market (demo)" if settings.demo else ", ".join(settings.sources)
    try:
        name = f"tokenstream {version('tokenstream')}"
    except PackageNotFoundError:  # run from a checkout that was not installed
        name = "tokenstream"
    return f"{name}: serving {upstreams}; {settings.store} store; DATA_DIR {settings.data_dir}"


def __getattr__(name: str) -> Starlette:
    """`uvicorn app.main:app`: the app configured from the environment, built on first access.

    Reading the settings here, when uvicorn imports the app (before it binds or starts the lifespan), lets a
    bad setting end the process with one line instead of a traceback, and puts uvicorn's log lines in the
    service's format (app.logs).
    """
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from app import cli, logs

    settings = cli.settings_or_exit()
    logs.configure(settings.log_level, settings.log_format, cli=False)
    built = globals()["app"] = create_app(settings)
    return built
