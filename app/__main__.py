"""CLI: `python -m app [--demo]` serves on HOST:PORT with uvicorn."""

from __future__ import annotations

import argparse
import logging
import sys

import uvicorn

from app import edge
from app.config import ConfigError, load_settings
from app.main import create_app
from app.serving import tune_gc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app", description="Solana meme-coin market data service")
    parser.add_argument("--demo", action="store_true",
                        help="serve a simulated market on loopback instead of the live upstreams (works offline)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    settings = settings.with_(demo=args.demo)
    logging.basicConfig(level=settings.log_level.upper() if settings.log_level != "trace" else "DEBUG",
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    tune_gc()
    settings, edge_options = edge.uvicorn_options(settings)  # header limits, request timeout, fd-sized caps
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        timeout_graceful_shutdown=3,
        lifespan="on",
        ws_max_size=64 * 1024,
        **edge_options,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
