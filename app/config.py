"""Settings from the environment (and a `.env` file in the working directory), validated once.

A bad value stops start-up with one line naming the variable, the value and what is allowed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from app.model import SOURCES

T = TypeVar("T")

DEFAULT_RATE_LIMITS = {"dexscreener": 300, "geckoterminal": 10, "jupiter": 30}
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


class ConfigError(ValueError):
    """One line: which variable, which value, what is allowed."""


@dataclass(frozen=True)
class Settings:
    host: str = "0.0.0.0"
    port: int = 8000
    dexscreener_url: str = "https://api.dexscreener.com"
    geckoterminal_url: str = "https://api.geckoterminal.com/api/v2"
    jupiter_url: str = "https://api.jup.ag"
    jupiter_api_key: str | None = None
    sources: tuple[str, ...] = SOURCES
    rate_limits: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_RATE_LIMITS))
    refresh_interval_s: float = 10.0
    discovery_interval_s: float = 60.0
    cache_ttl_s: float = 30.0
    max_tokens: int = 2000
    store: str = "memory"
    redis_url: str | None = None
    data_dir: str = "./data"
    alert_price_pct: float = 5.0
    alert_volume_x: float = 3.0
    heartbeat_s: float = 15.0
    max_connections: int = 10000
    log_level: str = "info"
    demo: bool = False
    # What one client may cost the service (issue 9; README "Limits"): `load_limits` reads them.
    max_views: int = 1000  # distinct stream views (channels) per process
    max_views_per_client: int = 100  # distinct stream views one client address holds open
    client_rate_limit: float = 50.0  # requests per second per client address (0: no limit)
    client_rate_burst: int = 200  # requests a client may make at once before the rate applies
    query_cache_mb: float = 64.0  # cached indexes, filtered views and pages, all versions together
    request_timeout_s: float = 10.0  # to receive a whole request (headers and body)
    max_header_bytes: int = 16384  # request line plus headers

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    def base_url(self, source: str) -> str:
        return {"dexscreener": self.dexscreener_url, "geckoterminal": self.geckoterminal_url,
                "jupiter": self.jupiter_url}[source]


def read_dotenv(path: Path) -> dict[str, str]:
    """KEY=VALUE lines; '#' comments, optional 'export ' and quotes. The real environment wins."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def load_settings(environ: Mapping[str, str] | None = None, dotenv: Path | None = Path(".env")) -> Settings:
    """Settings from `environ` (default: os.environ plus .env). Raises ConfigError on the first bad value."""
    env: dict[str, str] = read_dotenv(dotenv) if dotenv is not None else {}
    env.update(os.environ if environ is None else environ)

    def get(name: str, parse: Callable[[str], T], default: T, allowed: str) -> T:
        raw = env.get(name)
        if raw is None or raw.strip() == "":
            return default
        try:
            return parse(raw.strip())
        except (ValueError, KeyError) as exc:
            detail = f" ({exc})" if str(exc) and not isinstance(exc, KeyError) else ""
            raise ConfigError(f"{name}={raw!r} is invalid: expected {allowed}{detail}") from None

    sources = get("SOURCES", _sources, SOURCES, f"a non-empty comma list of {', '.join(SOURCES)}")
    settings = Settings(
        host=get("HOST", _text, "0.0.0.0", "a host name or address"),
        port=get("PORT", _int_range(0, 65535), 8000, "an integer from 0 to 65535"),
        dexscreener_url=get("DEXSCREENER_URL", _url, Settings.dexscreener_url, "an http(s) URL without a trailing slash"),
        geckoterminal_url=get("GECKOTERMINAL_URL", _url, Settings.geckoterminal_url, "an http(s) URL without a trailing slash"),
        jupiter_url=get("JUPITER_URL", _url, Settings.jupiter_url, "an http(s) URL without a trailing slash"),
        jupiter_api_key=env.get("JUPITER_API_KEY") or None,
        sources=sources,
        rate_limits=get("RATE_LIMITS", _rate_limits, dict(DEFAULT_RATE_LIMITS),
                        "source=N pairs, e.g. dexscreener=300,geckoterminal=10,jupiter=30 (N a positive integer)"),
        refresh_interval_s=get("REFRESH_INTERVAL_S", _positive, 10.0, "a number of seconds > 0"),
        discovery_interval_s=get("DISCOVERY_INTERVAL_S", _positive, 60.0, "a number of seconds > 0"),
        cache_ttl_s=get("CACHE_TTL_S", _non_negative, 30.0, "a number of seconds >= 0"),
        max_tokens=get("MAX_TOKENS", _int_range(1, 1_000_000), 2000, "an integer from 1 to 1000000"),
        store=get("STORE", _choice("memory", "redis"), "memory", "memory or redis"),
        redis_url=get("REDIS_URL", _redis_url, None, "a redis:// or rediss:// URL"),
        data_dir=get("DATA_DIR", _text, "./data", "a directory path"),
        alert_price_pct=get("ALERT_PRICE_PCT", _positive, 5.0, "a percentage > 0"),
        alert_volume_x=get("ALERT_VOLUME_X", _positive, 3.0, "a multiple > 0"),
        heartbeat_s=get("HEARTBEAT_S", _positive, 15.0, "a number of seconds > 0"),
        max_connections=get("MAX_CONNECTIONS", _int_range(1, 10_000_000), 10000, "a positive integer"),
        log_level=get("LOG_LEVEL", _choice(*LOG_LEVELS), "info", " or ".join(LOG_LEVELS)),
    )
    settings = settings.with_(**load_limits(get))
    if settings.store == "redis" and not settings.redis_url:
        raise ConfigError("STORE='redis' is invalid: expected REDIS_URL to be set as well")
    if settings.store == "redis":
        # Accepted by the contract, but the Redis backend is the next piece of work: refuse clearly
        # rather than silently running on memory (docs/DECISIONS.md).
        raise ConfigError("STORE='redis' is invalid: expected memory (the redis backend is not in this version yet)")
    if settings.jupiter_api_key and "jupiter" not in (env.get("RATE_LIMITS") or ""):
        # A key raises the budget to the plan's limit; Free is the smallest keyed plan (60/min).
        settings = settings.with_(rate_limits={**settings.rate_limits, "jupiter": max(60, settings.rate_limits["jupiter"])})
    return settings


