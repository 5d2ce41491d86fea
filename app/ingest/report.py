"""What one ingest cycle did: the figures of its one info log line, and of the on_cycle hook."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class CycleReport:
    started_at: float
    duration_s: float = 0.0
    discovered: int = 0
    refreshed: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    seq: int | None = None
    candles: int = 0  # OHLCV calls made
    calls: dict[str, int] = field(default_factory=dict)  # requests that went out, by source
    cut: int = 0  # DexScreener answers possibly cut at 30 pairs (their mints asked again)
    probes: dict[str, bool] = field(default_factory=dict)  # circuit probes made, by source: answered?
    sol_usd: float | None = None  # a SOL/USD rate adopted this cycle (moved more than 0.1%)

    def summary(self, tracked: int) -> str:
        """The cycle's one info line."""
        parts = [f"{self.duration_s:.1f}s", f"{tracked} tokens"]
        if self.discovered:
            parts.append(f"+{self.discovered} discovered")
        for source, calls in self.calls.items():
            parts.append(f"{source} {calls} calls/{self.refreshed.get(source, 0)} refreshed")
        if self.candles:
            parts.append(f"{self.candles} candles")
        if self.cut:
            parts.append(f"{self.cut} cut answers re-asked")
        for source, ok in self.probes.items():
            parts.append(f"{source} probe {'answered' if ok else 'failed'}")
        if self.sol_usd is not None:
            parts.append(f"SOL/USD {self.sol_usd} adopted")
        if self.errors:
            parts.append(f"{len(self.errors)} errors")
        parts.append(f"seq {self.seq}" if self.seq is not None else "no change")
        return ", ".join(parts)
