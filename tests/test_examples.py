"""The examples run: the WebSocket bot keeps exactly the view REST answers, and the page on another origin
reads REST and SSE in a real browser (headless Chromium, as tests/test_page.py drives it).

Both run against `python -m app --demo` as a real process; the bot as a real process too, its `--json`
lines compared with `GET /api/tokens` at the same seq while the market moves (and across a service restart).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.service_process import DemoProcess

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
VIEW = {"sort": "volume", "window": "5m", "limit": "8"}

pytestmark = pytest.mark.timeout(90)


def api_md_block(heading: str, language: str) -> str:
    """The first ```<language> block after `heading` in docs/API.md: the copy-paste examples must run."""
    text = (ROOT / "docs" / "API.md").read_text()
    after = text[text.index(heading):]
    return after.split(f"```{language}\n", 1)[1].split("```", 1)[0]


def load_bot() -> Any:
    spec = importlib.util.spec_from_file_location("ws_bot", EXAMPLES / "ws_bot.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bot_applies_deltas_as_a_deep_merge():
    bot = load_bot()
    view = bot.View()
    row = {"token_address": "A", "price_usd": 1.0, "stats": {"5m": {"buys": 1, "sells": 2}, "1h": {"buys": 5}}}
    assert view.apply({"type": "snapshot", "epoch": "e", "seq": 1, "rows": [row, {"token_address": "B"}]})
    assert view.apply({"type": "delta", "epoch": "e", "seq": 3, "prev_seq": 1, "remove": ["B"],
                       "upsert": [{"token_address": "A", "price_usd": None, "stats": {"5m": {"buys": 4}}},
                                  {"token_address": "C", "price_usd": 2.0}],
                       "order": ["C", "A"]})
    assert view.table() == [{"token_address": "C", "price_usd": 2.0},
                            {"token_address": "A", "price_usd": None,
                             "stats": {"5m": {"buys": 4, "sells": 2}, "1h": {"buys": 5}}}]
    # a whole-row upsert (every figure) merges to the same row as a replacement would
    whole = {"token_address": "C", "price_usd": 3.0, "stats": {"5m": {"buys": 1}}}
    assert view.apply({"type": "delta", "epoch": "e", "seq": 4, "prev_seq": 3, "remove": [], "upsert": [whole]})
    assert view.rows["C"] == whole and view.order == ["C", "A"]
    assert view.apply({"type": "heartbeat", "epoch": "e", "seq": 6}) and view.resume_seq == 6
    assert not view.apply({"type": "delta", "epoch": "e", "seq": 5, "prev_seq": 2, "remove": [], "upsert": []})
    assert not view.apply({"type": "delta", "epoch": "other", "seq": 9, "prev_seq": 8, "remove": [], "upsert": []})


class RestRecorder:
    """Polls GET /api/tokens?<VIEW> in a thread and keeps one answer per (epoch, seq)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.answers: dict[tuple[str, int], list[dict]] = {}
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        with httpx.Client(timeout=2) as client:
            while not self.stopped.is_set():
                try:
                    body = client.get(self.base + "/api/tokens", params=VIEW).json()
                    self.answers.setdefault((body["epoch"], body["seq"]), body["data"])
                except (httpx.HTTPError, ValueError, KeyError):
                    pass  # the service is restarting
                self.stopped.wait(0.03)  # the polling interval


def matched_seqs(bot_lines: list[dict], answers: dict[tuple[str, int], list[dict]]) -> list[int]:
    """Compare the bot's view with REST at every seq the bot is known to hold: between one of its updates and
    its next one (a version that does not change the view sends nothing). Returns the seqs compared."""
    compared = []
    for line, following in zip(bot_lines, bot_lines[1:]):
        for (epoch, seq), data in answers.items():
            if epoch == line["epoch"] and line["seq"] <= seq and (
                    following["epoch"] != epoch or seq < following["seq"]):
                assert line["rows"] == data, f"the bot's view at seq {seq} differs from GET /api/tokens"
                compared.append(seq)
    return compared


def test_ws_bot_keeps_the_view_rest_answers_across_a_restart(tmp_path):
    service = DemoProcess(tmp_path / "data").start()
    recorder = RestRecorder(service.url)
    recorder.thread.start()
    ws_url = service.url.replace("http", "ws") + "/ws"
    bot = subprocess.Popen([sys.executable, str(EXAMPLES / "ws_bot.py"), "--url", ws_url, "--json", "--updates", "14",
                            *[f"--{k}={v}" for k, v in VIEW.items()]],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[dict] = []
    try:
        for raw in bot.stdout:  # blocks on the bot's next line (the test's timeout bounds it)
            message = json.loads(raw)
            if message["type"] == "view":
                lines.append(message)
            if len(lines) == 6:
                service.stop()  # the bot must reconnect and carry on with the new process
                service = DemoProcess(tmp_path / "data", port=service.port).start()
        assert bot.wait(30) == 0, bot.stderr.read()
    finally:
        recorder.stopped.set()
        if bot.poll() is None:
            bot.kill()
        service.stop()
    assert len(lines) == 14
    assert all(len(line["rows"]) == 8 for line in lines)
    assert len({line["epoch"] for line in lines}) == 2  # a restart without state: a new epoch, a new snapshot
    compared = matched_seqs(lines, recorder.answers)
    assert len(compared) >= 5, (compared, [(line["epoch"], line["seq"]) for line in lines])


def test_api_md_python_bot_runs(tmp_path):
    script = tmp_path / "bot.py"
    script.write_text(api_md_block("### A Python bot over the WebSocket", "python"))
    service = DemoProcess(tmp_path / "data").start()
    bot = subprocess.Popen([sys.executable, str(script), service.url.replace("http", "ws") + "/ws"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seqs = []
    try:
        for line in bot.stdout:  # "<seq> <rows> (<ticker>, <5m change>)"; blocks until the next one
            seq, count = line.split()[:2]
            assert count == "10", line
            seqs.append(int(seq))
            if len(seqs) == 4:
                break
    finally:
        bot.kill()
        bot.wait()
        service.stop()
    assert seqs == sorted(seqs) and len(set(seqs)) == 4, seqs  # a snapshot, then deltas applied


# ------------------------------------------------------------------------------ the page, in Chromium


def chromium_or_skip() -> str:
    path = "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else shutil.which("chromium")
    reason = None
    if not path:
        reason = "Chromium not found (/usr/bin/chromium or `chromium` on PATH); apt-get install chromium"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            reason = "the playwright Python package is not installed (pip install playwright)"
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI is set, so the browser test must run")
        pytest.skip(reason)
    return path  # type: ignore[return-value]


class QuietFiles(SimpleHTTPRequestHandler):
    """examples/ served as static files: the other site (another port is another origin)."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_page_on_another_origin_reads_rest_and_sse(tmp_path):
    chromium = chromium_or_skip()
    from playwright.sync_api import sync_playwright

    site_dir = tmp_path / "site"
    site_dir.mkdir()
    shutil.copy(EXAMPLES / "page.html", site_dir / "page.html")
    site = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietFiles, directory=str(site_dir)))
    threading.Thread(target=site.serve_forever, daemon=True).start()
    service = DemoProcess(tmp_path / "data").start()
    page_url = f"http://localhost:{site.server_port}/page.html?api={service.url}&sort=txns&window=5m&limit=12"
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.goto(page_url, timeout=15_000)
            assert page.evaluate("location.origin") != service.url  # really another origin
            page.wait_for_function("() => window.example.health && window.example.state.deltas >= 2",
                                   timeout=30_000)
            assert page.locator("#rows tr").count() == 12
            assert "tokens tracked" in page.locator("#health").text_content()
            # The rows the page built from snapshot + deep-merged deltas are what REST answers at that seq.
            result = page.evaluate(
                """async () => {
                     const S = window.example.state;
                     const canon = (v) => Array.isArray(v) ? '[' + v.map(canon).join(',') + ']'
                       : v && typeof v === 'object' ? '{' + Object.keys(v).sort().map(k => JSON.stringify(k)
                         + ':' + canon(v[k])).join(',') + '}' : JSON.stringify(v);
                     const end = Date.now() + 15000;
                     while (Date.now() < end) {
                       const body = await (await fetch(`${window.example.API}/api/tokens?sort=txns&window=5m&limit=12`,
                                                       {cache: 'no-store'})).json();
                       if (body.epoch === S.epoch && body.seq === S.seq)
                         return canon(S.order.map(a => S.rows.get(a))) === canon(body.data) ? 'same' : 'different';
                       await new Promise(r => setTimeout(r, 40));
                     }
                     return 'never at the same seq';
                   }""")
            assert result == "same"
            assert not errors, errors

            # docs/API.md's browser snippet, on the same other origin
            snippet = api_md_block("### A browser page", "html").replace("http://localhost:8000", service.url)
            (site_dir / "snippet.html").write_text(f'<!doctype html><link rel="icon" href="data:,">{snippet}')
            page.goto(f"http://localhost:{site.server_port}/snippet.html", timeout=15_000)
            first = page.wait_for_function("() => view.seq >= 0 && view.seq", timeout=20_000).json_value()
            page.wait_for_function("(seq) => view.seq > seq", arg=first, timeout=20_000)
            assert page.locator("#rows tr").count() == 20
            assert not errors, errors
            browser.close()
    finally:
        service.stop()
        site.shutdown()
