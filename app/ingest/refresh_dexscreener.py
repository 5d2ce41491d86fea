"""DexScreener refresh that stays right under its 30-pair answer cap (upstreams.md §1 quirks).

Every DexScreener answer holds at most 30 pairs, in no documented order; a `/tokens/v1` batch of mints
with several pools each comes back cut, and a mint missing from an answer may just have been cut. So:

- known pools are refreshed by pool address (`/latest/dex/pairs`, 30 addresses, one pair each: an
  answer that is never cut);
- mints are scanned for their pools (`/tokens/v1`) in batches sized by the pairs each mint had last time
  (quote-side pairs included: they take room too), so an answer fits under 30; an answer of 30 pairs is
  possibly cut, and its mints are asked again in halves, down to `/token-pairs/v1` for one mint;
- absence from an answer is never evidence that a pool is gone: pools expire only when nobody has seen
  them for 30 minutes (app.ingest.merge.POOL_TTL_S).

SOL/USD: the deep wSOL/USDC and wSOL/USDT pools are found by scanning wSOL now and then, and refreshed by
address with the first pools batch of every cycle; the price is their median.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable

from app.ingest.context import IngestContext
from app.ingest.report import CycleReport
from app.model import WSOL_MINT
from app.sources import dexscreener
from app.sources.client import UpstreamError

SOURCE = "dexscreener"
CAP = dexscreener.ANSWER_CAP
DEFAULT_PAIRS = 2  # pairs assumed for a mint DexScreener has not answered for yet
SCAN_EVERY_INTERVALS = 30  # a mint is scanned again (for new pools) after this many refresh intervals
SOL_SCAN_EVERY_INTERVALS = 60
SCAN_SHARE = 0.25  # of a cycle's calls kept for rescans while known pools are refreshed by address
SOL_POOLS_KEPT = 4


def pack(items: Iterable[tuple[str, int]], room: int, most: int) -> list[list[str]]:
    """Greedy batches of keys whose weights sum to at most `room`, at most `most` keys each; a key heavier
    than `room` goes alone."""
    batches: list[list[str]] = []
    current: list[str] = []
    used = 0
    for key, weight in items:
        if current and (used + weight > room or len(current) >= most):
            batches.append(current)
            current, used = [], 0
        current.append(key)
        used += weight
    if current:
        batches.append(current)
    return batches


class DexScreenerRefresh:
    """What DexScreener is asked each cycle, and what it said about the size of each mint's answer."""

    def __init__(self, ingest: IngestContext):
        self.ingest = ingest
        self.pair_count: dict[str, int] = {}  # mint -> pairs naming it (either side) in its last answer
        self.scanned: dict[str, float] = {}  # mint -> time of its last whole `/tokens/v1` answer
        self.recheck: deque[list[str]] = deque()  # mints of a possibly cut answer, to ask again
        self.sol_pools: dict[str, float] = {}  # deep wSOL/stablecoin pools -> liquidity
        self.sol_scanned_at: float | None = None
        self._calls = 0
        self._sol_pending = False

    def forget(self, mint: str) -> None:
        self.pair_count.pop(mint, None)
        self.scanned.pop(mint, None)

    def probe_request(self) -> tuple[str, dict]:
        """One small request that shows whether DexScreener answers again."""
        if self.sol_pools:
            return dexscreener.pairs_request(list(self.sol_pools)[:1])
        return dexscreener.token_pairs_request(WSOL_MINT)

    @staticmethod
    def read_probe(payload: object) -> float | None:
        """The probe's answer: SOL/USD (None when it has none)."""
        return dexscreener.sol_price(payload)

    # ---- the cycle ---------------------------------------------------------------------------------

    async def run(self, report: CycleReport, calls: int) -> int:
        """Spend up to `calls` requests; returns how many were made."""
        self._calls = calls
        self._sol_pending = True  # the SOL pools ride with the cycle's first pools batch
        now = self.ingest.clock()
        interval = self.ingest.settings.refresh_interval_s
        try:
            if not self.sol_pools or now - (self.sol_scanned_at or 0.0) >= SOL_SCAN_EVERY_INTERVALS * interval:
                await self._scan_sol(report)
            while self.recheck and self._calls > 0:
                batch = [mint for mint in self.recheck.popleft() if mint in self.ingest.tokens]
                if batch:
                    await self._scan(batch, report)
            fresh = [m for m in self.ingest.priority(SOURCE) if m not in self.scanned and not self._queued(m)]
            for batch in self._batches(fresh):
                if self._calls <= 0:
                    break
                await self._scan(batch, report)
            await self._refresh_known(report, now)
        except _Stop:
            pass
        return calls - self._calls

    def _queued(self, mint: str) -> bool:
        return any(mint in batch for batch in self.recheck)

    async def _refresh_known(self, report: CycleReport, now: float) -> None:
        """Known pools by address, and rescans of mints due for one, within what is left."""
        ingest = self.ingest
        due = SCAN_EVERY_INTERVALS * ingest.settings.refresh_interval_s
        rescans = self._batches(sorted((m for m, at in self.scanned.items() if now - at >= due and m in ingest.tokens),
                                       key=self.scanned.__getitem__))
        chunks = self._pool_chunks()
        reserve = min(len(rescans), max(1, math.ceil(self._calls * SCAN_SHARE))) if rescans else 0
        for chunk in chunks[: max(0, self._calls - reserve)]:
            await self._pairs(chunk, report)
        if self._sol_pending and self.sol_pools:
            await self._pairs([], report)  # the SOL pools alone, for the cycle's SOL/USD price
        for batch in rescans:
            if self._calls <= 0:
                break
            await self._scan(batch, report)

    def _batches(self, mints: list[str]) -> list[list[str]]:
        """Batches whose pairs, as last answered (else as many as the pools other sources show, at least
        DEFAULT_PAIRS), sum to at most 29: an answer of 30 then means it may have been cut."""
        tokens = self.ingest.tokens

        def weight(mint: str) -> int:
            if mint in self.pair_count:
                return max(1, self.pair_count[mint])
            state = tokens.get(mint)
            return max(DEFAULT_PAIRS, len(state.pools) if state is not None else 0)

        return pack(((m, weight(m)) for m in mints), CAP - 1, dexscreener.BATCH)

    def _pool_chunks(self) -> list[list[tuple[str, list[str]]]]:
        """Each token's known DexScreener pools, most due tokens first, in chunks of at most 30 addresses
        (room left in the first for the SOL pools); a token is split only when it alone has over 30."""
        ingest = self.ingest
        known = ingest.known_pools(SOURCE)
        candidates = [ingest.tokens[m] for m in known if m in ingest.tokens and known[m]]
        chunks: list[list[tuple[str, list[str]]]] = []
        current: list[tuple[str, list[str]]] = []
        room = CAP - len(self.sol_pools)
        for mint in ingest.priority(SOURCE, candidates):
            pools = list(known[mint])
            while pools:
                if room < len(pools) and current:
                    chunks.append(current)
                    current, room = [], CAP
                take, pools = pools[:room], pools[room:]
                current.append((mint, take))
                room -= len(take)
        if current:
            chunks.append(current)
        return chunks

    # ---- calls ---------------------------------------------------------------------------------------

    async def _request(self, request: tuple[str, dict], wanted: set[str], report: CycleReport):
        if self._calls <= 0:
            raise _Stop
        self._calls -= 1
        now = self.ingest.clock()
        try:
            return await self.ingest.call(SOURCE, request,
                                          lambda p: dexscreener.read_pairs(p, observed_at=now, wanted=wanted))
        except UpstreamError as exc:
            report.errors.append(str(exc))
            if not exc.counted:
                raise _Stop from None  # no budget or an open circuit: nothing more goes out this cycle
            return None

    async def _scan(self, batch: list[str], report: CycleReport) -> None:
        """`/tokens/v1` for a batch (`/token-pairs/v1` for one mint): its pools, and how many pairs each
        mint has; a possibly cut answer puts its mints back in the queue, in halves."""
        request = dexscreener.token_pairs_request(batch[0]) if len(batch) == 1 else dexscreener.tokens_request(batch)
        answer = await self._request(request, set(batch), report)
        if answer is None:
            return
        now = self.ingest.clock()
        self.ingest.take_pools(SOURCE, answer.pools, now)
        report.refreshed[SOURCE] = report.refreshed.get(SOURCE, 0) + len(batch)
        if answer.possibly_cut and len(batch) > 1:
            for mint in batch:  # what came is a floor
                self.pair_count[mint] = max(self.pair_count.get(mint, 0), answer.per_mint.get(mint, 0))
            half = len(batch) // 2
            self.recheck.extend((batch[:half], batch[half:]))
            report.cut += 1
            return
        seen = self.ingest.last_refreshed.setdefault(SOURCE, {})
        for mint in batch:
            # One mint with 30 pairs or more: the per-token cap; what came is all DexScreener gives.
            self.pair_count[mint] = CAP if answer.possibly_cut else answer.per_mint.get(mint, 0)
            self.scanned[mint] = now
            if mint in self.ingest.tokens:
                seen[mint] = now

    async def _pairs(self, chunk: list[tuple[str, list[str]]], report: CycleReport) -> None:
        """Pools by address (plus the SOL pools): every pool asked is refreshed or, if absent, left to expire."""
        addresses = [pool for _, pools in chunk for pool in pools]
        sol = [pool for pool in self.sol_pools if pool not in addresses] if self._sol_pending else []
        if not addresses and not sol:
            return
        self._sol_pending = False
        mints = {mint for mint, _ in chunk}
        answer = await self._request(dexscreener.pairs_request(addresses + sol), mints | {WSOL_MINT}, report)
        if answer is None:
            return
        now = self.ingest.clock()
        self._take_sol(answer.pools)
        self.ingest.take_pools(SOURCE, answer.pools, now)
        seen = self.ingest.last_refreshed.setdefault(SOURCE, {})
        for mint in mints:
            if mint in self.ingest.tokens:
                seen[mint] = now
        report.refreshed[SOURCE] = report.refreshed.get(SOURCE, 0) + len(mints)

    async def _scan_sol(self, report: CycleReport) -> None:
        """wSOL's pairs, for deep wSOL/USDC and wSOL/USDT pools (its answer is always cut: wSOL is the quote
        of thousands of pools; what it shows of its stablecoin pools accumulates over the scans)."""
        answer = await self._request(dexscreener.token_pairs_request(WSOL_MINT), {WSOL_MINT}, report)
        self.sol_scanned_at = self.ingest.clock()
        if answer is not None:
            self._take_sol(answer.pools)

    def _take_sol(self, observations: list) -> None:
        pools = dexscreener.sol_usd_pools(observations)
        if not pools:
            return
        for obs in pools:
            self.sol_pools[obs.pool_address] = obs.liquidity_usd or 0.0
        deepest = sorted(self.sol_pools.items(), key=lambda item: -item[1])[:SOL_POOLS_KEPT]
        self.sol_pools = dict(deepest)
        price = dexscreener.median_sol_price(pools)
        if price:
            self.ingest.sol_quotes[SOURCE] = price


class _Stop(Exception):
    """No more DexScreener calls this cycle."""
