"""The seam through which a leader hands its working state to the next one (STORE=redis).

The store carries the versions; this carries what the ingest knows behind them (each token's pools and
figures by source, when each was refreshed), so a new leader neither re-discovers the market nor holds
records back until every source answered again. app.redis.ingest_state implements it over Redis.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from app.ingest.merge import TokenState
from app.sources.client import UpstreamClient
from app.store.versions import Version


class WorkingState(Protocol):
    """What a handover saves and loads of the ingest (app.ingest.scheduler.Ingest): a Protocol, so this
    seam and its implementations need not import the scheduler."""

    tokens: dict[str, TokenState]
    last_refreshed: dict[str, dict[str, float]]  # source -> address -> when
    last_discovery: float | None
    sol_usd: float | None
    sol_usd_at: float | None

    @property
    def clients(self) -> Mapping[str, UpstreamClient]:
        """The sources (their names are what a handover reads)."""
        ...


class StateHandover(Protocol):
    async def save(self, ingest: WorkingState, version: Version | None, fence: int) -> None:
        """After the leader's cycle: what changed (and now and then everything). Never raises."""
        ...

    async def load(self, ingest: WorkingState) -> int:
        """Before a new leader's first cycle: the last leader's state, into `ingest`; tokens loaded."""
        ...
