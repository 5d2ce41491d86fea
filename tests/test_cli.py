"""Start-up as an operator sees it: `python -m app` and `uvicorn app.main:app` as real processes.

The first command of the README, the flags and `--help`, one line for every bad setting (under both start
commands), the log format, the one `listening on` line, and the restore line after a restart.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.logged_process import LoggedProcess
from tests.service_process import DemoProcess, free_port

ROOT = Path(__file__).resolve().parents[1]
LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (CRITICAL|ERROR|WARNING|INFO|DEBUG|TRACE) +[\w.]+: \S")
UVICORN = [sys.executable, "-m", "uvicorn", "app.main:app"]
PYTHON_M_APP = [sys.executable, "-m", "app"]
PUBLIC_VARIABLES = ("HOST", "PORT", "DEMO", "DEXSCREENER_URL", "GECKOTERMINAL_URL", "JUPITER_URL", "JUPITER_API_KEY",
                    "SOURCES", "RATE_LIMITS", "REFRESH_INTERVAL_S", "DISCOVERY_INTERVAL_S", "CACHE_TTL_S", "MAX_TOKENS",
                    "STORE", "REDIS_URL", "WEB_CONCURRENCY", "LEADER_TTL_S", "CORS_ORIGINS", "DATA_DIR",
                    "ALERT_PRICE_PCT", "ALERT_VOLUME_X", "HEARTBEAT_S", "MAX_CONNECTIONS", "LOG_LEVEL", "LOG_FORMAT")
FAST = {"REFRESH_INTERVAL_S": "1", "DISCOVERY_INTERVAL_S": "5", "CACHE_TTL_S": "0",
        "RATE_LIMITS": "dexscreener=300,geckoterminal=60,jupiter=120"}


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without any of the service's settings, plus `extra`."""
    names = set(config_variables()) | {"WEB_CONCURRENCY", "LEADER_TTL_S"}
    env = {k: v for k, v in os.environ.items() if k not in names}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def config_variables() -> list[str]:
    """Every environment variable app/config.py reads (so --help and the README can be checked against it)."""
    source = (ROOT / "app" / "config.py").read_text()
    names = re.findall(r"""\bget\(\s*["']([A-Z][A-Z0-9_]+)["']""", source)
    names += re.findall(r"""env\.get\(\s*["']([A-Z][A-Z0-9_]+)["']""", source)
    return sorted(set(names))


def run_once(command: list[str], env: dict[str, str], cwd: Path | str = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=60)


# --------------------------------------------------------------------------------------------- the CLI


def test_demo_serves_at_least_200_tokens_within_30_seconds_with_default_settings(tmp_path):
    defaults = {name: "" for name in ("REFRESH_INTERVAL_S", "DISCOVERY_INTERVAL_S", "CACHE_TTL_S", "HEARTBEAT_S",
                                      "RATE_LIMITS")}  # empty means "use the default"
    started = time.monotonic()
    process = DemoProcess(tmp_path, **defaults).start(timeout=30)
    try:
        deadline = started + 30
        total = 0
        while time.monotonic() < deadline:
            total = httpx.get(f"{process.url}/api/tokens", params={"limit": "1"}).json()["total"]
            if total >= 200:
                break
            time.sleep(0.2)  # polling the service's answer, not waiting for an event
        assert total >= 200, f"only {total} tokens after 30 s"
        page = httpx.get(f"{process.url}/").text
        assert "<table" in page
    finally:
        # uvicorn shuts down gracefully on SIGTERM, then re-raises it: -15 is a clean exit here.
        assert process.stop() in (0, -15)


def test_help_lists_the_flags_and_every_environment_variable():
    result = run_once(PYTHON_M_APP + ["--help"], clean_env())
    assert result.returncode == 0
    for flag in ("--host", "--port", "--demo"):
        assert flag in result.stdout
    readme = (ROOT / "README.md").read_text()
    reference = (ROOT / "docs" / "API.md").read_text()
    variables = config_variables()
    assert {"HOST", "PORT", "DEMO", "CORS_ORIGINS", "LOG_FORMAT", "DATA_DIR"} <= set(variables)
    for name in variables + ["WEB_CONCURRENCY", "LEADER_TTL_S"]:
        assert re.search(rf"\b{name}\b", result.stdout), f"--help does not mention {name}"
        assert f"`{name}`" in readme, f"README's configuration table does not mention {name}"
    for name in PUBLIC_VARIABLES:  # the users' reference lists every setting a client can notice
        assert f"`{name}`" in reference, f"docs/API.md's configuration table does not mention {name}"


@pytest.mark.parametrize("env", [
    {"PORT": "nope"}, {"PORT": "70000"}, {"HOST": "http://0.0.0.0"}, {"HOST": "0.0.0.0:8000"},
    {"SOURCES": "birdeye"}, {"CORS_ORIGINS": "example.com"}, {"LOG_FORMAT": "xml"}, {"DEMO": "maybe"},
    {"REFRESH_INTERVAL_S": "0"},
], ids=lambda env: next(iter(env)))
def test_a_bad_setting_is_one_line_under_both_start_commands(env, tmp_path):
    name, value = next(iter(env.items()))
    for command in (PYTHON_M_APP, UVICORN + ["--port", str(free_port())]):
        result = run_once(command, clean_env(**env), cwd=tmp_path)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2, (command, result.stderr)
        assert len(lines) == 1, (command, result.stderr)
        assert f"{name}={value!r}" in lines[0] and "expected" in lines[0], lines[0]


