"""The seam through which a leader hands its working state to the next one (STORE=redis).

The store carries the versions; this carries what the ingest knows behind them (each token's pools and
figures by source, when each was refreshed), so a new leader neither re-discovers the market nor holds
records back until every source answered again. app.redis.ingest_state implements it over Redis.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from app.store.versions import Version

if TYPE_CHECKING:
    from app.ingest.scheduler import Ingest


class StateHandover(Protocol):
    async def save(self, ingest: Ingest, version: Version | None, fence: int) -> None:
        """After the leader's cycle: what changed (and now and then everything). Never raises."""
        ...

    async def load(self, ingest: Ingest) -> int:
        """Before a new leader's first cycle: the last leader's state, into `ingest`; tokens loaded."""
        ...
