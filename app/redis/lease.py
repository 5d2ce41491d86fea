"""The ingest leader's lease: one key with a TTL, whose value is the holder's fencing token.

`acquire` sets the key only when nobody holds it (SET NX semantics) to `<token> <instance>`. The fencing
token is an INCR'd counter that never falls behind Redis's clock in microseconds, so every term's token is
larger than every earlier one, even after Redis lost the counter (flushed or replaced). `renew` extends the
TTL by script only while the key still holds our token. Every write a leader makes (commits, folds, the
cycle summary) is a script that compares the key's token with the writer's: a stale leader is refused.

The lease also keeps a local deadline, measured on this host's monotonic clock from before the request
that set or renewed the key, a margin short of the TTL: Redis cannot have expired the key before it. A
leader that cannot renew stops leading at that deadline, before another instance could hold the lease.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from redis.asyncio import Redis

from app.redis.keys import Keys

# KEYS: leader, fence. ARGV: instance, ttl_ms. Returns {1, "<token> <instance>"} or {0, the current value}.
_ACQUIRE = """
local current = redis.call('GET', KEYS[1])
if current then return {0, current} end
local token = redis.call('INCR', KEYS[2])
local now = redis.call('TIME')
local floor = tonumber(now[1]) * 1000000 + tonumber(now[2])
if token < floor then
  token = floor
  redis.call('SET', KEYS[2], string.format('%d', token))
end
local value = string.format('%d', token) .. ' ' .. ARGV[1]
redis.call('SET', KEYS[1], value, 'PX', ARGV[2])
return {1, value}
"""

# Every fenced script starts with this check: the lease key holds the writer's token (ARGV[1]).
FENCE_CHECK = "local lease = redis.call('GET', KEYS[{key}])\n" \
    "if not lease or string.match(lease, '^%d+') ~= ARGV[1] then return {{0, 'fence', lease or ''}} end\n"

# KEYS: leader. ARGV: token, ttl_ms. 1 when renewed, 0 when the lease is no longer ours.
_RENEW = """
local lease = redis.call('GET', KEYS[1])
if lease and string.match(lease, '^%d+') == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

# KEYS: leader. ARGV: token. Gives the lease up at once (a clean shutdown), only if it is ours.
_RELEASE = """
local lease = redis.call('GET', KEYS[1])
if lease and string.match(lease, '^%d+') == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def parse_lease(value: bytes | str | None) -> tuple[int | None, str | None]:
    """(token, instance) from the lease key's value."""
    if value is None:
        return None, None
    text = value.decode() if isinstance(value, bytes) else value
    token, _, instance = text.partition(" ")
    return (int(token) if token.isdigit() else None), (instance or None)


class Lease:
    def __init__(self, redis: Redis, keys: Keys, instance: str, ttl_s: float,
                 clock: Callable[[], float] = time.monotonic):
        self.redis = redis
        self.keys = keys
        self.instance = instance
        self.ttl_s = ttl_s
        # Time between our deadline and the earliest moment Redis could expire the key: covers clock
        # rate differences and the moment between checking `held` and acting on it.
        self.margin_s = min(1.0, 0.1 * ttl_s)
        self.token: int | None = None
        self.deadline = 0.0
        self._clock = clock
        self._acquire = redis.register_script(_ACQUIRE)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    @property
    def held(self) -> bool:
        """Ours, and certainly not yet expired in Redis."""
        return self.token is not None and self._clock() < self.deadline

    def remaining(self) -> float:
        return max(0.0, self.deadline - self._clock()) if self.token is not None else 0.0

    async def acquire(self) -> str | None:
        """Try once to become leader. Returns the current holder's instance id (ours on success)."""
        started = self._clock()
        ok, value = await self._acquire(keys=[self.keys.leader, self.keys.fence],
                                        args=[self.instance, int(self.ttl_s * 1000)])
        token, holder = parse_lease(value)
        if int(ok) == 1:
            self.token, self.deadline = token, started + self.ttl_s - self.margin_s
        return holder

    async def renew(self) -> bool:
        """Extend our lease; False (and no longer held) when it passed to another or expired."""
        if self.token is None:
            return False
        started = self._clock()
        if int(await self._renew(keys=[self.keys.leader], args=[self.token, int(self.ttl_s * 1000)])) == 1:
            self.deadline = started + self.ttl_s - self.margin_s
            return True
        self.lose()
        return False

    async def release(self) -> None:
        token, self.token = self.token, None
        if token is not None:
            await self._release(keys=[self.keys.leader], args=[token])

    def lose(self) -> None:
        """Stop considering the lease ours (renewal failed past the deadline, or a write was fenced)."""
        self.token = None
        self.deadline = 0.0

    async def holder(self) -> str | None:
        """The instance that holds the lease now, if any."""
        return parse_lease(await self.redis.get(self.keys.leader))[1]
