"""Discovery and refresh: spend each upstream's budget where it matters, then commit one version.

Each cycle (every REFRESH_INTERVAL_S): discovery when due, then every source refreshes the tracked
tokens that are most active and most stale, batched to the maximum its endpoint takes; the cycle's
SOL/USD price is read from the upstreams; the tokens touched are merged and committed as one version.

7d figures: daily candles (GeckoTerminal OHLCV, one call per pool, at most hourly per token) for the
most-watched tokens, paid only from GeckoTerminal's spare budget; elsewhere the service's own sampled
history (app.history). After each commit the history is sampled when due and the snapshot saved now
and then, so a restart serves the last records at once (`restore`).
"""

from __future__ import annotations

import heapq
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import anyio

from app.alerts import AlertDetector
from app.config import Settings
from app.history import History, SnapshotStore
from app.ingest.handover import StateHandover
from app.ingest.leader import changeset, cycle_summary
from app.ingest.merge import TokenState, main_pool, merge
from app.model import WSOL_MINT, PoolObservation, Record, TokenInfo, WindowStats
from app.sources import dexscreener, geckoterminal, jupiter
from app.sources.client import UpstreamClient, UpstreamError
from app.sources.values import UpstreamFormatError, is_mint, iso
from app.store.base import CommitRejected, FencingError, Store, Version

log = logging.getLogger("app.ingest")

# Calls each discovery round costs per source; kept out of the refresh share so discovery always fits.
DISCOVERY_CALLS = {"dexscreener": 3, "geckoterminal": 3, "jupiter": 3}
# GeckoTerminal token-level figures (a market cap or FDV fallback) are asked again after this long.
GT_TOKEN_FIGURES_MAX_AGE_S = 600.0
GT_POOLLESS_MAX_AGE_S = 60.0
# Preference for the cycle's SOL/USD price when several upstreams gave one.
SOL_PREFERENCE = ("jupiter", "dexscreener", "geckoterminal")
# Daily candles: each token's at most this often, for this many of the most-watched tokens; figures older
# than CANDLE_TTL_S are dropped (the token fell out of the top); a failed call is retried after
# CANDLE_RETRY_S.
CANDLE_EVERY_S = 3600.0
CANDLE_TOP = 300
CANDLE_TTL_S = 3 * 3600.0
CANDLE_RETRY_S = 300.0
# The last snapshot is saved at most this often (and at shutdown).
SNAPSHOT_EVERY_S = 30.0
# A restored token keeps its saved record until it has pools again or every source has refreshed it,
# or at the latest this long after the restart.
RESTORED_HOLD_S = 300.0


@dataclass
class CycleReport:
    started_at: float
    duration_s: float = 0.0
    discovered: int = 0
    refreshed: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    seq: int | None = None
    candles: int = 0  # OHLCV calls made


