"""Each upstream's request budget for the whole deployment: one sliding window in Redis.

The same interface as `app.sources.budget.SlidingWindowBudget` (`used`, `available`, `wait_time`,
async `take`), so the upstream client and the scheduler use either one unchanged. The window
is a sorted set of send times stamped by an atomic script with Redis's own clock (`TIME`), so requests
from every instance, before and after a leader change, count in one window: no upstream receives more
than `per_minute` from the deployment in any sliding 60 s. Without Redis nothing is taken: no call goes out.

Synchronous questions (`used`, `available`, `wait_time`) are answered from a local mirror of the window
that each round trip refreshes; they never wait on Redis. A take whose round trip was slow does not
count as a go-ahead: the stamp could then be older than the request it stands for by more than the
window's slack, so the request is not sent (the spent unit errs on the safe side) and the take retries.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from itertools import count
from typing import Protocol

import anyio
from redis.asyncio import Redis

from app.redis.connection import REDIS_ERRORS, RedisHealth
from app.redis.keys import Keys
from app.sources.budget import WINDOW_SLACK_S

log = logging.getLogger("app.redis")

# KEYS: the group's window. ARGV: limit, window_ms, member (empty: only look).
# Returns {1 if taken else 0, now_ms, the window's send times in ms, oldest first}.
_TAKE = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local taken = 0
if ARGV[3] ~= '' and redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window + 1000)
  taken = 1
end
local sent = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local result = {taken, now}
for i = 2, #sent, 2 do result[#result + 1] = sent[i] end
return result
"""

class RequestBudget(Protocol):
    """What the upstream client and the scheduler ask of a budget (app.sources.budget.SlidingWindowBudget
    and SharedBudget both are one)."""

    per_minute: int

    def used(self) -> int: ...

    def available(self) -> int: ...

    def wait_time(self) -> float: ...

    async def take(self, max_wait: float = float("inf")) -> bool: ...


# A take answered later than this after it was asked is not a go-ahead (see the module docstring).
MAX_ROUND_TRIP_S = WINDOW_SLACK_S / 2


class SharedBudget:
    """At most `per_minute` requests to `group` in any sliding window, counted across all instances."""

    def __init__(self, redis: Redis, keys: Keys, group: str, per_minute: int, *, instance: str = "",
                 window_s: float = 60.0, health: RedisHealth | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.group = group
        self.per_minute = per_minute
        self.window_s = window_s + WINDOW_SLACK_S
        self.health = health or RedisHealth()
        self._key = keys.budget(group)
        self._script = redis.register_script(_TAKE)
        self._clock = clock
        self._member = f"{instance or secrets.token_hex(4)}:{secrets.token_hex(2)}:"
        self._serial = count()
        self._sent: list[float] = []  # local monotonic times of the window's sends, oldest first

    # ---- answered from the mirror -------------------------------------------------------------

    def _live(self) -> list[float]:
        now = self._clock()
        while self._sent and now - self._sent[0] >= self.window_s:
            self._sent.pop(0)
        return self._sent

    def used(self) -> int:
        """Requests the deployment sent in the last window, as of the latest round trip."""
        return len(self._live())

    def available(self) -> int:
        return max(0, self.per_minute - self.used())

    def wait_time(self) -> float:
        sent = self._live()
        if len(sent) < self.per_minute:
            return 0.0
        return max(0.0, sent[len(sent) - self.per_minute] + self.window_s - self._clock())

    # ---- round trips --------------------------------------------------------------------------

    async def refresh(self) -> None:
        """Bring the mirror up to date (for `/health` and the scheduler's shares) without taking."""
        await self._round_trip("")

    async def take(self, max_wait: float = float("inf")) -> bool:
        """Wait for room and spend one request; False (nothing sent) after `max_wait` or without Redis."""
        deadline = self._clock() + max_wait
        while True:
            asked = self._clock()
            try:
                taken = await self._round_trip(f"{self._member}{next(self._serial)}")
            except REDIS_ERRORS as exc:
                self.health.failure(exc, f"budget {self.group}")
                return False
            if taken and self._clock() - asked <= MAX_ROUND_TRIP_S:
                return True
            delay = max(0.01, self.wait_time()) if not taken else 0.0
            if self._clock() + delay > deadline:
                return False
            await anyio.sleep(delay + 0.001)

    async def _round_trip(self, member: str) -> bool:
        raw = await self._script(keys=[self._key], args=[self.per_minute, int(self.window_s * 1000), member])
        answered = self._clock()
        self.health.success()
        now_ms = int(raw[1])
        self._sent = [answered - (now_ms - int(float(ms))) / 1000 for ms in raw[2:]]
        return int(raw[0]) == 1
