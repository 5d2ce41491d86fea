"""create_app(settings): the routes and the lifespan. Everything stateful is built by app.runtime.open_runtime in
the lifespan and torn down with it."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route, WebSocketRoute

from app.api.hot import HotPathMiddleware
from app.api.middleware import MetricsMiddleware
from app.api.rest import routes as rest_routes
from app.config import Settings, load_settings
from app.runtime import Options, open_runtime
from app.streams.sse import stream
from app.streams.ws import websocket_endpoint

PAGE = Path(__file__).parent / "static" / "index.html"

log = logging.getLogger("app")


def create_app(settings: Settings | None = None, options: Options | None = None) -> Starlette:
    """The ASGI app. Without `settings`, they are read from the environment when the app starts; `options`
    (app.runtime.Options) is for tests and benchmarks that build a part differently."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with open_runtime(settings or load_settings(), options or Options()) as runtime:
            app.state.service = runtime
            yield

    routes = [
        Route("/", page, methods=["GET"]),
        *rest_routes,
        Route("/api/stream", stream, methods=["GET"]),
        WebSocketRoute("/ws", websocket_endpoint),
    ]
    return Starlette(routes=routes, lifespan=lifespan, middleware=[Middleware(MetricsMiddleware),
                                                                          Middleware(HotPathMiddleware)])


async def page(request: Request) -> Response:
    """The live page: one static file, no build step."""
    return FileResponse(PAGE, media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-cache"})


app = create_app()
