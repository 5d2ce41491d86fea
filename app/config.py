"""Settings from the environment (and a `.env` file in the working directory), validated once.

A bad value stops start-up with one line naming the variable, the value and what is allowed.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from app.model import SOURCES

T = TypeVar("T")

DEFAULT_RATE_LIMITS = {"dexscreener": 300, "geckoterminal": 10, "jupiter": 30}
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
LOG_FORMATS = ("text", "json")
URL_RULE = "an http(s) URL without a trailing slash"  # what the three upstream base URLs must be


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
    redis_prefix: str = "tokenstream"  # every Redis key starts with {prefix}: several deployments, one Redis
    web_concurrency: int = 1  # worker processes of `python -m app` on the one port
    leader_ttl_s: float = 10.0  # the ingest leader's lease without renewal (STORE=redis)
    data_dir: str = "./data"
    alert_price_pct: float = 5.0
    alert_volume_x: float = 3.0
    alert_min_volume_usd: float = 1000.0
    alert_min_liquidity_usd: float = 10000.0
    heartbeat_s: float = 15.0
    max_connections: int = 10000
    log_level: str = "info"
    demo: bool = False
    # Start-up, logs and browsers (deploy / CORS)
    log_format: str = "text"
    cors_origins: tuple[str, ...] = ("*",)  # "*" (any origin), or normalised scheme://host[:port] origins
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
    try:
        env: dict[str, str] = read_dotenv(dotenv) if dotenv is not None else {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{dotenv} could not be read: {exc}") from None
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
        host=get("HOST", _host, "0.0.0.0", "a host name or IP address to listen on, e.g. 0.0.0.0 or 127.0.0.1"),
        port=get("PORT", _int_range(0, 65535), 8000, "an integer from 0 to 65535"),
        dexscreener_url=get("DEXSCREENER_URL", _url, Settings.dexscreener_url, URL_RULE),
        geckoterminal_url=get("GECKOTERMINAL_URL", _url, Settings.geckoterminal_url, URL_RULE),
        jupiter_url=get("JUPITER_URL", _url, Settings.jupiter_url, URL_RULE),
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
        redis_prefix=get("REDIS_PREFIX", _key_prefix, "tokenstream", "letters, digits, '_', '-', '.' or ':'"),
        web_concurrency=get("WEB_CONCURRENCY", _int_range(1, 256), 1, "an integer from 1 to 256"),
        leader_ttl_s=get("LEADER_TTL_S", _at_least(1.0), 10.0, "a number of seconds >= 1"),
        data_dir=get("DATA_DIR", _text, "./data", "a directory path"),
        alert_price_pct=get("ALERT_PRICE_PCT", _positive, 5.0, "a percentage > 0"),
        alert_volume_x=get("ALERT_VOLUME_X", _positive, 3.0, "a multiple > 0"),
        alert_min_volume_usd=get("ALERT_MIN_VOLUME_USD", _non_negative, 1000.0, "a USD amount >= 0"),
        alert_min_liquidity_usd=get("ALERT_MIN_LIQUIDITY_USD", _non_negative, 10000.0, "a USD amount >= 0"),
        heartbeat_s=get("HEARTBEAT_S", _positive, 15.0, "a number of seconds > 0"),
        max_connections=get("MAX_CONNECTIONS", _int_range(1, 10_000_000), 10000, "a positive integer"),
        log_level=get("LOG_LEVEL", _choice(*LOG_LEVELS), "info", " or ".join(LOG_LEVELS)),
        # Start-up, logs and browsers (deploy / CORS): DEMO for platforms that only take a start command.
        demo=get("DEMO", _flag, False, "1 or 0 (also true/false, yes/no, on/off)"),
        log_format=get("LOG_FORMAT", _choice(*LOG_FORMATS), "text", " or ".join(LOG_FORMATS)),
        cors_origins=_cors_origins(env.get("CORS_ORIGINS")),
    )
    settings = settings.with_(**load_limits(get))
    if settings.store == "redis" and not settings.redis_url:
        raise ConfigError("STORE='redis' is invalid: expected REDIS_URL to be set as well")
    if settings.web_concurrency > 1 and settings.store == "memory":
        # Each worker would mint its own history: clients would see several epochs on one port.
        raise ConfigError(f"WEB_CONCURRENCY='{settings.web_concurrency}' is invalid: expected 1 with STORE=memory "
                          "(several worker processes need STORE=redis)")
    if settings.jupiter_api_key and "jupiter" not in (env.get("RATE_LIMITS") or ""):
        # A key raises the budget to the plan's limit; Free is the smallest keyed plan (60/min).
        jupiter = max(60, settings.rate_limits["jupiter"])
        settings = settings.with_(rate_limits={**settings.rate_limits, "jupiter": jupiter})
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


_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def _host(raw: str) -> str:
    """An IP address (IPv6 with or without brackets) or an RFC 1123 host name: not a URL, not host:port."""
    bare = raw[1:-1] if raw.startswith("[") and raw.endswith("]") else raw
    try:
        return str(ipaddress.ip_address(bare))
    except ValueError:
        pass
    name = raw.removesuffix(".")
    if len(name) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in name.split(".")):
        raise ValueError
    return raw


def _flag(raw: str) -> bool:
    value = raw.lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError


_ORIGIN = re.compile(r"(https?)://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::(\d{1,5}))?")


def _cors_origins(raw: str | None) -> tuple[str, ...]:
    """CORS_ORIGINS: unset means any origin ("*"); set but empty means none; else a comma list of
    `*` or scheme://host[:port] origins, normalised (lower case, default ports dropped) for exact matching."""
    if raw is None:
        return ("*",)
    origins: list[str] = []
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        if item == "*":
            return ("*",)
        match = _ORIGIN.fullmatch(item.rstrip("/"))
        if match is None:
            raise ConfigError(f"CORS_ORIGINS={raw!r} is invalid: expected * or a comma list of origins such as "
                              f"https://example.com or http://localhost:3000 (scheme, host and port only; "
                              f"{item!r} is not one)")
        scheme, host, port = match.group(1), match.group(2).lower(), match.group(3)
        default = "443" if scheme == "https" else "80"
        origin = f"{scheme}://{host}" + (f":{int(port)}" if port and port != default else "")
        if origin not in origins:
            origins.append(origin)
    return tuple(origins)


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


def _at_least(low: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        value = float(raw)
        if not value >= low or value == float("inf"):
            raise ValueError
        return value
    return parse


_non_negative = _at_least(0.0)


def _key_prefix(raw: str) -> str:
    if not raw or any(not (c.isascii() and (c.isalnum() or c in "_-.:")) for c in raw):
        raise ValueError
    return raw


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
