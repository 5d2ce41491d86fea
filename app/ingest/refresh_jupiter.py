"""Jupiter refresh: one Price v3 call (with wSOL, for SOL/USD), then Tokens v2 search batches.

Jupiter's figures are per token. Tokens with no pool anywhere depend on Jupiter alone: they come first.
The client paces every call (about one per 2 s keyless), so a cycle's calls never go out as a burst.
"""

from __future__ import annotations

from app.ingest.context import IngestContext
from app.ingest.report import CycleReport
from app.model import WSOL_MINT
from app.sources import jupiter
from app.sources.client import UpstreamError

SOURCE = "jupiter"


class JupiterRefresh:
    def __init__(self, ingest: IngestContext):
        self.ingest = ingest

    def forget(self, mint: str) -> None:
        """Nothing is kept per token."""

    def probe_request(self) -> tuple[str, dict]:
        return jupiter.price_request([WSOL_MINT])

    @staticmethod
    def read_probe(payload: object) -> float | None:
        """The probe's answer: SOL/USD (None when it has none)."""
        return jupiter.sol_price(payload)

    async def run(self, report: CycleReport, calls: int) -> int:
        ingest = self.ingest
        if calls < 1:
            return 0
        order = ingest.priority(SOURCE)
        order.sort(key=lambda m: bool(ingest.tokens[m].pools))
        now = ingest.clock()
        price_batch = order[: jupiter.PRICE_BATCH - 1]
        try:
            prices, price = await ingest.call(
                SOURCE, jupiter.price_request([WSOL_MINT, *price_batch]),
                lambda p: (jupiter.parse_prices(p, observed_at=now), jupiter.sol_price(p)))
        except UpstreamError as exc:
            report.errors.append(str(exc))
            return 1
        if price:
            ingest.sol_quotes[SOURCE] = price
        ingest.take_infos([p for p in prices if p.address != WSOL_MINT], now, replace_stats=False)
        made = 1
        priced = set(price_batch)
        rest = [m for m in order if m not in priced] + price_batch
        for start in range(0, min(len(rest), (calls - 1) * jupiter.SEARCH_BATCH), jupiter.SEARCH_BATCH):
            batch = rest[start:start + jupiter.SEARCH_BATCH]
            made += 1
            now = ingest.clock()
            try:
                infos = await ingest.call(SOURCE, jupiter.search_request(batch),
                                          lambda p: jupiter.parse_tokens(p, observed_at=now))
            except UpstreamError as exc:
                report.errors.append(str(exc))
                break
            ingest.take_infos(infos, now, replace_stats=True)
            seen = ingest.last_refreshed.setdefault(SOURCE, {})
            for mint in batch:  # asked counts as refreshed, known to Jupiter or not
                if mint in ingest.tokens:
                    seen[mint] = now
            report.refreshed[SOURCE] = report.refreshed.get(SOURCE, 0) + len(batch)
        return made
