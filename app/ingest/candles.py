"""7d figures: daily candles (GeckoTerminal OHLCV) for the most-watched tokens, the service's own history
for the rest.

Candles cost one GeckoTerminal call per token, from a guaranteed share of its budget (app.ingest.allowance:
3 calls a minute at the default 10/min, which discovery and refresh cannot take), so a token shown in a
live view gets its figures within a couple of minutes: tokens in live views first (most watched first),
then the most active, each at most hourly. The candles are asked for the token by mint
(`token=<mint>`), in its main pool among those GeckoTerminal knows (a pool it may orient either way).
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable, Iterable
from typing import Any

from app.history import History
from app.ingest.allowance import Allowance
from app.ingest.context import IngestContext
from app.ingest.merge import main_pool_of
from app.ingest.report import CycleReport
from app.sources import geckoterminal
from app.sources.client import UpstreamError

log = logging.getLogger("app.ingest")

SOURCE = "geckoterminal"
# Each token's candles at most this often, for this many of the most-watched tokens; figures older than
# CANDLE_TTL_S are dropped (the token fell out of the top); a failed call is retried after CANDLE_RETRY_S.
CANDLE_EVERY_S = 3600.0
CANDLE_TOP = 300
CANDLE_TTL_S = 3 * 3600.0
CANDLE_RETRY_S = 300.0

Figures = dict[str, float | None]


class SevenDay:
    """Candle figures per token, when each token's candles are due, and the history's 7d figures."""

    def __init__(self, ingest: IngestContext, history: History | None, watched: Callable[[], Iterable[str]] | None):
        self.ingest = ingest
        self.history = history
        self.watched = watched
        self.candles: dict[str, tuple[float, Figures | None]] = {}  # address -> (fetched at, figures)
        self.next_at: dict[str, float] = {}  # when a token's candles may be asked for again
        self.history_7d: dict[str, Figures] = {}
        self.history_due = history is not None
        self.allowance: Allowance | None = None  # set by the ingest from GeckoTerminal's candle share

    def forget(self, address: str) -> None:
        for table in (self.candles, self.next_at, self.history_7d):
            table.pop(address, None)

    # ---- candles ------------------------------------------------------------------------------------

    async def fetch(self, report: CycleReport) -> None:
        """The candle calls this cycle's share allows, each for the next token due."""
        ingest = self.ingest
        client = ingest.clients.get(SOURCE)
        if client is None or self.allowance is None:
            return
        now = ingest.clock()
        calls = min(self.allowance.available(now), client.calls_affordable())
        for _ in range(calls):
            address = self.next_token(now)
            if address is None:
                return
            self.allowance.spend(1)
            report.candles += 1
            if not await self._fetch_one(address, report, now):
                return

    async def _fetch_one(self, address: str, report: CycleReport, now: float) -> bool:
        pool = self.pool_of(address)
        try:
            request = geckoterminal.ohlcv_request(pool or "", address)
        except ValueError:  # a pool or mint GeckoTerminal can't be asked about: try again in an hour
            self.next_at[address] = now + CANDLE_EVERY_S
            return True
        try:
            # max_wait=0: one attempt, no retry, no waiting for budget (a retry would spend another's share).
            candles = await self.ingest.call(SOURCE, request, geckoterminal.parse_ohlcv, max_wait=0.0)
        except UpstreamError as exc:
            report.errors.append(str(exc))
            self.next_at[address] = now + CANDLE_RETRY_S
            return exc.counted
        if self.history is not None:
            self.history.remember_candles(address, candles, now)  # the token's chart, where history is short
        stats = geckoterminal.seven_day(candles, now)
        figures = {"volume_usd": stats.volume_usd, "price_change": stats.price_change} if stats is not None else None
        self.candles[address] = (now, figures)
        self.next_at[address] = now + CANDLE_EVERY_S
        self.apply(address, now)
        return True

    def pool_of(self, address: str) -> str | None:
        """The token's main pool (CONTRACT §2) among the pools GeckoTerminal has reported for it."""
        state = self.ingest.tokens.get(address)
        known = self.ingest.known_pools(SOURCE).get(address)
        if state is None or not known:
            return None
        pool = main_pool_of([state.pools[a] for a in known if a in state.pools])
        return pool.pool_address if pool is not None else None

    def next_token(self, now: float) -> str | None:
        """Tokens shown in live views first (most watched first), then the most active; the first whose
        candles are due, among tokens with a pool GeckoTerminal knows."""
        tokens = self.ingest.tokens
        known = self.ingest.known_pools(SOURCE)
        order: list[str] = []
        seen: set[str] = set()
        watched: list[str] = []
        if self.watched is not None:
            try:
                watched = list(self.watched())
            except Exception:  # noqa: BLE001 - a broken hook must not stop the candles
                log.exception("watched() failed")
        for address in watched:
            if address in tokens and known.get(address) and address not in seen:
                order.append(address)
                seen.add(address)
        if len(order) < CANDLE_TOP:
            active = heapq.nlargest(CANDLE_TOP - len(order),
                                    (s for a, s in tokens.items() if known.get(a) and a not in seen),
                                    key=lambda s: (s.activity(), s.address))
            order.extend(s.address for s in active)
        for address in order[:CANDLE_TOP]:
            if now >= self.next_at.get(address, 0.0):
                return address
        return None

    # ---- figures --------------------------------------------------------------------------------------

    def apply(self, address: str, now: float) -> None:
        """The token's 7d figures: the candles' where fresh, the history's for what they lack."""
        state = self.ingest.tokens.get(address)
        if state is None:
            return
        candle = self.candles.get(address)
        figures = dict(candle[1]) if candle is not None and candle[1] is not None else None
        own = self.history_7d.get(address)
        if own is not None:
            figures = {key: (figures or {}).get(key) if (figures or {}).get(key) is not None else own.get(key)
                       for key in ("volume_usd", "price_change")}
        if state.seven_day != figures:
            state.seven_day = figures
            self.ingest.mark_dirty(address)

    async def update(self, now: float) -> None:
        """Drop candle figures past their TTL; after a new history sample, derive every token's 7d."""
        touched = [a for a, (at, _) in self.candles.items() if now - at > CANDLE_TTL_S]
        for address in touched:
            del self.candles[address]
        if self.history is not None and self.history_due:
            self.history_due = False
            try:
                fresh = await self.history.seven_day_many(list(self.ingest.tokens), now)
            except Exception:  # noqa: BLE001 - history is a nicety: a failure must not stop the cycle
                log.exception("history: deriving 7d figures failed")
                fresh = self.history_7d
            touched.extend(set(self.history_7d) | set(fresh))
            self.history_7d = fresh
        for address in touched:
            self.apply(address, now)

    # ---- the snapshot ------------------------------------------------------------------------------

    def saved(self) -> dict[str, Any]:
        return {address: [at, figures] for address, (at, figures) in self.candles.items()}

    def restore(self, saved: object, now: float) -> None:
        for address, entry in (saved if isinstance(saved, dict) else {}).items():
            try:
                at, figures = float(entry[0]), entry[1]
            except (TypeError, ValueError, IndexError, KeyError):
                continue
            if address in self.ingest.tokens and now - at <= CANDLE_TTL_S:
                self.candles[address] = (at, dict(figures) if isinstance(figures, dict) else None)
                self.next_at[address] = at + CANDLE_EVERY_S
                self.apply(address, now)
