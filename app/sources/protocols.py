"""One display name per DEX, whichever upstream reported the pool (CONTRACT §2)."""

from __future__ import annotations

# Keys are upstream ids lower-cased with '_' and ' ' as '-': DexScreener `dexId` (plus a label),
# GeckoTerminal `relationships.dex.data.id`, Jupiter `launchpad`.
_NAMES: dict[str, str] = {
    "raydium": "Raydium",
    "raydium-amm": "Raydium",
    "raydium-v4": "Raydium",
    "raydium-clmm": "Raydium CLMM",
    "raydium-cpmm": "Raydium CPMM",
    "raydium-cp": "Raydium CPMM",
    "raydium-cp-swap": "Raydium CPMM",
    "pumpswap": "PumpSwap",
    "pump-swap": "PumpSwap",
    "pumpfun-amm": "PumpSwap",
    "pump-fun-amm": "PumpSwap",
    "pumpfun": "Pump.fun",
    "pump-fun": "Pump.fun",
    "pump.fun": "Pump.fun",
    "meteora": "Meteora",
    "meteora-damm": "Meteora",
    "meteora-amm": "Meteora",
    "meteora-dlmm": "Meteora DLMM",
    "dlmm": "Meteora DLMM",
    "orca": "Orca",
    "orca-whirlpool": "Orca",
    "orca-whirlpools": "Orca",
    "whirlpool": "Orca",
}

# DexScreener names pool kinds in `labels` next to a generic dexId.
_LABELLED: dict[tuple[str, str], str] = {
    ("raydium", "clmm"): "Raydium CLMM",
    ("raydium", "cpmm"): "Raydium CPMM",
    ("meteora", "dlmm"): "Meteora DLMM",
}


def protocol_name(dex_id: object, labels: object = None) -> str | None:
    """Display name for an upstream DEX id; unknown ids in title case ("lifinity-v2" -> "Lifinity V2")."""
    if not isinstance(dex_id, str) or not dex_id.strip():
        return None
    key = dex_id.strip().lower().replace("_", "-").replace(" ", "-")
    if isinstance(labels, list):
        for label in labels:
            if isinstance(label, str) and (key, label.lower()) in _LABELLED:
                return _LABELLED[(key, label.lower())]
    if key in _NAMES:
        return _NAMES[key]
    return " ".join(part.capitalize() for part in key.replace(".", " ").split("-") if part)