def test_a_bad_dotenv_line_and_a_bad_flag_are_one_line(tmp_path):
    (tmp_path / ".env").write_text("# settings\nHOST=my host\n")
    for command in (PYTHON_M_APP, UVICORN):
        result = run_once(command, clean_env(), cwd=tmp_path)
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
        assert "HOST='my host'" in result.stderr
    result = run_once(PYTHON_M_APP + ["--port", "x"], clean_env(), cwd=ROOT)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "PORT='x'" in result.stderr
    result = run_once(PYTHON_M_APP + ["--verbose"], clean_env(), cwd=ROOT)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "--verbose" in result.stderr


def test_a_taken_port_says_which_setting_to_change(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = clean_env(HOST="127.0.0.1", PORT=str(port), DATA_DIR=str(tmp_path))
        result = run_once(PYTHON_M_APP + ["--demo"], env)
        assert result.returncode == 2
        assert result.stderr.strip().splitlines() == [
            f"tokenstream: PORT={port} is busy: another process listens on 127.0.0.1:{port}; "
            "set PORT (or --port) to a free port"]
        result = run_once(UVICORN + ["--port", str(port)], env)
        assert result.returncode != 0
        assert [line for line in result.stderr.splitlines() if "ERROR" in line] == [
            line for line in result.stderr.splitlines() if f"port {port} is busy" in line and "--port" in line]
    result = run_once(PYTHON_M_APP, clean_env(HOST="192.0.2.1", DATA_DIR=str(tmp_path)))  # TEST-NET: not ours
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "HOST='192.0.2.1'" in result.stderr


# ---------------------------------------------------------------------------------------------- logs


def start_demo(command: list[str], data_dir: Path, port: int, **env: str) -> LoggedProcess:
    return LoggedProcess(command, clean_env(HOST="127.0.0.1", PORT=str(port), DATA_DIR=str(data_dir), **FAST, **env),
                         cwd=ROOT).start()


def test_python_m_app_logs_one_format_and_one_listening_line_then_restores_with_iso_times(tmp_path):
    port = free_port()
    process = start_demo(PYTHON_M_APP + ["--demo"], tmp_path, port)
    try:
        process.wait_line(lambda line: "listening on" in line)
        process.wait_ready(f"http://127.0.0.1:{port}")
    finally:
        assert process.stop() in (0, -15)
    lines = process.lines
    assert all(LINE.match(line) for line in lines), lines
    assert "serving the simulated market" in lines[0]  # what the process serves, not the market's URL
    listening = [line for line in lines if "listening on" in line]
    assert len(listening) == 1 and listening[0].endswith(f" INFO    app: listening on http://127.0.0.1:{port}")
    assert not [line for line in lines if "Uvicorn running" in line or "HTTP Request" in line]

    # Restart on the same DATA_DIR: the restore line names its times in ISO 8601.
    process = start_demo(PYTHON_M_APP, tmp_path, port, DEMO="1")
    try:
        restored = process.wait_line(lambda line: "restored" in line)
        assert re.search(r"restored \d+ records saved at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z, "
                         r"data from \d{4}-\d\d-\d\dT[\d:.]+Z", restored), restored
        process.wait_line(lambda line: "listening on" in line)
    finally:
        process.stop()


def test_uvicorn_start_command_runs_the_demo_with_the_same_log_format_and_json_logs(tmp_path):
    port = free_port()
    process = start_demo(UVICORN + ["--host", "127.0.0.1", "--port", str(port)], tmp_path, port, DEMO="1")
    try:
        process.wait_ready(f"http://127.0.0.1:{port}")  # DEMO=1: the simulated market under uvicorn too
        httpx.get(f"http://127.0.0.1:{port}/health")
        process.wait_line(lambda line: '"GET /health HTTP/1.1" 200' in line)  # uvicorn's access line
    finally:
        process.stop()
    assert all(LINE.match(line) for line in process.lines), process.lines
    assert len([line for line in process.lines if "listening on http://127.0.0.1:" in line]) == 1
    assert len([line for line in process.lines if "Started server process" in line]) == 1

    process = start_demo(PYTHON_M_APP + ["--demo"], tmp_path, port, LOG_FORMAT="json")
    try:
        process.wait_line(lambda line: "listening on" in line)
    finally:
        process.stop()
    entries = [json.loads(line) for line in process.lines]  # every line is one JSON object
    assert {"time", "level", "logger", "message"} <= set(entries[0])
    assert any(e["message"] == f"listening on http://127.0.0.1:{port}" and e["level"] == "info" for e in entries)


def test_uvicorn_log_config_of_the_operator_is_left_alone(tmp_path):
    config = {"version": 1, "disable_existing_loggers": False,
              "formatters": {"mine": {"format": "MINE|%(levelname)s|%(name)s|%(message)s"}},
              "handlers": {"err": {"class": "logging.StreamHandler", "formatter": "mine", "stream": "ext://sys.stderr"}},
              "root": {"handlers": ["err"], "level": "INFO"},
              "loggers": {"uvicorn": {"handlers": [], "propagate": True}}}
    (tmp_path / "log.json").write_text(json.dumps(config))
    port = free_port()
    process = start_demo(UVICORN + ["--port", str(port), "--log-config", str(tmp_path / "log.json")], tmp_path, port,
                         DEMO="1")
    try:
        process.wait_line(lambda line: line.startswith("MINE|INFO|app|tokenstream"))
        process.wait_line(lambda line: line.startswith("MINE|INFO|uvicorn.error|Uvicorn running on"))
    finally:
        process.stop()
