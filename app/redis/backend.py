"""The `STORE=redis` backend: the store, the leadership fencing its writers, and the shared budgets, all
over one Redis under the deployment's key prefix. app.store.factory calls `redis_backend` once."""

from __future__ import annotations

import time
from collections.abc import Callable

from app.config import Settings
from app.redis.budget import SharedBudget
from app.redis.connection import RedisHealth
from app.redis.keys import Keys
from app.redis.leadership import RedisLeadership
from app.redis.lease import Lease
from app.store.redis import RedisStore


def poll_interval(ttl_s: float) -> float:
    """How often a follower tries the lease: a dead leader's lease is taken within LEADER_TTL_S plus this."""
    return min(1.0, ttl_s / 5)


def redis_parts(settings: Settings, instance: str, clock: Callable[[], float] = time.time
                ) -> tuple[RedisStore, RedisLeadership, Callable[[str, int], SharedBudget]]:
    assert settings.redis_url is not None  # app.config refuses STORE=redis without it
    keys = Keys(settings.redis_prefix)
    health = RedisHealth()
    store = RedisStore(settings.redis_url, keys, clock=clock, health=health)
    lease = Lease(store.redis, keys, instance, settings.leader_ttl_s)
    leadership = RedisLeadership(lease, health, poll_interval(settings.leader_ttl_s))

    def budget(group: str, per_minute: int) -> SharedBudget:
        return SharedBudget(store.redis, keys, group, per_minute, instance=instance, health=health)

    return store, leadership, budget
