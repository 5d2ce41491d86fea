"""The ingest loop: spend each upstream's budget where it matters, then commit one version.

Each cycle (every REFRESH_INTERVAL_S): one cheap probe to an upstream whose circuit is half open;
discovery when due (app.ingest.discovery); each source's refresh of the most active, most stale tokens
(app.ingest.refresh_*, one strategy per upstream) and daily candles (app.ingest.candles), each from its
share of the budget (app.ingest.allowance); the cycle's SOL/USD quote, adopted as the rate only when it moved more
than 0.1% (app.ingest.figures; a new rate re-merges every tracked token); the tokens touched merged and
committed as one version, and one info line saying what the cycle did. After each commit the history is
sampled when due and the snapshot saved now and then, so a restart serves the last records at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import anyio

from app.alerts import AlertDetector
from app.config import Settings
from app.history import History, SnapshotStore
from app.ingest import discovery
from app.ingest.allowance import Budget, budget
from app.ingest.candles import SevenDay
from app.ingest.context import Refresh
from app.ingest.continuity import Continuity
from app.ingest.figures import rate_to_adopt, with_rate
from app.ingest.handover import StateHandover
from app.ingest.leader import changeset, cycle_summary
from app.ingest.merge import TokenState, merge
from app.ingest.refresh_dexscreener import DexScreenerRefresh
from app.ingest.refresh_geckoterminal import GeckoTerminalRefresh
from app.ingest.refresh_jupiter import JupiterRefresh
from app.ingest.report import CycleReport
from app.ingest.tracking import Tracking
from app.model import Record
from app.sources.client import UpstreamClient, UpstreamError, describe
from app.sources.values import UpstreamFormatError, iso
from app.store.base import CommitRejected, FencingError, Store, Version

log = logging.getLogger("app.ingest")

# Preference for the cycle's SOL/USD price when several upstreams gave one.
SOL_PREFERENCE = ("jupiter", "dexscreener", "geckoterminal")
# Discovery never keeps more than this share of an upstream's budget (a very short DISCOVERY_INTERVAL_S
# skips some of its requests instead of starving refresh).
DISCOVERY_MAX_SHARE = 0.4
# A restored token keeps its saved record until it has pools again or every source has refreshed it,
# or at the latest this long after the restart.
RESTORED_HOLD_S = 300.0


class Ingest(Continuity, Tracking):
    """Owns the tracked universe (`tokens`; app.ingest.tracking) and feeds the store. One per running
    ingest (the leader)."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        clients: Mapping[str, UpstreamClient],
        clock: Callable[[], float] = time.time,
        on_cycle: Callable[[CycleReport], None] | None = None,
        *,
        history: History | None = None,
        snapshots: SnapshotStore | None = None,
        watched: Callable[[], Iterable[str]] | None = None,
        handover: StateHandover | None = None,
    ):
        self.settings = settings
        self.store = store
        self.clients = dict(clients)
        self.tokens: dict[str, TokenState] = {}
        self.sol_usd: float | None = None  # the adopted SOL/USD rate: every record's *_sol figures use it
        self.sol_usd_at: float | None = None  # when it was adopted
        self.last_discovery: float | None = None
        self.last_refreshed: dict[str, dict[str, float]] = {source: {} for source in clients}
        self.sol_quotes: dict[str, float] = {}  # this cycle's SOL/USD price by source
        self.cycles = 0
        self._clock = clock
        self._on_cycle = on_cycle
        self._discovery_round = 0
        self._dirty: set[str] = set()
        self._sent: dict[str, int] = {}  # each client's request count when the cycle began
        # pools each source has reported: source -> mint -> pool address -> last seen
        self._known: dict[str, dict[str, dict[str, float]]] = {source: {} for source in clients}
        self.strategies: dict[str, Refresh] = {"dexscreener": DexScreenerRefresh(self),
                                               "geckoterminal": GeckoTerminalRefresh(self),
                                               "jupiter": JupiterRefresh(self)}
        self.budgets = {source: self._budget(source) for source in clients}
        self.shares = {source: b.shares for source, b in self.budgets.items()}
        # 7d figures
        self.history = history
        self.snapshots = snapshots
        self.seven_day = SevenDay(self, history, watched)  # watched: which tokens live views show (the hub's)
        if "geckoterminal" in self.budgets:
            self.seven_day.allowance = self.budgets["geckoterminal"].candles
        # snapshots and restart
        self._snapshot_tag: str | None = None
        self._restored_success: float | None = None  # when the restored snapshot's data was last refreshed
        self._snapshot_at = clock()
        self._restored: dict[str, float] = {}  # address -> restored at, until refreshed
        # writing (app.ingest.leader): the fencing token while this instance leads, and what it publishes
        self.fence: int | None = None
        self.handover = handover  # STORE=redis: the working state a successor takes over
        self._epoch_written: str | None = None  # the epoch this ingest last wrote to or adopted
        self.instance = ""
        self.stale = False  # serving a snapshot restored from disk, not yet refreshed
        self.alerts = AlertDetector(settings.alert_price_pct, settings.alert_volume_x,
                                    settings.alert_min_volume_usd, settings.alert_min_liquidity_usd)

    def _budget(self, source: str) -> Budget:
        limit, settings = self.settings.rate_limits[source], self.settings
        wanted = discovery.calls_per_minute(source, settings.discovery_interval_s, settings.refresh_interval_s)
        return budget(limit, min(wanted, DISCOVERY_MAX_SHARE * limit), len(discovery.plan(source, 0)),
                      settings.refresh_interval_s, candles=source == "geckoterminal")

    def clock(self) -> float:
        return self._clock()

    # ---- the loop -------------------------------------------------------------------------------

    async def cycle(self) -> CycleReport:
        now = self._clock()
        report = CycleReport(started_at=now)
        perf = time.perf_counter()
        self._sent = sent = {source: client.sent for source, client in self.clients.items()}
        self.sol_quotes = {}
        await self._each_source(self._probe, report)
        due = self.last_discovery is None or now - self.last_discovery >= self.settings.discovery_interval_s
        if due:
            self.last_discovery = now
            before = len(self.tokens)
            await self._each_source(self._discover, report)
            self._discovery_round += 1
            report.discovered = len(self.tokens) - before
        await self._each_source(self._refresh, report)
        if self.sol_usd is None and not self.sol_quotes:
            await self._ask_sol_quote(report)
        if self.sol_quotes:
            source = next(s for s in SOL_PREFERENCE if s in self.sol_quotes)
            report.sol_usd = self.take_sol_quote(self.sol_quotes[source], now)
        await self.seven_day.update(now)
        version = await self._commit(now)
        report.seq = version.seq if version is not None else None
        if self.handover is not None and self.fence is not None:
            await self.handover.save(self, version, self.fence)
        await self._persist(now)
        report.duration_s = time.perf_counter() - perf
        report.calls = {source: client.sent - sent[source] for source, client in self.clients.items()}
        self.cycles += 1
        log.info("cycle %d: %s", self.cycles, report.summary(len(self.tokens)))
        for error in report.errors:
            log.debug("cycle %d: %s", self.cycles, error)
        if self._on_cycle is not None:
            self._on_cycle(report)
        return report

    async def _each_source(self, step: Callable[[str, CycleReport], Awaitable[None]], report: CycleReport) -> None:
        async def guarded(source: str) -> None:
            try:
                await step(source, report)
            except UpstreamError as exc:
                report.errors.append(str(exc))
            except Exception as exc:  # noqa: BLE001 - one source's bug must not stop the others
                log.exception("%s step failed", step.__name__)
                report.errors.append(f"{source}: {exc!r}")

        async with anyio.create_task_group() as group:
            for source in self.clients:
                group.start_soon(guarded, source)

    def take_sol_quote(self, quote: float, now: float) -> float | None:
        """The cycle's SOL/USD quote: adopted as the rate when it differs from the adopted one by more than
        0.1% (CONTRACT §2); else the adopted rate stays. Returns the newly adopted rate, or None."""
        rate = rate_to_adopt(self.sol_usd, quote)
        if rate is not None:
            self.sol_usd, self.sol_usd_at = rate, now
        return rate

    # ---- calls, with shape errors counted --------------------------------------------------------

    async def call(self, source: str, request: tuple[str, dict[str, Any]], parse: Callable[[Any], Any],
                   max_wait: float | None = None, fresh: bool = False) -> Any:
        """One upstream call, parsed. A body of the wrong shape counts as that source's failure (and is
        not reused from the cache); malformed items skipped by the parser are counted for /health."""
        path, params = request
        client = self.clients[source]
        wait = self._max_wait() if max_wait is None else max_wait
        payload = await client.get_json(path, params, max_wait=wait, fresh=fresh)
        try:
            parsed = parse(payload)
        except UpstreamFormatError as exc:
            client.record_format_error(exc, path, params)
            raise UpstreamError(source, f"unexpected shape on {describe(path)}: {exc}") from exc
        # A parse may return (items, something read alongside them), e.g. pools and a SOL price.
        skipped = getattr(parsed[0] if isinstance(parsed, tuple) else parsed, "skipped", 0)
        if skipped:
            client.health.skipped_items += skipped
        return parsed

    def _max_wait(self) -> float:
        return max(1.0, self.settings.refresh_interval_s * 0.8)

    # ---- probe, discovery, refresh ------------------------------------------------------------------

    async def _probe(self, source: str, report: CycleReport) -> None:
        """A half-open circuit is tested with one small request (never from the cache), which also reads
        SOL/USD; the refresh that follows goes out only if the circuit closed."""
        if self.clients[source].circuit != "half_open":
            return
        strategy = self.strategies[source]
        try:
            price = await self.call(source, strategy.probe_request(), strategy.read_probe, fresh=True)
        except UpstreamError as exc:
            report.errors.append(str(exc))
            report.probes[source] = False
            return
        report.probes[source] = True
        if price:
            self.sol_quotes[source] = price

    async def _ask_sol_quote(self, report: CycleReport) -> None:
        """No SOL/USD rate yet (a first start) and none came with this cycle's answers: ask for one with
        a source's probe request, so the first version already has its `*_sol` figures. DexScreener first:
        it is not paced and has the largest budget; GeckoTerminal, with 10 calls a minute, last."""
        for source in ("dexscreener", "jupiter", "geckoterminal"):
            if source not in self.clients or self.clients[source].circuit != "closed":
                continue
            strategy = self.strategies[source]
            try:
                price = await self.call(source, strategy.probe_request(), strategy.read_probe)
            except UpstreamError as exc:
                report.errors.append(str(exc))
                continue
            if price:
                self.sol_quotes[source] = price
                return

    async def _discover(self, source: str, report: CycleReport) -> None:
        if self.clients[source].circuit != "closed":
            return  # only the probe tests an upstream that failed
        await discovery.discover(self, source, report, self._discovery_round)

    def discovery_allows(self, source: str) -> bool:
        """Whether discovery's share has room for one more request now (spending it if so)."""
        allowance = self.budgets[source].discovery
        if allowance.available(self._clock()) < 1:
            return False
        allowance.spend(1)
        return True

    async def _refresh(self, source: str, report: CycleReport) -> None:
        client = self.clients[source]
        if client.circuit != "closed":
            return  # only the cycle's probe (one small request) tests an upstream that failed
        allowance = self.budgets[source].refresh
        calls = min(allowance.available(self._clock()), client.calls_affordable())
        if client.pacer is not None:  # paced calls (discovery's included) must fit in the cycle, or its
            fit = max(1, int(0.8 * self.settings.refresh_interval_s / client.pacer.spacing_s))  # commit waits
            calls = min(calls, fit - (client.sent - self._sent.get(source, client.sent)))
        if calls >= 1:
            allowance.spend(await self.strategies[source].run(report, calls))
        if source == "geckoterminal":
            await self.seven_day.fetch(report)

    # ---- merge and commit ----------------------------------------------------------------------

    def merge_dirty(self, now: float) -> tuple[dict[str, Record], list[str]]:
        """Records for the tokens touched this cycle, and the addresses dropped to respect MAX_TOKENS.

        When the adopted SOL/USD rate is not the latest version's, every record changes: every tracked
        token is merged again, and a record kept as it is (restored, not yet refreshed) gets its *_sol
        figures at the new rate, so every record of a version uses that version's rate."""
        removals = self._trim()
        upserts: dict[str, Record] = {}
        updated_at = iso(now)
        held: set[str] = set()
        base = self.store.latest()
        rerate = self.sol_usd is not None and self.sol_usd != base.sol_usd and bool(base.records)
        if rerate:
            self._dirty.update(self.tokens)
        for mint in self._dirty:
            state = self.tokens.get(mint)
            if state is None:
                continue
            if self._restored and mint in self._restored:
                if self._holds_restored(state, now):
                    held.add(mint)  # the saved record stays until this token's data is complete again
                    continue
                del self._restored[mint]
            state.expire(now)
            record = merge(state, self.sol_usd, now, updated_at)
            if record is not None:
                upserts[mint] = record
        self._dirty = held
        if rerate:
            gone = set(removals)
            for address, record in base.records.items():
                if address not in upserts and address not in gone:
                    upserts[address] = with_rate(record, self.sol_usd, updated_at)
        return upserts, removals

    def _holds_restored(self, state: TokenState, now: float) -> bool:
        """Whether a token restored from the snapshot should keep its saved record for now."""
        if state.pools or now - self._restored[state.address] > RESTORED_HOLD_S:
            return False
        return not all(state.address in self.last_refreshed.get(source, {}) for source in self.clients)

    async def _commit(self, now: float) -> Version | None:
        """Commit what changed as one version (fenced: only the leader writes), then publish the cycle's
        summary for /health. A rejected commit leaves the records dirty for whoever writes next."""
        if self.store.latest().epoch != self._epoch_written:
            # Another history than the one this ingest last wrote to or adopted (a new one: Redis was
            # flushed or replaced): its next version holds every record the ingest knows, not a cycle's.
            self._epoch_written = self.store.latest().epoch
            self._dirty.update(self.tokens)
        upserts, removals = self.merge_dirty(now)
        base = self.store.latest()
        changes = changeset(base, upserts, removals, committed_at=self._clock(), detector=self.alerts,
                            sol_usd=self.sol_usd if self.sol_usd is not None else base.sol_usd)
        version = None
        if changes is not None:
            try:
                version = await self.store.commit(changes, self._token())
            except CommitRejected:
                self._dirty.update(upserts)
                raise
            self.stale = False  # fresh data committed: no longer only the restored snapshot
        await self.publish_summary()
        return version

    def _token(self) -> int:
        if self.fence is None:
            raise FencingError("this instance does not lead the ingest: it may not write")
        return self.fence

    async def publish_summary(self) -> None:
        summary = cycle_summary(self.instance, self.clients, self.sol_usd, self.stale, self._clock(),
                                self._restored_success)
        await self.store.publish_summary(summary, self._token())