class Ingest:
    """Owns the tracked universe (`tokens`) and feeds the store. One per running ingest (the leader)."""

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
        self.sol_usd: float | None = None
        self.sol_usd_at: float | None = None
        self.last_discovery: float | None = None
        self.last_refreshed: dict[str, dict[str, float]] = {source: {} for source in clients}
        self.skipped_items: dict[str, int] = {source: 0 for source in clients}
        self.cycles = 0
        self._clock = clock
        self._on_cycle = on_cycle
        self._discovery_round = 0
        self._dirty: set[str] = set()
        self._sol_quotes: dict[str, float] = {}
        # 7d figures
        self.history = history
        self.snapshots = snapshots
        self._watched = watched
        self._candles: dict[str, tuple[float, dict[str, float | None] | None]] = {}  # (fetched_at, figures)
        self._candle_next: dict[str, float] = {}  # when a token's candles may be asked for again
        self._candle_credit = 0.0
        self._candle_credit_at: float | None = None
        self._history_7d: dict[str, dict[str, float | None]] = {}
        self._history_due = history is not None
        # snapshots and restart
        self._snapshot_tag: str | None = None
        self._snapshot_at = clock()
        self._restored: dict[str, float] = {}  # address -> restored at, until refreshed
        # writing (app.ingest.leader): the fencing token while this instance leads, and what it publishes
        self.fence: int | None = None
        self.handover = handover  # STORE=redis: the working state a successor takes over
        self._epoch_written: str | None = None  # the epoch this ingest last wrote to or adopted
        self.instance = ""
        self.stale = False  # serving a snapshot restored from disk, not yet refreshed
        self.alerts = AlertDetector(settings.alert_price_pct, settings.alert_volume_x)

    # ---- the loop -------------------------------------------------------------------------------

    async def cycle(self) -> CycleReport:
        now = self._clock()
        report = CycleReport(started_at=now)
        perf = time.perf_counter()
        self._sol_quotes = {}
        due = self.last_discovery is None or now - self.last_discovery >= self.settings.discovery_interval_s
        if due:
            self.last_discovery = now
            before = len(self.tokens)
            await self._each_source(self._discover, report)
            self._discovery_round += 1
            report.discovered = len(self.tokens) - before
        await self._each_source(self._refresh, report)
        if self._sol_quotes:
            source = next(s for s in SOL_PREFERENCE if s in self._sol_quotes)
            self.sol_usd, self.sol_usd_at = self._sol_quotes[source], now
        await self._update_seven_day(now)
        version = await self._commit(now)
        report.seq = version.seq if version is not None else None
        if self.handover is not None and self.fence is not None:
            await self.handover.save(self, version, self.fence)
        await self._persist(now)
        report.duration_s = time.perf_counter() - perf
        self.cycles += 1
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

    # ---- calls, with shape errors counted --------------------------------------------------------

    async def _call(self, source: str, request: tuple[str, dict[str, Any]], parse: Callable[[Any], Any],
                    max_wait: float | None = None) -> Any:
        """One upstream call, parsed. A body of the wrong shape counts as that source's failure (and is
        not reused from the cache); malformed items skipped by the parser are counted for /health."""
        path, params = request
        client = self.clients[source]
        wait = self._max_wait() if max_wait is None else max_wait
        payload = await client.get_json(path, params, max_wait=wait)
        try:
            parsed = parse(payload)
        except UpstreamFormatError as exc:
            client.record_format_error(exc, path, params)
            raise UpstreamError(source, f"unexpected shape on {path}: {exc}") from exc
        # A parse may return (items, something read alongside them), e.g. pools and a SOL price.
        skipped = getattr(parsed[0] if isinstance(parsed, tuple) else parsed, "skipped", 0)
        if skipped:
            self.skipped_items[source] = self.skipped_items.get(source, 0) + skipped
            client.health.skipped_items += skipped
        return parsed

    def _max_wait(self) -> float:
        return max(1.0, self.settings.refresh_interval_s * 0.8)

    def _refresh_calls(self, source: str) -> int:
        """This cycle's share of the source's budget, less what discovery needs, never more than is free."""
        limit = self.settings.rate_limits[source]
        per_minute = limit - DISCOVERY_CALLS[source] * math.ceil(60.0 / self.settings.discovery_interval_s)
        share = max(1, math.floor(max(per_minute, 1) * self.settings.refresh_interval_s / 60.0))
        return min(share, self.clients[source].calls_affordable())

    # ---- discovery ---------------------------------------------------------------------------

    async def _discover(self, source: str, report: CycleReport) -> None:
        now = self._clock()
        if source == "dexscreener":
            for path in dexscreener.DISCOVERY_PATHS:
                try:
                    mints = await self._call(source, (path, {}), dexscreener.parse_discovery)
                except UpstreamError as exc:
                    report.errors.append(str(exc))
                    continue
                self._track(mints, now)
        elif source == "geckoterminal":
            # Page 1 of some trending duration and of new pools every round; deeper pages rotate, so
            # every page of every list is visited over the rounds.
            r = self._discovery_round
            duration = geckoterminal.DURATIONS[r % len(geckoterminal.DURATIONS)]
            requests = [geckoterminal.trending_request(page=1, duration=duration),
                        geckoterminal.new_pools_request(page=1 if r % 2 == 0 else 2 + (r // 2) % 9),
                        geckoterminal.trending_request(page=2 + (r // len(geckoterminal.DURATIONS)) % 9,
                                                       duration=duration)]
            for request in requests:
                try:
                    pools = await self._call(source, request, lambda p: geckoterminal.parse_pools(p, observed_at=now))
                except UpstreamError as exc:
                    report.errors.append(str(exc))
                    continue
                self._take_pools(source, pools, now)
        elif source == "jupiter":
            combos = [(c, i) for i in ("1h", "24h", "5m", "6h") for c in jupiter.DISCOVERY_CATEGORIES]
            first = (self._discovery_round * 2) % len(combos)
            requests = [jupiter.top_request(*combos[first]), jupiter.top_request(*combos[first + 1]),
                        jupiter.recent_request()]
            if self._discovery_round == 0:  # the first round casts the widest net
                requests = [jupiter.top_request(c, "1h") for c in jupiter.DISCOVERY_CATEGORIES] + [
                    jupiter.recent_request()]
            for request in requests:
                try:
                    infos = await self._call(source, request, lambda p: jupiter.parse_tokens(p, observed_at=now))
                except UpstreamError as exc:
                    report.errors.append(str(exc))
                    continue
                self._take_infos(infos, now, replace_stats=True)

    def _track(self, mints: Iterable[str], now: float) -> list[TokenState]:
        states = []
        for mint in mints:
            if mint == WSOL_MINT or not is_mint(mint):
                continue
            state = self.tokens.get(mint)
            if state is None:
                state = self.tokens[mint] = TokenState(mint)
            states.append(state)
        return states

    def _take_pools(self, source: str, pools: Iterable[PoolObservation], now: float) -> None:
        for pool in pools:
            if pool.base_address == WSOL_MINT:
                continue
            for state in self._track([pool.base_address], now):
                state.add_pool(pool)
                self._dirty.add(state.address)
                self.last_refreshed.setdefault(source, {})[state.address] = now

    def _take_infos(self, infos: Iterable[TokenInfo], now: float, replace_stats: bool) -> None:
        for info in infos:
            for state in self._track([info.address], now):
                old = state.infos.get(info.source)
                if old is not None and not replace_stats:
                    info = replace(old, price_usd=info.price_usd, liquidity_usd=info.liquidity_usd,
                                   observed_at=info.observed_at,
                                   stats={**old.stats, **{w: _merge_window(old.stats.get(w), s)
                                                          for w, s in info.stats.items()}})
                state.infos[info.source] = info
                self._dirty.add(state.address)
                self.last_refreshed.setdefault(info.source, {})[state.address] = now

    # ---- refresh ----------------------------------------------------------------------------

    def _priority(self, source: str, candidates: Iterable[TokenState] | None = None) -> list[str]:
        """Most active and most stale first; never-refreshed tokens before all others."""
        now = self._clock()
        seen = self.last_refreshed.get(source, {})

        def key(state: TokenState) -> tuple[int, float]:
            last = seen.get(state.address)
            if last is None:
                return (0, 0.0)
            return (1, -(now - last) * (1.0 + math.log10(1.0 + state.activity())))

        return [s.address for s in sorted(self.tokens.values() if candidates is None else candidates, key=key)]

    async def _refresh(self, source: str, report: CycleReport) -> None:
        await {"dexscreener": self._refresh_dexscreener, "geckoterminal": self._refresh_geckoterminal,
               "jupiter": self._refresh_jupiter}[source](report)
        if source == "geckoterminal":
            await self._refresh_candles(report)

    async def _refresh_dexscreener(self, report: CycleReport) -> None:
        source = "dexscreener"
        calls = self._refresh_calls(source)
        if calls < 1:
            return
        try:  # one call for the SOL/USD price (cached for CACHE_TTL_S like any answer)
            price = await self._call(source, dexscreener.tokens_request([WSOL_MINT]), dexscreener.sol_price)
            if price:
                self._sol_quotes[source] = price
        except UpstreamError as exc:
            report.errors.append(str(exc))
        calls -= 1
        order = self._priority(source)
        for start in range(0, min(len(order), calls * dexscreener.BATCH), dexscreener.BATCH):
            batch = order[start:start + dexscreener.BATCH]
            now = self._clock()
            try:
                pools = await self._call(source, dexscreener.tokens_request(batch),
                                         lambda p, b=batch: dexscreener.parse_pairs(p, observed_at=now, wanted=set(b)))
            except UpstreamError as exc:
                report.errors.append(str(exc))
                if not exc.counted:
                    break
                continue
            by_mint: dict[str, list[PoolObservation]] = {mint: [] for mint in batch}
            for pool in pools:
                by_mint.setdefault(pool.base_address, []).append(pool)
            for mint, mint_pools in by_mint.items():
                state = self.tokens.get(mint)
                if state is None:
                    continue
                state.replace_source_pools(source, mint_pools)
                self._dirty.add(mint)
                self.last_refreshed[source][mint] = now
            report.refreshed[source] = report.refreshed.get(source, 0) + len(batch)

    async def _refresh_geckoterminal(self, report: CycleReport) -> None:
        source = "geckoterminal"
        calls = self._refresh_calls(source)
        if calls < 1:
            return
        order = self._priority(source)
        now = self._clock()
        # Token-level figures (tokens/multi) for tokens whose pools leave market cap or FDV unknown;
        # pool figures (pools/multi) for the rest. With a budget of ~1 call a cycle, they alternate.
        token_level = [m for m in order if self._needs_token_figures(self.tokens[m], now)][: geckoterminal.BATCH]
        with_pools = [m for m in order if self.tokens[m].pools]
        for call in range(calls):
            now = self._clock()
            if token_level and call == 0 and (self.cycles % 2 == 0 or not with_pools):
                batch = token_level
                if not await self._refresh_infos(source, geckoterminal.tokens_multi_request(batch),
                                                 geckoterminal.parse_tokens, batch, report):
                    return
            else:
                batch = with_pools[: geckoterminal.BATCH]
                with_pools = with_pools[geckoterminal.BATCH:]
                if not batch:
                    return
                pool_ids = [main_pool(self.tokens[m]).pool_address for m in batch]  # type: ignore[union-attr]
                try:
                    pools, price = await self._call(
                        source, geckoterminal.pools_multi_request(pool_ids),
                        lambda p: (geckoterminal.parse_pools(p, observed_at=now), geckoterminal.sol_price_from_pools(p)))
                except UpstreamError as exc:
                    report.errors.append(str(exc))
                    return
                if price:
                    self._sol_quotes[source] = price
                self._take_pools(source, pools, now)
                for mint in batch:
                    self.last_refreshed[source][mint] = now
            report.refreshed[source] = report.refreshed.get(source, 0) + len(batch)

    async def _refresh_infos(self, source: str, request: tuple[str, dict[str, Any]],
                             parse: Callable[..., Any], batch: list[str], report: CycleReport) -> bool:
        """Token-level figures for `batch` (GeckoTerminal tokens/multi, Jupiter search); False on failure.

        Every token asked counts as refreshed, known to the source or not, so a token the source does
        not know moves to the back of its queue instead of taking a place in every batch.
        """
        now = self._clock()
        try:
            infos = await self._call(source, request, lambda p: parse(p, observed_at=now))
        except UpstreamError as exc:
            report.errors.append(str(exc))
            return False
        self._take_infos(infos, now, replace_stats=True)
        seen = self.last_refreshed.setdefault(source, {})
        for mint in batch:
            if mint in self.tokens:
                seen[mint] = now
        return True

    def _needs_token_figures(self, state: TokenState, now: float) -> bool:
        """Would GeckoTerminal's token-level figures fill a gap (CONTRACT §2 fallbacks), and are ours old?

        True for a token with no pool (its figures may come from GeckoTerminal alone: asked again after a
        minute), or whose main pool and Jupiter leave market cap or FDV unknown (after ten minutes).
        """
        info = state.infos.get("geckoterminal")
        age = now - info.observed_at if info is not None else float("inf")
        main = main_pool(state)
        if main is None:
            return age >= GT_POOLLESS_MAX_AGE_S
        if age < GT_TOKEN_FIGURES_MAX_AGE_S:
            return False
        jup = state.infos.get("jupiter")
        no_mcap = main.market_cap_usd is None and (jup is None or jup.market_cap_usd is None)
        no_fdv = main.fdv_usd is None and (jup is None or jup.fdv_usd is None)
        return no_mcap or no_fdv

    async def _refresh_jupiter(self, report: CycleReport) -> None:
        source = "jupiter"
        calls = self._refresh_calls(source)
        if calls < 1:
            return
        # Tokens with no pool anywhere depend on Jupiter alone: they come first.
        order = self._priority(source)
        order.sort(key=lambda m: bool(self.tokens[m].pools))
        now = self._clock()
        price_batch = [m for m in order[: jupiter.PRICE_BATCH - 1]]
        try:
            prices, price = await self._call(
                source, jupiter.price_request([WSOL_MINT, *price_batch]),
                lambda p: (jupiter.parse_prices(p, observed_at=now), jupiter.sol_price(p)))
        except UpstreamError as exc:
            report.errors.append(str(exc))
            return
        if price:
            self._sol_quotes[source] = price
        self._take_infos([p for p in prices if p.address != WSOL_MINT], now, replace_stats=False)
        calls -= 1
        priced = set(price_batch)
        rest = [m for m in order if m not in priced] + price_batch
        for start in range(0, min(len(rest), calls * jupiter.SEARCH_BATCH), jupiter.SEARCH_BATCH):
            batch = rest[start:start + jupiter.SEARCH_BATCH]
            if not await self._refresh_infos(source, jupiter.search_request(batch), jupiter.parse_tokens, batch,
                                             report):
                return
            report.refreshed[source] = report.refreshed.get(source, 0) + len(batch)

    # ---- merge and commit ----------------------------------------------------------------------

    def merge_dirty(self, now: float) -> tuple[dict[str, Record], list[str]]:
        """Records for the tokens touched this cycle, and the addresses dropped to respect MAX_TOKENS."""
        removals = self._trim()
        upserts: dict[str, Record] = {}
        updated_at = iso(now)
        held: set[str] = set()
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
        summary = cycle_summary(self.instance, self.clients, self.sol_usd, self.stale, self._clock())
        await self.store.publish_summary(summary, self._token())

    def _trim(self) -> list[str]:
        excess = len(self.tokens) - self.settings.max_tokens
        if excess <= 0:
            return []
        # Tokens not yet refreshed have no activity to judge by: they are kept until they have data.
        least_active = sorted(self.tokens.values(),
                              key=lambda s: (s.activity() if s.has_data() else math.inf, s.address))[:excess]
        for state in least_active:
            del self.tokens[state.address]
            for seen in self.last_refreshed.values():
                seen.pop(state.address, None)
            self._dirty.discard(state.address)
            for table in (self._candles, self._candle_next, self._history_7d, self._restored):
                table.pop(state.address, None)
        return [state.address for state in least_active]

    # ---- 7d figures: daily candles, then the service's own history -------------------------------

    def candle_spare_per_min(self) -> float:
        """GeckoTerminal calls per minute that neither discovery nor a full refresh share uses."""
        source = "geckoterminal"
        interval = self.settings.refresh_interval_s
        limit = self.settings.rate_limits[source]
        per_minute = limit - DISCOVERY_CALLS[source] * math.ceil(60.0 / self.settings.discovery_interval_s)
        share = max(1, math.floor(max(per_minute, 1) * interval / 60.0))
        return per_minute - share * 60.0 / interval

    async def _refresh_candles(self, report: CycleReport) -> None:
        """At most one OHLCV call, from the spare budget, for the most-watched token whose candles are due."""
        source = "geckoterminal"
        now = self._clock()
        spare = self.candle_spare_per_min()
        if spare <= 0:
            return
        last, self._candle_credit_at = self._candle_credit_at, now
        elapsed = now - last if last is not None else 0.0
        self._candle_credit = min(1.0, self._candle_credit + spare * elapsed / 60.0)
        if self._candle_credit < 1.0:
            return
        interval = self.settings.refresh_interval_s
        next_discovery = self.last_discovery is None or (
            now + interval - self.last_discovery >= self.settings.discovery_interval_s)
        reserve = DISCOVERY_CALLS[source] if next_discovery else 0  # the next discovery round comes first
        if self.clients[source].calls_affordable() < 1 + reserve:
            return
        address = self._next_candle_token(now)
        if address is None:
            return
        pool = main_pool(self.tokens[address])
        try:
            request = geckoterminal.ohlcv_request(pool.pool_address if pool is not None else "")
        except ValueError:  # a pool id GeckoTerminal can't be asked about: try again in an hour
            self._candle_next[address] = now + CANDLE_EVERY_S
            return
        self._candle_credit -= 1.0
        report.candles += 1
        try:
            # max_wait=0: one attempt, no retry, no waiting for budget (retries would spend more than spare).
            candles = await self._call(source, request, geckoterminal.parse_ohlcv, max_wait=0.0)
        except UpstreamError as exc:
            report.errors.append(str(exc))
            self._candle_next[address] = now + CANDLE_RETRY_S
            return
        stats = geckoterminal.seven_day(candles, now)
        figures = ({"volume_usd": stats.volume_usd, "price_change": stats.price_change}
                   if stats is not None else None)
        self._candles[address] = (now, figures)
        self._candle_next[address] = now + CANDLE_EVERY_S
        self._apply_seven_day(address, now)

    def _next_candle_token(self, now: float) -> str | None:
        """Tokens shown in live views first, then the most active; the first whose candles are due."""
        order: list[str] = []
        seen: set[str] = set()
        if self._watched is not None:
            try:
                watched = list(self._watched())
            except Exception:  # noqa: BLE001 - a broken hook must not stop the candles
                log.exception("watched() failed")
                watched = []
            for address in watched:
                state = self.tokens.get(address)
                if state is not None and state.pools and address not in seen:
                    order.append(address)
                    seen.add(address)
        if len(order) < CANDLE_TOP:
            active = heapq.nlargest(CANDLE_TOP - len(order),
                                    (s for s in self.tokens.values() if s.pools and s.address not in seen),
                                    key=lambda s: (s.activity(), s.address))
            order.extend(s.address for s in active)
        for address in order[:CANDLE_TOP]:
            if now >= self._candle_next.get(address, 0.0):
                return address
        return None

    def _apply_seven_day(self, address: str, now: float) -> None:
        """The token's 7d figures: the candles' where fresh, the history's for what they lack."""
        state = self.tokens.get(address)
        if state is None:
            return
        candle = self._candles.get(address)
        figures = dict(candle[1]) if candle is not None and candle[1] is not None else None
        own = self._history_7d.get(address)
        if own is not None:
            figures = {key: (figures or {}).get(key) if (figures or {}).get(key) is not None else own.get(key)
                       for key in ("volume_usd", "price_change")}
        if state.seven_day != figures:
            state.seven_day = figures
            self._dirty.add(address)

    async def _update_seven_day(self, now: float) -> None:
        """Drop candle figures past their TTL; after a new history sample, derive every token's 7d."""
        touched = [a for a, (at, _) in self._candles.items() if now - at > CANDLE_TTL_S]
        for address in touched:
            del self._candles[address]
        if self.history is not None and self._history_due:
            self._history_due = False
            try:
                fresh = await self.history.seven_day_many(list(self.tokens), now)
            except Exception:  # noqa: BLE001 - history is a nicety: a failure must not stop the cycle
                log.exception("history: deriving 7d figures failed")
                fresh = self._history_7d
            touched.extend(set(self._history_7d) | set(fresh))
            self._history_7d = fresh
        for address in touched:
            self._apply_seven_day(address, now)

    # ---- persistence: history samples, snapshots, restart ---------------------------------------

    async def _persist(self, now: float) -> None:
        """After a commit: sample the history when due; save the snapshot at most every SNAPSHOT_EVERY_S."""
        latest = self.store.latest()
        if self.history is not None and self.history.due(now):
            records = {address: record for address, record in latest.records.items()
                       if address not in self._restored and address in self.tokens
                       and self.tokens[address].has_data()}
            try:
                if await self.history.record(records, now):
                    self._history_due = True
            except Exception:  # noqa: BLE001
                log.exception("history: recording failed")
        if (self.snapshots is not None and latest.tag != self._snapshot_tag and latest.records
                and now - self._snapshot_at >= SNAPSHOT_EVERY_S):
            self._snapshot_at, self._snapshot_tag = now, latest.tag
            try:
                await self.snapshots.save(latest, self._snapshot_extra(), now)
            except Exception:  # noqa: BLE001
                log.exception("snapshot: saving failed")

    def save_snapshot_now(self) -> None:
        """Save the latest version if it changed since the last save (at shutdown; blocks briefly)."""
        latest = self.store.latest()
        if self.snapshots is None or latest.tag == self._snapshot_tag or not latest.records:
            return
        self._snapshot_tag = latest.tag
        try:
            self.snapshots.save_now(latest, self._snapshot_extra(), self._clock())
        except Exception:  # noqa: BLE001
            log.exception("snapshot: saving failed")

    def _snapshot_extra(self) -> dict[str, Any]:
        return {"candles": {address: [at, figures] for address, (at, figures) in self._candles.items()}}

    async def lead(self, fence: int, instance: str) -> None:
        """This instance now writes (app.ingest.leader.IngestRunner): continue the store's latest version
        (same epoch, next seq) when it has records, else restore the saved snapshot; then publish."""
        self.fence, self.instance = fence, instance
        latest = self.store.latest()
        if latest.records:
            if self.handover is not None:
                await self.handover.load(self)  # the last leader's per-token state
            self.adopt(latest)
        else:
            await self.restore()
        await self.publish_summary()

    def adopt(self, version: Version) -> None:
        """Continue a history another writer made: track its tokens again, each keeping its record until
        refreshed (as after a restore), and its SOL/USD rate. No commit, no new epoch."""
        now = self._clock()
        self._epoch_written = version.epoch
        for state in self._track(version.records, now):
            if not state.has_data():
                self._restored[state.address] = now
        if version.sol_usd is not None:
            self.sol_usd = version.sol_usd
        self._snapshot_tag = version.tag
        self.stale = False

    async def restore(self) -> bool:
        """With no version to continue: commit the saved snapshot as the store's next version (seq 1 of
        the epoch a new memory store minted) and track its tokens again. True when there was one."""
        snapshot = self.snapshots.load() if self.snapshots is not None else None
        if snapshot is None or not snapshot.records:
            return False
        now = self._clock()
        changes = changeset(self.store.latest(), snapshot.records, committed_at=now, sol_usd=snapshot.sol_usd)
        if changes is None:
            return False
        version = await self.store.commit(changes, self._token())
        self.stale = True
        self._snapshot_tag = version.tag
        self._snapshot_at = now
        for state in self._track(snapshot.records, now):
            self._restored[state.address] = now
        candles = snapshot.extra.get("candles") if isinstance(snapshot.extra, dict) else None
        for address, entry in (candles or {}).items():
            try:
                at, figures = float(entry[0]), entry[1]
            except (TypeError, ValueError, IndexError):
                continue
            if address in self.tokens and now - at <= CANDLE_TTL_S:
                self._candles[address] = (at, dict(figures) if isinstance(figures, dict) else None)
                self._candle_next[address] = at + CANDLE_EVERY_S
                self._apply_seven_day(address, now)
        log.info("restored %d records saved at %s (epoch %s)", len(snapshot.records), snapshot.saved_at,
                 version.epoch)
        return True

    # ---- state for /health -------------------------------------------------------------------

    def last_success(self) -> float | None:
        times = [c.health.last_success for c in self.clients.values() if c.health.last_success is not None]
        return max(times) if times else None


def _merge_window(old: WindowStats | None, new: WindowStats) -> WindowStats:
    """Price v3 knows only the 24h price change: keep the rest of what tokens v2 said."""
    if old is None:
        return new
    return WindowStats(
        volume_usd=new.volume_usd if new.volume_usd is not None else old.volume_usd,
        price_change=new.price_change if new.price_change is not None else old.price_change,
        buys=new.buys if new.buys is not None else old.buys,
        sells=new.sells if new.sells is not None else old.sells,
    )
