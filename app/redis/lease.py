"""The ingest leader's lease: one key with a TTL, whose value is the holder's fencing token.

`acquire` sets the key only when nobody holds it (SET NX semantics) with a token made of the instance id,
a counter INCR'd per acquisition and a random nonce, so no two leaderships share a token even after Redis
lost the counter. `renew` extends the TTL by script only while the key still holds our token. Every write a
leader makes (commits, folds) is a script that compares the key with its token: a stale leader is refused.

The lease also keeps a local deadline, measured on this host's monotonic clock from before the request
that set or renewed the key, a margin short of the TTL: Redis cannot have expired the key before it. A
leader that cannot renew stops leading at that deadline, before another instance could hold the lease.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

from redis.asyncio import Redis

from app.redis.keys import Keys

# KEYS: leader, fence. ARGV: instance, ttl_ms, nonce. Returns {1, token} or {0, current holder's token}.
_ACQUIRE = """
local current = redis.call('GET', KEYS[1])
if current then return {0, current} end
local token = ARGV[1] .. ' ' .. redis.call('INCR', KEYS[2]) .. ' ' .. ARGV[3]
redis.call('SET', KEYS[1], token, 'PX', ARGV[2])
return {1, token}
"""

# KEYS: leader. ARGV: token, ttl_ms. 1 when renewed, 0 when the lease is no longer ours.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

# KEYS: leader. ARGV: token. Gives the lease up at once (a clean shutdown), only if it is ours.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def holder_of(token: str | None) -> str | None:
    """The instance id in a fencing token."""
    return token.rsplit(" ", 2)[0] if token else None


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
        self.token: str | None = None
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
        ok, token = await self._acquire(keys=[self.keys.leader, self.keys.fence],
                                        args=[self.instance, int(self.ttl_s * 1000), secrets.token_hex(4)])
        token = token.decode() if isinstance(token, bytes) else str(token)
        if int(ok) == 1:
            self.token, self.deadline = token, started + self.ttl_s - self.margin_s
        return holder_of(token)

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
        token = await self.redis.get(self.keys.leader)
        return holder_of(token.decode() if isinstance(token, bytes) else token)
