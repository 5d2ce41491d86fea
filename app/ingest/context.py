"""What discovery, the refresh strategies and the candles see of the ingest, and what the cycle sees of them.

They are handed the ingest (app.ingest.scheduler.Ingest) but need only this much of it: typing them with
these Protocols, not with the class, keeps them from importing the scheduler that imports them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from app.config import Settings
from app.ingest.merge import TokenState
from app.ingest.report import CycleReport
from app.model import PoolObservation, TokenInfo
from app.sources.client import UpstreamClient

Request = tuple[str, dict[str, Any]]  # an upstream call: path and query parameters


class IngestContext(Protocol):
    """The tracked tokens, the upstream clients and the calls that feed the one from the other."""

    @property
    def settings(self) -> Settings: ...

    @property
    def clients(self) -> dict[str, UpstreamClient]: ...

    @property
    def tokens(self) -> dict[str, TokenState]: ...

    @property
    def last_refreshed(self) -> dict[str, dict[str, float]]: ...

    @property
    def sol_quotes(self) -> dict[str, float]: ...

    def clock(self) -> float: ...

    async def call(self, source: str, request: Request, parse: Callable[[Any], Any],
                   max_wait: float | None = None, fresh: bool = False) -> Any: ...

    def discovery_allows(self, source: str) -> bool: ...

    def track(self, mints: Iterable[str]) -> list[TokenState]: ...

    def take_pools(self, source: str, pools: Iterable[PoolObservation], now: float) -> None: ...

    def take_infos(self, infos: Iterable[TokenInfo], now: float, replace_stats: bool) -> None: ...

    def known_pools(self, source: str) -> dict[str, dict[str, float]]: ...

    def mark_dirty(self, address: str) -> None: ...

    def priority(self, source: str, candidates: Iterable[TokenState] | None = None) -> list[str]: ...


class Refresh(Protocol):
    """One upstream's refresh strategy (app.ingest.refresh_*), as the cycle drives it."""

    def probe_request(self) -> Request:
        """One small request that shows whether the upstream answers again."""
        ...

    def read_probe(self, payload: object) -> float | None:
        """The probe's answer: SOL/USD (None when it has none)."""
        ...

    async def run(self, report: CycleReport, calls: int) -> int:
        """Spend up to `calls` requests; returns how many were made."""
        ...

    def forget(self, mint: str) -> None:
        """What the strategy keeps about a token no longer tracked (trimmed past MAX_TOKENS), dropped."""
        ...
