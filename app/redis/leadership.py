"""`Leadership` over Redis: the lease (app.redis.lease) campaigned for and renewed in one loop.

A follower tries to take the lease every `poll_s` (so a dead leader is replaced within LEADER_TTL_S plus
that); the leader renews every third of the TTL, and retries quickly when a renewal fails. Its term ends
at the lease's local deadline if no renewal got through by then: the ingest stops before the lease could
have passed to another instance. A term also ends when a renewal finds the lease gone or another's.
"""

from __future__ import annotations

import logging

import anyio
from anyio.abc import TaskStatus

from app.redis.connection import REDIS_ERRORS, RedisHealth
from app.redis.lease import Lease

log = logging.getLogger("app.redis")

RETRY_S = 0.25  # a failed renewal is retried this soon


class RedisLeadership:
    def __init__(self, lease: Lease, health: RedisHealth, poll_s: float = 1.0):
        self._lease = lease
        self._health = health
        self._poll_s = poll_s
        self._renew_every = lease.ttl_s / 3
        self._leader: str | None = None
        self._changed = anyio.Event()

    @property
    def instance(self) -> str:
        return self._lease.instance

    @property
    def token(self) -> int | None:
        return self._lease.token if self._lease.held else None

    @property
    def leader(self) -> str | None:
        if self._lease.held:
            return self.instance
        return self._leader

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        started = False
        while True:
            delay = await self._step()
            if not started:
                task_status.started()
                started = True
            await anyio.sleep(delay)

    async def _step(self) -> float:
        """Renew or campaign once; how long to sleep before the next step."""
        lease = self._lease
        before = self.token
        if lease.token is not None and not lease.held:
            # Past the deadline the term is over, even if Redis would still renew it: a new term, if any,
            # gets a new token once the old lease has lapsed.
            log.warning("leadership: no renewal within the lease: stepping down")
            lease.lose()
            self._leader = None
        try:
            if lease.token is not None and not await lease.renew():
                log.warning("leadership: lease lost to another instance")
            if lease.token is None:
                self._leader = await lease.acquire()
                if lease.token is not None:
                    log.info("leadership: %s leads (token %d)", self.instance, lease.token)
            self._health.success()
            delay = self._renew_every if lease.token is not None else self._poll_s
        except REDIS_ERRORS as exc:
            self._health.failure(exc, "leadership")
            delay = RETRY_S if lease.token is not None else self._poll_s
        if lease.token is not None and not lease.held:
            log.warning("leadership: no renewal within the lease: stepping down")
            lease.lose()
            self._leader = None
        if self.token != before:
            self._notify()
        if lease.token is not None:
            delay = min(delay, max(0.0, lease.remaining()))  # wake at the deadline at the latest
        return delay

    async def elected(self) -> int:
        """Campaigns itself too, so it works with or without `run` going."""
        while True:
            token = self.token
            if token is not None:
                return token
            delay = await self._step()
            if self.token is None:
                with anyio.move_on_after(delay):
                    await self._changed.wait()

    async def lost(self, token: int) -> None:
        while self.token == token:
            with anyio.move_on_after(self._lease.remaining() + 0.001):
                await self._changed.wait()

    async def resign(self) -> None:
        token = self._lease.token
        try:
            await self._lease.release()
        except REDIS_ERRORS as exc:
            self._health.failure(exc, "resigning")
            self._lease.lose()
        if token is not None:
            self._notify()
