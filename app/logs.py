"""One log format for the service's own lines and uvicorn's, under `python -m app` and `uvicorn app.main:app`.

Operators read the lines in a terminal or a platform's log viewer, and some platforms index them: so every
line carries an ISO-8601 UTC timestamp and a level, and `LOG_FORMAT=json` writes one JSON object per line.
uvicorn's loggers lose their own handlers and propagate to ours, so its lines look like the service's.
uvicorn's "Uvicorn running on ..." becomes the service's one `listening on http://HOST:PORT` line, and a port
that is already taken says what to change, in one line.
"""

from __future__ import annotations

import logging
import re
import sys
import time

import orjson

TRACE = 5  # uvicorn's level below DEBUG
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")
# uvicorn's life-cycle lines, which say nothing `python -m app` users need at `info` (kept at `debug`).
LIFECYCLE = ("Started server process", "Finished server process", "Waiting for application startup",
             "Application startup complete", "Waiting for application shutdown", "Application shutdown complete")
# Said by the service's server and again by the demo market's embedded one: once is enough.
ONCE = ("Shutting down", "Started server process [%d]", "Finished server process [%d]")
_BIND = re.compile(r"address \('?([^',]*)'?, (\d+)\)")


def iso_time(created: float) -> str:
    """2026-01-01T12:00:00.123Z: sortable, unambiguous across platforms and time zones."""
    seconds = int(created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int((created - seconds) * 1000):03d}Z"


class TextFormatter(logging.Formatter):
    """`<ISO time> <LEVEL> <logger>: <message>`, with a traceback (if any) on the following lines."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{iso_time(record.created)} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and exception, as one string)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {"time": iso_time(record.created), "level": record.levelname.lower(),
                                    "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


class UvicornLines(logging.Filter):
    """Rewrites uvicorn's start line into the service's own, makes a taken port one clear line, and (under
    `python -m app`) keeps uvicorn's life-cycle chatter for `debug`."""

    def __init__(self, cli: bool, quiet_lifecycle: bool) -> None:
        super().__init__()
        self.cli = cli
        self.quiet_lifecycle = quiet_lifecycle
        self.said: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.msg
        if isinstance(message, OSError):
            record.msg, record.args, record.name = bind_error(message, cli=self.cli), (), "app"
            return True
        if not isinstance(message, str):
            return True
        if message.startswith("Uvicorn running on ") and "://" in message:
            # "Uvicorn running on %s://%s:%d (Press CTRL+C to quit)" -> "listening on http://HOST:PORT"
            record.msg = "listening on " + message.removeprefix("Uvicorn running on ").split(" (")[0]
            record.name = "app"
            return True
        if self.quiet_lifecycle and message.startswith(LIFECYCLE):
            return False
        if message in ONCE:
            if message in self.said:
                return False
            self.said.add(message)
        return True


def bind_error(exc: OSError, cli: bool) -> str:
    """uvicorn's "[Errno 98] error while attempting to bind on address (...)" as one line saying what to change."""
    text = str(exc)
    match = _BIND.search(text)
    where = f"{match.group(1)}:{match.group(2)}" if match else "the address"
    port = match.group(2) if match else "?"
    if "in use" in text.lower():
        if cli:
            return f"PORT={port} is busy: another process listens on {where}; set PORT (or --port) to a free port"
        return f"port {port} is busy: another process listens on {where}; start uvicorn with another --port"
    fix = "set HOST (or --host), e.g. to 0.0.0.0" if cli else "check uvicorn's --host and --port"
    return f"cannot listen on {where}: {text}; {fix}"


def level_number(level: str) -> int:
    return TRACE if level == "trace" else getattr(logging, level.upper())


def operator_configured() -> bool:
    """Whether logging was set up by someone else than uvicorn's defaults (`uvicorn --log-config`, an
    embedding program): then the service leaves it alone."""
    from uvicorn.logging import AccessFormatter, DefaultFormatter

    loggers = [logging.getLogger(), *(logging.getLogger(name) for name in UVICORN_LOGGERS)]
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler.formatter, (TextFormatter, JsonFormatter)):
                continue  # ours, from an earlier call
            if logger is logging.getLogger() or not isinstance(handler.formatter, (DefaultFormatter, AccessFormatter)):
                return True
    return False


def configure(level: str = "info", fmt: str = "text", *, cli: bool = True) -> None:
    """Send every log line (the service's, uvicorn's, the libraries') to stderr in one format.

    `cli` is True under `python -m app` (hints name PORT/HOST; uvicorn's life-cycle lines only at debug) and
    False under `uvicorn app.main:app` (hints name uvicorn's flags; a logging setup of the operator's own,
    such as `--log-config`, is left as it is). Safe to call more than once.
    """
    if not cli and operator_configured():
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level_number(level))
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        # A logger uvicorn silenced (`--no-access-log`: no handler, no propagation) stays silent.
        if logger.handlers or logger.propagate or name != "uvicorn.access":
            logger.handlers = []
            logger.propagate = True
        for old in [f for f in logger.filters if isinstance(f, UvicornLines)]:
            logger.removeFilter(old)
    quiet = cli and level_number(level) > logging.DEBUG
    logging.getLogger("uvicorn.error").addFilter(UvicornLines(cli=cli, quiet_lifecycle=quiet))
    # httpx logs every upstream request (up to 100 mints in a URL) at info: kept for debug.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING if level_number(level) > logging.DEBUG else logging.DEBUG)
