"""Redis clients with short timeouts, and the Redis health every instance reports in `/health`.

A stalled Redis (SIGSTOP, a network partition) accepts connections and never answers: without a socket
timeout every caller would hang. Commands time out after `timeout_s`; nothing is retried by the client
library, because a retried commit or budget take could run twice. Callers decide what to retry.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from app.sources.values import iso

log = logging.getLogger("app.redis")

COMMAND_TIMEOUT_S = 2.0
# Errors a Redis call can end with that mean "Redis is unreachable or misbehaving", not a bug of ours.
REDIS_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)


def connect(url: str, *, timeout_s: float = COMMAND_TIMEOUT_S, name: str | None = None) -> Redis:
    """A client (a pool of connections) for `url`; raw bytes in and out."""
    return Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                          retry=Retry(NoBackoff(), 0), client_name=name, decode_responses=False)


@dataclass
class RedisHealth:
    """Whether this instance's latest Redis call worked, and its latest failure (kept after recovery)."""

    ok: bool | None = None
    last_error: tuple[str, float] | None = None
    failures: int = 0  # in a row

    def success(self) -> None:
        if self.ok is False:
            log.warning("redis: reachable again after %d failed calls", self.failures)
        self.ok = True
        self.failures = 0

    def failure(self, exc: BaseException, doing: str) -> None:
        message = f"{doing}: {type(exc).__name__}: {exc}"[:300]
        if self.ok is not False:
            log.warning("redis: %s", message)
        self.ok = False
        self.failures += 1
        self.last_error = (message, time.time())

    def as_json(self) -> dict[str, Any]:
        error = self.last_error
        return {"ok": bool(self.ok), "last_error": {"message": error[0], "at": iso(error[1])} if error else None}
