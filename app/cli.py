"""The command line of `python -m app`, and the one-line way every start-up mistake ends.

A bad setting, flag or listening address stops the process with exit code 2 and ONE line on stderr that
names what to change: nobody should have to read a traceback to find a typo in `.env`.
"""

from __future__ import annotations

import argparse
import errno
import os
import socket
import sys
from collections.abc import Mapping
from typing import NoReturn

from app.config import ConfigError, Settings, load_settings

EXIT_CONFIG = 2

ENVIRONMENT = """\
environment variables (a .env file in the working directory is read too; flags win over both):
  HOST, PORT              where to listen (0.0.0.0, 8000)
  DEMO                    1: serve the simulated market, as --demo does (for platforms that only take a
                          start command)
  DEXSCREENER_URL, GECKOTERMINAL_URL, JUPITER_URL
                          upstream base URLs (the public APIs)
  JUPITER_API_KEY         sent as x-api-key; raises the Jupiter budget to the plan's limit (unset)
  SOURCES                 which upstreams to use (dexscreener,geckoterminal,jupiter)
  RATE_LIMITS             requests per upstream in any sliding 60 s, retries included
                          (dexscreener=300,geckoterminal=10,jupiter=30)
  REFRESH_INTERVAL_S      how often tracked tokens are refreshed (10)
  DISCOVERY_INTERVAL_S    how often trending and new tokens are looked for (60)
  CACHE_TTL_S             how long an upstream answer is reused (30)
  MAX_TOKENS              size of the tracked universe (2000)
  STORE, REDIS_URL        memory, or redis with REDIS_URL: several instances serving one market (memory)
  WEB_CONCURRENCY         worker processes on the one port; more than 1 needs STORE=redis (1)
  LEADER_TTL_S            with STORE=redis: the ingest leader's lease (10)
  REDIS_PREFIX            with STORE=redis: the start of every key, so deployments can share a Redis (tokenstream)
  CORS_ORIGINS            origins whose pages may read REST, SSE and WebSocket (*; comma list; empty: none)
  DATA_DIR                last snapshot and price history, for a fast restart (./data)
  ALERT_PRICE_PCT         price_move alert threshold, 5m change in percent (5)
  ALERT_VOLUME_X          volume_spike alert threshold, multiple of the average 5m volume (3)
  ALERT_MIN_VOLUME_USD    no volume_spike below this 5m volume in USD (1000)
  ALERT_MIN_LIQUIDITY_USD no alert for a token with less liquidity in USD (10000)
  HEARTBEAT_S             stream heartbeat period (15)
  MAX_CONNECTIONS         open SSE and WebSocket connections per process (10000)
  LOG_LEVEL               critical, error, warning, info, debug or trace (info)
  LOG_FORMAT              text, or json: one JSON object per line for platforms that index logs (text)
  MAX_VIEWS               distinct stream views (channels) open in one process (1000)
  MAX_VIEWS_PER_CLIENT    distinct stream views one client address may hold open (100)
  CLIENT_RATE_LIMIT       requests per second per client address (0: no limit) (50)
  CLIENT_RATE_BURST       requests a client may make at once before its rate applies (200)
  QUERY_CACHE_MB          memory for cached indexes, filtered views and pages of every held version together (64)
  REQUEST_TIMEOUT_S       time to receive a whole request (headers and body) (10)
  MAX_HEADER_BYTES        request line plus headers (16384)

docs/API.md in the repository describes the API; README.md how to deploy."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line (not a usage block)."""

    def error(self, message: str) -> NoReturn:
        fail(f"{message} (see python -m app --help)")


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m app", description="Live Solana meme-coin market data: REST, SSE and "
                      "WebSocket views over DexScreener, GeckoTerminal and Jupiter.",
                      epilog=ENVIRONMENT, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", help="where to listen (overrides HOST)")
    p.add_argument("--port", help="port to listen on (overrides PORT)")
    p.add_argument("--demo", action="store_true",
                   help="serve a simulated market on loopback instead of the live upstreams (works offline; "
                        "same as DEMO=1)")
    return p


def fail(message: str) -> NoReturn:
    """The one line, then exit: used for every start-up mistake."""
    print(f"tokenstream: {message}", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_CONFIG)


def settings_or_exit(overrides: Mapping[str, str] | None = None) -> Settings:
    """Settings from the environment (and .env), with `overrides` (flags) on top; a bad one ends the process."""
    environ = {**os.environ, **(overrides or {})}
    try:
        return load_settings(environ)
    except ConfigError as exc:
        fail(f"configuration error: {exc}")


def from_args(argv: list[str] | None = None) -> Settings:
    """`python -m app [--host H] [--port P] [--demo]` -> validated settings (flags checked like variables)."""
    args = parser().parse_args(argv)
    overrides = {name: value for name, value in (("HOST", args.host), ("PORT", args.port)) if value is not None}
    if args.demo:
        overrides["DEMO"] = "1"
    return settings_or_exit(overrides)


def check_listen(host: str, port: int) -> None:
    """Fail in one line, before anything starts, when HOST:PORT cannot be listened on (taken, not local,
    privileged). uvicorn binds right after; the moment in between is too short to matter."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        fail(f"HOST={host!r} cannot be listened on: {exc.strerror}; set HOST (or --host) to an address of this "
             "machine, e.g. 0.0.0.0 or 127.0.0.1")
    for family, kind, proto, _, address in infos[:1] if port == 0 else infos:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                fail(_bind_message(host, port, exc))


def _bind_message(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"PORT={port} is busy: another process listens on {host}:{port}; set PORT (or --port) to a free port"
    if exc.errno == errno.EACCES:
        return f"PORT={port} needs privileges here ({exc.strerror}); set PORT (or --port) to 1024 or above"
    if exc.errno == errno.EADDRNOTAVAIL:
        return (f"HOST={host!r} is not an address of this machine ({exc.strerror}); set HOST (or --host) to "
                "0.0.0.0, 127.0.0.1 or one of its addresses")
    return f"cannot listen on {host}:{port} ({exc.strerror or exc}); check HOST and PORT"
