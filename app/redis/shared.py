"""State every instance shares besides the versions: the cursor secret, the leader's cycle summary for
`/health`, and the ingest's per-token state so that a new leader carries on where the last one stopped.

Reads here happen in background loops; `/health` and the request path read the local copies they keep.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping

from redis.asyncio import Redis

from app.redis.changelog import hash_patch, patch_args, raise_if_refused
from app.redis.keys import Keys
from app.redis.lease import FENCE_CHECK

SCHEDULER_FIELD = "~scheduler"  # the ingest hash's field for what is not per token

# KEYS: ingest, leader. ARGV: fence, then the `patch_args` of the ingest hash: n_upserts, the (field, value)
# pairs, the fields to delete.
# Only the lease holder writes: a stale leader cannot overwrite its successor's state with older figures.
_SAVE_INGEST = FENCE_CHECK.format(key=2) + """
""" + hash_patch(key=1, count=2) + """
return {1}
"""

# KEYS: cycle, leader. ARGV: fence, summary.
_PUBLISH_CYCLE = FENCE_CHECK.format(key=2) + """
redis.call('SET', KEYS[1], ARGV[2])
return {1}
"""


class SharedState:
    def __init__(self, redis: Redis, keys: Keys):
        self.redis = redis
        self.keys = keys
        self._save_ingest = redis.register_script(_SAVE_INGEST)
        self._publish_cycle = redis.register_script(_PUBLISH_CYCLE)

    async def secret(self) -> bytes:
        """The cursor signing secret: made by the first instance that asks, read by every other."""
        await self.redis.set(self.keys.secret, secrets.token_bytes(32), nx=True)
        value = await self.redis.get(self.keys.secret)
        if not value:  # flushed between the two calls: ask again
            return await self.secret()
        return bytes(value)

    async def publish_cycle(self, fence: int, summary: bytes) -> None:
        """The leader's latest cycle summary (sources' health, SOL/USD...), as JSON, for every /health."""
        raise_if_refused(await self._publish_cycle(keys=[self.keys.cycle, self.keys.leader], args=[fence, summary]))

    async def cycle(self) -> bytes | None:
        raw = await self.redis.get(self.keys.cycle)
        return bytes(raw) if raw else None

    async def save_ingest(self, fence: int, tokens: Mapping[str, bytes], removed: Iterable[str] = (),
                          scheduler: bytes | None = None) -> None:
        """Per-token state of the tokens touched (and dropped) since the last save, and the rest."""
        fields: dict[str, bytes] = dict(tokens)
        if scheduler is not None:
            fields[SCHEDULER_FIELD] = scheduler
        args = [fence, *patch_args(fields, removed)]
        raise_if_refused(await self._save_ingest(keys=[self.keys.ingest, self.keys.leader], args=args))

    async def load_ingest(self) -> tuple[dict[str, bytes], bytes | None]:
        """(address -> token state, scheduler state) as the last leader saved them."""
        raw = await self.redis.hgetall(self.keys.ingest)
        fields = {(k.decode() if isinstance(k, bytes) else k): bytes(v) for k, v in raw.items()}
        scheduler = fields.pop(SCHEDULER_FIELD, None)
        return fields, scheduler
