"""Who may write: one instance at a time leads the ingest, proven by a fencing token.

Leadership is a lease with a term: each time an instance wins it, the term gets a new fencing token,
larger than every earlier one. The store checks the token on every commit (and summary), so a leader
that lost its lease (a stall, a partition) can never write over its successor, even if it does not
know yet that it lost. `Leadership` is the seam; `LocalLeadership` is the one for the memory store (one
process: the instance leads as soon as it asks). A Redis backend implements it as a lease key renewed
well inside LEADER_TTL_S, with the token from an INCR, checked by the commit script.
"""

from __future__ import annotations

import os
import secrets
import socket
from typing import Protocol

import anyio
from anyio.abc import TaskStatus


def instance_id() -> str:
    """A name for this process among the deployment's instances (for /health and the lease)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(2)}"


class Leadership(Protocol):
    @property
    def instance(self) -> str:
        """This instance's id."""
        ...

    @property
    def token(self) -> int | None:
        """The fencing token of this instance's current term, None while it does not lead."""
        ...

    @property
    def leader(self) -> str | None:
        """The leading instance's id as last seen (None: no leader known)."""
        ...

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Campaign, and renew the lease while leading, until cancelled. `task_status.started()` comes after
        the first attempt, so `token` then tells whether this instance leads from the start."""
        ...

    async def elected(self) -> int:
        """Wait until this instance leads; its term's fencing token."""
        ...

    async def lost(self, token: int) -> None:
        """Return once the term of `token` is over (lease lost, or resigned)."""
        ...

    async def resign(self) -> None:
        """Give the lease up now (shutdown), so a successor need not wait for it to lapse."""
        ...


class LocalLease:
    """The lease of one process: who holds it and the latest token granted. The memory store checks
    fencing tokens against it, as a Redis commit script checks the lease key."""

    def __init__(self) -> None:
        self.holder: str | None = None
        self.token = 0  # the latest token granted; every grant is larger than all before it
        self._changed: anyio.Event | None = None

    def acquire(self, instance: str) -> int | None:
        """The holder's token if `instance` holds the lease or it was free (then a new term), else None."""
        if self.holder is None:
            self.holder = instance
            self.token += 1
            self._notify()
        return self.token if self.holder == instance else None

    def release(self, instance: str) -> None:
        if self.holder == instance:
            self.holder = None
            self._notify()

    def valid(self, token: int | None) -> bool:
        """Whether `token` is the current term's (a holder exists and it was granted this token)."""
        return self.holder is not None and token == self.token

    async def changed(self) -> None:
        """Wait for the next grant or release."""
        if self._changed is None:
            self._changed = anyio.Event()
        await self._changed.wait()

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None


class LocalLeadership:
    """`Leadership` over a `LocalLease`: the instance leads once the lease is free (at once, alone)."""

    def __init__(self, lease: LocalLease, instance: str | None = None):
        self._lease = lease
        self._instance = instance or instance_id()

    @property
    def instance(self) -> str:
        return self._instance

    @property
    def token(self) -> int | None:
        lease = self._lease
        return lease.token if lease.holder == self._instance else None

    @property
    def leader(self) -> str | None:
        return self._lease.holder

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        self._lease.acquire(self._instance)  # nothing to renew: a local lease never lapses
        task_status.started()
        await anyio.sleep_forever()

    async def elected(self) -> int:
        while True:
            token = self._lease.acquire(self._instance)
            if token is not None:
                return token
            await self._lease.changed()

    async def lost(self, token: int) -> None:
        while self.token == token:
            await self._lease.changed()

    async def resign(self) -> None:
        self._lease.release(self._instance)
