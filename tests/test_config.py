"""Configuration: defaults, parsing, and one clear line for a bad value."""

import subprocess
import sys
from pathlib import Path

import pytest

from app.config import ConfigError, load_settings


def test_defaults_match_the_contract():
    s = load_settings({}, dotenv=None)
    assert (s.host, s.port) == ("0.0.0.0", 8000)
    assert s.dexscreener_url == "https://api.dexscreener.com"
    assert s.geckoterminal_url == "https://api.geckoterminal.com/api/v2"
    assert s.jupiter_url == "https://api.jup.ag"
    assert s.sources == ("dexscreener", "geckoterminal", "jupiter")
    assert dict(s.rate_limits) == {"dexscreener": 300, "geckoterminal": 10, "jupiter": 30}
    assert (s.refresh_interval_s, s.discovery_interval_s, s.cache_ttl_s) == (10, 60, 30)
    assert (s.max_tokens, s.store, s.data_dir) == (2000, "memory", "./data")
    assert (s.alert_price_pct, s.alert_volume_x, s.heartbeat_s, s.max_connections) == (5, 3, 15, 10000)
    assert (s.demo, s.cors_origins, s.log_format, s.log_level) == (False, ("*",), "text", "info")
    assert (s.web_concurrency, s.leader_ttl_s, s.redis_url) == (1, 10, None)


def test_values_are_parsed():
    s = load_settings({"SOURCES": "jupiter, dexscreener", "RATE_LIMITS": "geckoterminal=20", "PORT": "9000",
                       "JUPITER_API_KEY": "k"}, dotenv=None)
    assert s.sources == ("dexscreener", "jupiter")
    assert s.rate_limits["geckoterminal"] == 20 and s.rate_limits["dexscreener"] == 300
    assert s.rate_limits["jupiter"] == 60  # a key raises Jupiter to the keyed plan's limit
    assert s.port == 9000 and s.jupiter_api_key == "k"


@pytest.mark.parametrize("name,value", [
    ("PORT", "eighty"), ("PORT", "70000"), ("SOURCES", ""), ("SOURCES", "dexscreener,birdeye"),
    ("RATE_LIMITS", "jupiter=0"), ("RATE_LIMITS", "jupiter"), ("REFRESH_INTERVAL_S", "-1"),
    ("STORE", "postgres"), ("DEXSCREENER_URL", "https://api.dexscreener.com/"), ("LOG_LEVEL", "loud"),
    ("MAX_TOKENS", "0"), ("REDIS_URL", "http://x"), ("HOST", "http://0.0.0.0"), ("HOST", "0.0.0.0:8000"),
    ("HOST", "my host"), ("HOST", "-bad-.example"), ("DEMO", "sure"), ("LOG_FORMAT", "xml"),
    ("CORS_ORIGINS", "example.com"),
    ("WEB_CONCURRENCY", "0"), ("WEB_CONCURRENCY", "two"),
    ("LEADER_TTL_S", "0.5"), ("REDIS_PREFIX", "a b"),
])
def test_bad_value_is_one_line_naming_variable_and_value(name, value):
    env = {name: value}
    if name == "SOURCES" and value == "":
        env = {"SOURCES": " , "}
    with pytest.raises(ConfigError) as info:
        load_settings(env, dotenv=None)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{name}=")
    assert "expected" in message


def test_store_redis_needs_redis_url():
    with pytest.raises(ConfigError, match="STORE"):
        load_settings({"STORE": "redis"}, dotenv=None)


def test_dotenv_is_read_and_environment_wins(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text("# comment\nPORT=7000\nexport HEARTBEAT_S='5'\n")
    s = load_settings({}, dotenv=dotenv)
    assert s.port == 7000 and s.heartbeat_s == 5
    assert load_settings({"PORT": "7001"}, dotenv=dotenv).port == 7001


def test_cli_stops_with_one_line_for_a_bad_value(tmp_path):
    root = str(Path(__file__).resolve().parents[1])
    result = subprocess.run([sys.executable, "-m", "app"], env={"PORT": "nope", "PYTHONPATH": root}, cwd=tmp_path,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "PORT='nope'" in lines[0]


def test_store_redis_with_its_url_is_accepted_with_several_workers():
    s = load_settings({"STORE": "redis", "REDIS_URL": "redis://127.0.0.1:6379/0", "WEB_CONCURRENCY": "3",
                       "LEADER_TTL_S": "4"}, dotenv=None)
    assert (s.store, s.web_concurrency, s.leader_ttl_s) == ("redis", 3, 4)


def test_several_workers_on_the_memory_store_are_refused_in_one_line():
    with pytest.raises(ConfigError) as info:
        load_settings({"WEB_CONCURRENCY": "2"}, dotenv=None)
    message = str(info.value)
    assert "\n" not in message and message.startswith("WEB_CONCURRENCY='2'") and "STORE=redis" in message


@pytest.mark.parametrize("value,expected", [
    ("0.0.0.0", "0.0.0.0"), ("127.0.0.1", "127.0.0.1"), ("::", "::"), ("[::1]", "::1"), ("localhost", "localhost"),
    ("my-host.internal", "my-host.internal"),
])
def test_host_takes_addresses_and_host_names(value, expected):
    assert load_settings({"HOST": value}, dotenv=None).host == expected


@pytest.mark.parametrize("value,expected", [("1", True), ("true", True), ("YES", True), ("on", True),
                                            ("0", False), ("false", False), ("", False)])
def test_demo_flag(value, expected):
    assert load_settings({"DEMO": value}, dotenv=None).demo is expected


def test_log_format_json():
    assert load_settings({"LOG_FORMAT": "JSON"}, dotenv=None).log_format == "json"


def test_an_unreadable_dotenv_is_one_line(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_bytes(b"PORT=\xff\xfe8000\n")  # not UTF-8
    with pytest.raises(ConfigError) as info:
        load_settings({}, dotenv=dotenv)
    assert "\n" not in str(info.value) and ".env could not be read" in str(info.value)