def load_limits(get: Callable[..., object]) -> dict[str, object]:
    """The settings that bound what one client may cost (README "Limits"), read with `get`."""
    return {
        "max_views": get("MAX_VIEWS", _int_range(1, 1_000_000), 1000, "an integer from 1 to 1000000"),
        "max_views_per_client": get("MAX_VIEWS_PER_CLIENT", _int_range(1, 1_000_000), 100,
                                    "an integer from 1 to 1000000"),
        "client_rate_limit": get("CLIENT_RATE_LIMIT", _non_negative, 50.0,
                                 "requests per second per client, a number >= 0 (0: no limit)"),
        "client_rate_burst": get("CLIENT_RATE_BURST", _int_range(1, 1_000_000), 200, "an integer from 1 to 1000000"),
        "query_cache_mb": get("QUERY_CACHE_MB", _non_negative, 64.0, "a number of MiB >= 0"),
        "request_timeout_s": get("REQUEST_TIMEOUT_S", _positive, 10.0, "a number of seconds > 0"),
        "max_header_bytes": get("MAX_HEADER_BYTES", _int_range(1024, 1 << 20), 16384,
                                "an integer from 1024 to 1048576"),
    }


def _text(raw: str) -> str:
    return raw


def _int_range(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        value = int(raw)
        if not low <= value <= high:
            raise ValueError
        return value
    return parse


def _positive(raw: str) -> float:
    value = float(raw)
    if not value > 0 or value == float("inf"):
        raise ValueError
    return value


def _non_negative(raw: str) -> float:
    value = float(raw)
    if not value >= 0 or value == float("inf"):
        raise ValueError
    return value


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.lower()
        if value not in allowed:
            raise ValueError
        return value
    return parse


def _url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc or raw.endswith("/"):
        raise ValueError
    return raw


def _redis_url(raw: str) -> str:
    if urlsplit(raw).scheme not in ("redis", "rediss", "unix"):
        raise ValueError
    return raw


def _sources(raw: str) -> tuple[str, ...]:
    names = [name.strip().lower() for name in raw.split(",") if name.strip()]
    if not names or any(name not in SOURCES for name in names):
        raise ValueError
    return tuple(name for name in SOURCES if name in names)


def _rate_limits(raw: str) -> dict[str, int]:
    limits = dict(DEFAULT_RATE_LIMITS)
    for pair in raw.split(","):
        if not pair.strip():
            continue
        name, sep, number = pair.partition("=")
        name = name.strip().lower()
        if not sep or name not in SOURCES:
            raise ValueError
        value = int(number.strip())
        if value < 1:
            raise ValueError
        limits[name] = value
    return limits
