"""The simulated market's vocabulary: constants, addresses, and the Token and Pool it is made of.

Pure data: no HTTP, no market logic (app.demo.market walks them, app.demo.shapes renders them).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

WSOL_MINT = "So11111111111111111111111111111111111111112"
USDC_MINT = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
TOKEN_PROGRAM = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"
TOKEN_2022_PROGRAM = "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb"

B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

# Every pool keeps these windows (GeckoTerminal reports all six; DexScreener and Jupiter four).
WINDOWS: tuple[str, ...] = ("m5", "m15", "m30", "h1", "h6", "h24")
WIN_SECONDS: tuple[int, ...] = (300, 900, 1800, 3600, 21600, 86400)
DS_WINDOWS: tuple[tuple[str, int], ...] = (("m5", 0), ("h1", 3), ("h6", 4), ("h24", 5))
JUP_WINDOWS: tuple[tuple[str, int], ...] = (("5m", 0), ("1h", 3), ("6h", 4), ("24h", 5))
JUP_WINDOW_INDEX = dict(JUP_WINDOWS)
GT_DURATIONS: tuple[tuple[str, int], ...] = (("5m", 0), ("1h", 3), ("6h", 4), ("24h", 5))

JUP_CATEGORIES: tuple[str, ...] = ("toporganicscore", "toptraded", "toptrending")
SOURCES: tuple[str, ...] = ("dexscreener", "geckoterminal", "jupiter")
FAULT_KINDS: tuple[str, ...] = ("429", "500", "slow", "html", "truncated")

# (DexScreener dexId, DexScreener labels, GeckoTerminal dex id, GeckoTerminal dex name)
DEX_PUMPFUN = ("pumpfun", None, "pump-fun", "Pump.fun")
DEX_PUMPSWAP = ("pumpswap", None, "pumpswap", "PumpSwap")
DEX_RAYDIUM = ("raydium", None, "raydium", "Raydium")
DEX_RAYDIUM_CLMM = ("raydium", ["CLMM"], "raydium-clmm", "Raydium (CLMM)")
DEX_RAYDIUM_CPMM = ("raydium", ["CPMM"], "raydium-cpmm", "Raydium (CPMM)")
DEX_METEORA = ("meteora", None, "meteora", "Meteora")
DEX_METEORA_DLMM = ("meteora", ["DLMM"], "meteora-dlmm", "Meteora DLMM")
DEX_ORCA = ("orca", None, "orca", "Orca")
OTHER_DEXES = (DEX_RAYDIUM, DEX_RAYDIUM_CLMM, DEX_RAYDIUM_CPMM, DEX_METEORA, DEX_METEORA_DLMM, DEX_ORCA)
OTHER_DEX_WEIGHTS = (30, 12, 14, 10, 20, 14)
GT_DEX_NAMES = {d[2]: d[3] for d in (DEX_PUMPFUN, DEX_PUMPSWAP, *OTHER_DEXES)}

GRADUATION_MCAP_USD = 69_000.0
# A pool quoted in an illiquid token reports its USD liquidity and price off by this constant factor
# (upstreams.md §1 quirks: the quote's USD price is unreliable).
JUNK_FACTOR = 40.0
NEW_POOL_WINDOW_S = 48 * 3600

_ADJ = (
    "Doge", "Baby", "Based", "Giga", "Tiny", "Smol", "Fat", "Angry", "Sad", "Happy", "Golden", "Dark",
    "Super", "Mega", "Turbo", "Sleepy", "Crazy", "Lucky", "Cosmic", "Degen", "Rich", "Frozen", "Hyper",
    "Little", "Royal", "Wild", "Chill", "Silly", "Magic", "Laser", "Pixel", "Ninja", "Space", "Retro",
)
_NOUN = (
    "Cat", "Dog", "Frog", "Pepe", "Shiba", "Hamster", "Penguin", "Monkey", "Whale", "Goat", "Bonk",
    "Wojak", "Chad", "Pengu", "Otter", "Panda", "Duck", "Moon", "Rocket", "Banana", "Taco", "Pizza",
    "Wizard", "Cowboy", "Samurai", "Robot", "Alien", "Ghost", "Dragon", "Tiger", "Bull", "Bear", "Llama",
    "Capybara", "Hippo", "Sloth", "Koala", "Fox", "Owl", "Crab", "Shrimp", "Toad", "Unicorn",
)
_TAIL = ("Coin", "Inu", "AI", "Token", "Sol", "Cash", "Mania", "Club", "World", "Hat", "Wif Hat", "Classic")
_FOREIGN_CHAINS = ("ethereum", "base", "bsc")


def b58encode_int(value: int) -> str:
    out = []
    while value:
        value, rem = divmod(value, 58)
        out.append(B58_ALPHABET[rem])
    return "".join(reversed(out)) or "1"


def random_address(rng: random.Random, suffix: str = "") -> str:
    """A base58 encoding of a 32-byte value (43-44 chars); `suffix` (e.g. "pump") forced at the end."""
    if not suffix:
        while True:
            s = b58encode_int(rng.getrandbits(256))
            if len(s) >= 43:
                return s
    k = len(suffix)
    tail = 0
    for ch in suffix:
        tail = tail * 58 + B58_ALPHABET.index(ch)
    lo = -(-(58**43 - tail) // 58**k)  # 44 characters, so the top byte is non-zero
    hi = (2**256 - 1 - tail) // 58**k
    return b58encode_int(rng.randint(lo, hi) * 58**k + tail)


def iso(ts: float, ms: bool = False) -> str:
    dt = datetime.fromtimestamp(ts, UTC)
    if ms:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


class Token:
    """One token: the truth every upstream reports its own way."""

    __slots__ = (
        "mint", "name", "symbol", "decimals", "token_program", "created_at", "created_iso", "created_iso_ms",
        "launchpad", "dev", "twitter", "website", "telegram", "description", "header",
        "total_supply", "circ_supply", "price", "price0", "sigma", "refs", "activity", "base_activity",
        "liq_drift", "pools", "quote_pools", "holders", "holder_refs", "organic_score", "organic_jitter",
        "hype", "verified", "tags", "audit", "jup_known", "jup_priced", "jup_null_stats", "quiet",
        "quiet_ticks", "on_curve", "graduated_at", "graduated_pool", "profile", "boost_active",
        "boost_total", "has_info", "gt_mcap_verified", "coingecko_id", "block_lag", "special", "index",
        "image_key", "gt_hype",
    )

    def __init__(self, **kw: Any) -> None:
        for k in self.__slots__:
            setattr(self, k, kw.get(k))

    # ---- convenient truth -------------------------------------------------------------------------
    @property
    def is_pump(self) -> bool:
        return self.launchpad == "pump.fun"

    @property
    def market_cap(self) -> float:
        return self.price * self.circ_supply

    @property
    def fdv(self) -> float:
        return self.price * self.total_supply

    def change(self, i: int) -> float:
        """Percent price change over window index i (see WINDOWS)."""
        ref = self.refs[i]
        return (self.price / ref - 1.0) * 100.0 if ref > 0 else 0.0

    @property
    def liquidity(self) -> float:
        """Jupiter-level liquidity: all pools where this token is the base."""
        return sum(p.liquidity for p in self.pools)

    def volume(self, i: int) -> float:
        return sum(p.vols[i] for p in self.pools)

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"Token({self.symbol!r}, {self.mint}, ${self.price:.6g}, pools={len(self.pools or ())})"


class Pool:
    __slots__ = (
        "address", "base", "quote", "ds_dex", "ds_labels", "gt_dex", "created_at", "created_iso",
        "created_ms", "basis", "share", "liq0", "base0", "quote0", "liquidity", "vols", "avg_trade",
        "buy_ratio", "ds_tick", "gt_tick", "ds_hidden", "gt_hidden", "completed", "order_key",
        "q_null_price", "q_null_fields", "q_null_labels", "q_no_liquidity", "q_drop", "gt_neg_reserve",
        "gt_vol_factor", "gt_phase", "gt_state", "gt_reversed", "junk",
    )

    def __init__(self, **kw: Any) -> None:
        for k in self.__slots__:
            setattr(self, k, kw.get(k))

    @property
    def price_usd(self) -> float:
        return self.base.price * self.basis

    @property
    def price_native(self) -> float:
        """Price of the base in units of the quote token."""
        return self.price_usd / self.quote.price

    def trades(self, i: int) -> tuple[int, int]:
        n = self.vols[i] / self.avg_trade  # rounded up: any real volume means at least one trade
        return int(n * self.buy_ratio + 0.95), int(n * (1.0 - self.buy_ratio) + 0.95)

    def __repr__(self) -> str:  # pragma: no cover
        return f"Pool({self.base.symbol}/{self.quote.symbol} {self.gt_dex} {self.address})"


class ForeignItem:
    """A DexScreener profile/boost feed entry for another chain (the client must filter it out)."""

    __slots__ = ("chain", "address", "total", "seed")

    def __init__(self, chain: str, address: str, total: int, seed: int) -> None:
        self.chain, self.address, self.total, self.seed = chain, address, total, seed
