"""`python -m app [--host H] [--port P] [--demo]` serves on HOST:PORT with uvicorn (`--help` lists the settings)."""

from __future__ import annotations

import sys

import uvicorn

from app import cli, edge, logs
from app.main import create_app
from app.serving import tune_gc
from app.workers import serve_workers


def main(argv: list[str] | None = None) -> int:
    settings = cli.from_args(argv)  # a bad flag or setting ends here, in one line
    logs.configure(settings.log_level, settings.log_format, cli=True)
    cli.check_listen(settings.host, settings.port)  # a taken port too, before anything starts
    if settings.web_concurrency > 1:
        return serve_workers(settings)
    tune_gc()
    settings, edge_options = edge.uvicorn_options(settings)  # header limits, request timeout, fd-sized caps
    uvicorn.run(
        create_app(settings, edge=edge.edge_of(edge_options)),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=None,  # app.logs has set up every logger, uvicorn's included
        access_log=False,
        timeout_graceful_shutdown=3,
        lifespan="on",
        ws_max_size=64 * 1024,
        **edge_options,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
