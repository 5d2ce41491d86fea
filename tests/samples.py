"""The real-shaped upstream payloads under tests/payloads and the addresses they use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

PAYLOADS = Path(__file__).parent / "payloads"
MINT = "9abcDWLxLaserDogeWif1111111111111111pump"  # the token of every sample payload
POOL = "7xKpPoo1DWLxSoLPumpSwap11111111111111111"  # its main pool
OTHER = "4kXbMemeCatHat222222222222222222222pump"
NOW = 1_767_300_000.0


def load(name: str) -> Any:
    """A sample payload, decoded fresh (tests may mutate it)."""
    return orjson.loads((PAYLOADS / name).read_bytes())


def mint(i: int) -> str:
    """A distinct valid base58 address per i (base58 has no 0)."""
    return "Mint" + "".join("123456789A"[int(d)] for d in f"{i:03d}") + "1" * 36
