"""Switchable upstream failures for the simulated market (set from tests or /_control/faults)."""

from __future__ import annotations

import random
from typing import Any

from app.demo.model import FAULT_KINDS, SOURCES


class Fault:
    __slots__ = ("kind", "rate", "retry_after", "delay", "times", "status")

    def __init__(self, kind: str, rate: float = 1.0, retry_after: float | None = 2, delay: float = 2.0,
                 times: int | None = None, status: int | None = None) -> None:
        self.kind, self.rate, self.retry_after, self.delay = kind, rate, retry_after, delay
        self.times, self.status = times, status

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}


class Faults:
    """Switchable failures per upstream.

    `set(source, kind, rate=1.0, retry_after=2, delay=2.0, times=None, status=None)`:
    kind is "429" (Retry-After: retry_after seconds; None leaves the header out), "500", "slow"
    (answer normally after `delay` seconds), "html" (a Cloudflare-like page, status 200 unless
    `status` says otherwise), "truncated" (status 200, the JSON body cut in half). `rate` is the
    fraction of requests hit; `times` makes the fault clear itself after that many hits.
    """

    def __init__(self, seed: int = 0) -> None:
        self._faults: dict[str, Fault] = {}
        self._rng = random.Random(seed ^ 0x5EED)

    def set(self, source: str, kind: str, **opts: Any) -> None:
        if source not in SOURCES:
            raise ValueError(f"unknown source {source!r}; one of {', '.join(SOURCES)}")
        kind = str(kind)
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; one of {', '.join(FAULT_KINDS)}")
        unknown = set(opts) - {"rate", "retry_after", "delay", "times", "status"}
        if unknown:
            raise ValueError(f"unknown fault options: {', '.join(sorted(unknown))}")
        rate = float(opts.get("rate", 1.0))
        if not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be between 0 and 1")
        self._faults[source] = Fault(kind, **opts)

    def clear(self, source: str | None = None) -> None:
        if source is None:
            self._faults.clear()
        else:
            self._faults.pop(source, None)

    def get(self, source: str) -> Fault | None:
        return self._faults.get(source)

    def pick(self, source: str) -> Fault | None:
        """The fault to apply to one request now (rate and times applied), or None."""
        fault = self._faults.get(source)
        if fault is None:
            return None
        if fault.rate < 1.0 and self._rng.random() >= fault.rate:
            return None
        if fault.times is not None:
            fault.times -= 1
            if fault.times <= 0:
                self._faults.pop(source, None)
        return fault

    def as_dict(self) -> dict[str, Any]:
        return {s: f.as_dict() for s, f in self._faults.items()}
