"""A copy of the repository deploys the way its platform files say, in a new virtualenv.

What Heroku and Render do, minus their machines: copy the repository's files (what a clone has), create a
venv with the Python of `.python-version`, run the build command that render.yaml names (Heroku runs the same
`pip install -r requirements.txt`), then start each documented start command with `PORT` set (and
`DEMO=1`: no internet here) and wait for the health check path. One venv for the whole run (session
fixture). It needs the package index; without it the module is skipped, unless CI is set (then it fails).
Marked `deploy` (`-m "not deploy"` leaves it out of a quick local run; CI runs everything).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import httpx
import pytest
import yaml

from app.config import load_settings
from tests.logged_process import LoggedProcess
from tests.service_process import free_port

pytestmark = [pytest.mark.deploy, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[1]
UNIT_HOME = "/opt/tokenstream"


def repository_files() -> list[str]:
    """The files a clone would have (tracked, plus new ones not ignored, while they are being written)."""
    try:
        listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                                capture_output=True, check=True, timeout=30).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: cannot tell which files a clone would have")
    return [name for name in listed if name and (ROOT / name).is_file()]


def render_service() -> dict:
    blueprint = yaml.safe_load((ROOT / "render.yaml").read_text())
    (service,) = [s for s in blueprint["services"] if s["type"] == "web"]
    return service


def procfile_web() -> str:
    (line,) = [line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith("web:")]
    return line.removeprefix("web:").strip()


@pytest.fixture(scope="session")
def clone(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The repository's files in a new directory, built by render.yaml's buildCommand in a new venv."""
    home = tmp_path_factory.mktemp("deploy") / "tokenstream"
    for name in repository_files():
        target = home / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    venv = home / ".venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", VIRTUAL_ENV=str(venv))
    build = render_service()["buildCommand"]
    result = subprocess.run(["bash", "-c", build], cwd=home, env=env, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        offline = re.search(r"(?i)connection|network is unreachable|temporary failure in name resolution|"
                            r"no matching distribution", result.stdout + result.stderr)
        message = f"`{build}` failed in a new venv:\n{result.stderr[-3000:]}"
        if offline and not os.environ.get("CI"):
            pytest.skip("the package index is not reachable, so the deploy build cannot run here (set CI to "
                        "make this a failure)")
        pytest.fail(message)
    return home, env


def start(clone: tuple[Path, dict[str, str]], command: str, **env: str) -> tuple[LoggedProcess, str]:
    home, base_env = clone
    port = free_port()
    process = LoggedProcess(command.replace("$PORT", str(port)), {
        **base_env, "PORT": str(port), "DEMO": "1", "DATA_DIR": str(home / "data"), "REFRESH_INTERVAL_S": "1",
        **env}, cwd=home).start()
    return process, f"http://127.0.0.1:{port}"


def check_serves(process: LoggedProcess, base: str, health_path: str = "/ready") -> None:
    try:
        process.wait_ready(base, health_path, timeout=60)
        page = httpx.get(base + "/", timeout=5)
        assert page.status_code == 200 and "<table" in page.text  # the page ships inside the installed package
        tokens = httpx.get(base + "/api/tokens", params={"limit": "3"}, timeout=5).json()
        assert len(tokens["data"]) == 3
        assert process.wait_line(lambda line: "listening on http://" in line)
    finally:
        process.stop()


def test_python_version_file_names_the_tested_python():
    wanted = (ROOT / ".python-version").read_text().strip()
    assert re.fullmatch(r"3\.\d+", wanted), "Heroku and Render read a major version such as 3.11"
    assert wanted == f"{sys.version_info.major}.{sys.version_info.minor}", "the tests run on another Python"
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == f">={wanted}"


def test_render_blueprint_builds_starts_and_passes_its_health_check(clone):
    service = render_service()
    assert service["runtime"] == "python" and service["healthCheckPath"] == "/ready"
    values = {v["key"]: str(v["value"]) for v in service["envVars"] if "value" in v}
    load_settings({**values, "DATA_DIR": "/tmp"}, dotenv=None)  # every value the blueprint sets is valid
    process, base = start(clone, service["startCommand"], **{k: v for k, v in values.items()
                                                             if k not in ("DEMO", "DATA_DIR")})
    check_serves(process, base, service["healthCheckPath"])


def test_procfile_web_starts_with_port_from_the_platform(clone):
    assert (ROOT / "requirements.txt").is_file()  # what Heroku's Python support installs from
    process, base = start(clone, procfile_web())
    check_serves(process, base)


def test_vm_uvicorn_command_and_systemd_unit(clone):
    home, _ = clone
    process, base = start(clone, "uvicorn app.main:app --host 127.0.0.1 --port $PORT")  # README's VM command
    check_serves(process, base)

    unit = (ROOT / "deploy" / "tokenstream.service").read_text()
    exec_start = re.search(r"^ExecStart=(.+)$", unit, re.M).group(1)
    assert re.search(r"^WorkingDirectory=" + UNIT_HOME + "$", unit, re.M)
    unit_env = dict(line.removeprefix("Environment=").split("=", 1)
                    for line in unit.splitlines() if line.startswith("Environment="))
    unit_env.pop("PORT", None)  # a free port instead of 8000
    unit_env["DATA_DIR"] = unit_env["DATA_DIR"].replace(UNIT_HOME, str(home))
    process, base = start(clone, exec_start.replace(UNIT_HOME, str(home)), **unit_env)
    check_serves(process, base)
