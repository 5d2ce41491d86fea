"""GeckoTerminal refresh: token figures with each token's top pool, and the stalest pools it knows.

GeckoTerminal's budget is small (10/min by default) and DexScreener refreshes most pools, so its calls
alternate between:
- `tokens/multi?include=top_pools` (30 tokens): tokens it was never asked about first, then those whose
  market cap or FDV only it can fill, then the rest in turn. The top pool that answer already carries in
  `included[]` is read as a pool observation too, not thrown away;
- `pools/multi` (30 pools) of the pools it has reported, the stalest first (by their freshest
  observation from any source, weighted by the token's activity): the pools only it shows.
A pool it orients the other way round (the token as quote) is matched to the token on either side.
"""

from __future__ import annotations

import math

from app.ingest.context import IngestContext
from app.ingest.merge import TokenState, main_pool
from app.ingest.report import CycleReport
from app.model import WSOL_MINT
from app.sources import geckoterminal
from app.sources.client import UpstreamError

SOURCE = "geckoterminal"
# GeckoTerminal token-level figures (a market cap or FDV fallback) are asked again after this long.
TOKEN_FIGURES_MAX_AGE_S = 600.0
POOLLESS_MAX_AGE_S = 60.0


class GeckoTerminalRefresh:
    def __init__(self, ingest: IngestContext):
        self.ingest = ingest
        self._turn = 0

    def forget(self, mint: str) -> None:
        """Nothing is kept per token."""

    def probe_request(self) -> tuple[str, dict]:
        return geckoterminal.simple_price_request([WSOL_MINT])

    @staticmethod
    def read_probe(payload: object) -> float | None:
        """The probe's answer: SOL/USD (None when it has none)."""
        return geckoterminal.parse_simple_prices(payload).get(WSOL_MINT)

    async def run(self, report: CycleReport, calls: int) -> int:
        made = 0
        while made < calls:
            tokens_turn = self._turn % 2 == 0
            self._turn += 1
            batch = self._token_batch() if tokens_turn else []
            pools = [] if batch else self._pool_batch()
            if not batch and not pools:
                batch = self._token_batch()
                if not batch:
                    break
            made += 1
            ok = await (self._tokens(batch, report) if batch else self._pools(pools, report))
            if not ok:
                break
        return made

    def _token_batch(self) -> list[str]:
        ingest = self.ingest
        now = ingest.clock()
        seen = ingest.last_refreshed.get(SOURCE, {})
        order = ingest.priority(SOURCE)
        never = [m for m in order if m not in seen]
        needed = [m for m in order if m in seen and self.needs_token_figures(ingest.tokens[m], now)]
        asked = set(needed)
        rest = [m for m in order if m in seen and m not in asked]
        return (never + needed + rest)[: geckoterminal.BATCH]

    def _pool_batch(self) -> list[str]:
        ingest = self.ingest
        now = ingest.clock()
        ranked: list[tuple[float, str]] = []
        for mint, pools in ingest.known_pools(SOURCE).items():
            state = ingest.tokens.get(mint)
            if state is None:
                continue
            weight = 1.0 + math.log10(1.0 + state.activity())
            for address in pools:
                pool = state.pools.get(address)
                if pool is not None:
                    ranked.append((-(now - pool.observed_at) * weight, address))
        ranked.sort()
        return [address for _, address in ranked[: geckoterminal.BATCH]]

    def needs_token_figures(self, state: TokenState, now: float) -> bool:
        """Would GeckoTerminal's token-level figures fill a gap (CONTRACT §2 fallbacks), and are ours old?

        True for a token with no pool (its figures may come from GeckoTerminal alone: asked again after a
        minute), or whose main pool and Jupiter leave market cap or FDV unknown (after ten minutes).
        """
        info = state.infos.get(SOURCE)
        age = now - info.observed_at if info is not None else float("inf")
        main = main_pool(state)
        if main is None:
            return age >= POOLLESS_MAX_AGE_S
        if age < TOKEN_FIGURES_MAX_AGE_S:
            return False
        jup = state.infos.get("jupiter")
        no_mcap = main.market_cap_usd is None and (jup is None or jup.market_cap_usd is None)
        no_fdv = main.fdv_usd is None and (jup is None or jup.fdv_usd is None)
        return no_mcap or no_fdv

    async def _tokens(self, batch: list[str], report: CycleReport) -> bool:
        """Token-level figures for `batch`, and the top pool of each. Every token asked counts as refreshed,
        known to GeckoTerminal or not, so an unknown one moves to the back of the queue."""
        ingest = self.ingest
        now = ingest.clock()
        try:
            infos, pools = await ingest.call(
                SOURCE, geckoterminal.tokens_multi_request(batch),
                lambda p: (geckoterminal.parse_tokens(p, observed_at=now), geckoterminal.parse_top_pools(p, now)))
        except UpstreamError as exc:
            report.errors.append(str(exc))
            return False
        ingest.take_infos(infos, now, replace_stats=True)
        ingest.take_pools(SOURCE, pools, now)
        seen = ingest.last_refreshed.setdefault(SOURCE, {})
        for mint in batch:
            if mint in ingest.tokens:
                seen[mint] = now
        report.refreshed[SOURCE] = report.refreshed.get(SOURCE, 0) + len(batch)
        return True

    async def _pools(self, addresses: list[str], report: CycleReport) -> bool:
        ingest = self.ingest
        now = ingest.clock()
        try:
            pools, price = await ingest.call(
                SOURCE, geckoterminal.pools_multi_request(addresses),
                lambda p: (geckoterminal.parse_pools(p, observed_at=now), geckoterminal.sol_price_from_pools(p)))
        except UpstreamError as exc:
            report.errors.append(str(exc))
            return False
        if price:
            ingest.sol_quotes[SOURCE] = price
        ingest.take_pools(SOURCE, pools, now)
        report.refreshed[SOURCE] = report.refreshed.get(SOURCE, 0) + len({p.base_address for p in pools})
        return True
