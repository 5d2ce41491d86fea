"""A lean wire, end to end: gzip'd REST answers and permessage-deflate WebSockets that cost no more per client.

The whole service over loopback against the simulated market. REST: httpx (which asks for gzip and
decodes it), and raw requests where the test must see the bytes and headers themselves. WebSocket: the
`websockets` client, which offers permessage-deflate unless told not to, and headless Chromium
(/usr/bin/chromium through Playwright, as tests/test_page.py) for a browser's own deflate.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import anyio
import httpx
import orjson
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory, PerMessageDeflate

from app.demo.market import Market
from app.demo.server import serve_market
from app.runtime import Options
from tests.support import fast_settings, running_service, wait_for
from tests.test_streams import Tracker, WSClient, agrees_with_rest, ready, ws_url

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]

VIEW = {"sort": "liquidity", "limit": 15}
PARAMS = {"sort": "liquidity", "limit": "15"}


class NarrowWSClient(WSClient):
    """A client that asks for a 1 KiB server window and no client context: its frames are other bytes."""

    async def run(self, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        offer = ClientPerMessageDeflateFactory(server_max_window_bits=10, client_no_context_takeover=True)
        async with ws_connect(self.url, max_size=None, compression=None, extensions=[offer]) as ws:
            self.ws = ws
            task_status.started()
            try:
                async for raw in ws:
                    message = orjson.loads(raw)
                    self.messages.append(message)
                    if message.get("type") in ("snapshot", "delta", "heartbeat") and message.get("id"):
                        self.subs.setdefault(message["id"], Tracker()).on(message["type"], message)
            except ConnectionClosed:
                pass


def negotiated(client: WSClient) -> PerMessageDeflate | None:
    extensions = client.ws.protocol.extensions
    return extensions[0] if extensions else None


@pytest.mark.parametrize("direct_writes", [True, False], ids=["direct", "asgi"])
async def test_compressed_and_plain_websockets_see_the_same_view_and_share_compressed_frames(tmp_path,
                                                                                             direct_writes):
    market = Market(seed=5, n_tokens=80)
    async with serve_market(market, tick_interval=0.3) as upstream:
        async with running_service(fast_settings(upstream, data_dir=str(tmp_path)),
                                   Options(direct_writes=direct_writes)) as (base, app), \
                httpx.AsyncClient() as client:
            await wait_for(lambda: ready(client, base), timeout=20, message="ready")
            deflated = [WSClient(ws_url(base)) for _ in range(3)]  # the `websockets` default: deflate
            plain = WSClient(ws_url(base), compression=None)
            narrow = NarrowWSClient(ws_url(base))
            everyone = [*deflated, plain, narrow]
            async with anyio.create_task_group() as tasks:
                for ws in everyone:
                    await tasks.start(ws.run)
                    await ws.send({"op": "subscribe", "id": "v", "view": VIEW})
                # What was agreed: deflate without server context (and without the client's), windows as offered.
                for ws in deflated:
                    extension = negotiated(ws)
                    assert extension is not None and extension.remote_no_context_takeover
                    assert extension.local_no_context_takeover and extension.remote_max_window_bits == 15
                assert negotiated(plain) is None
                assert negotiated(narrow).remote_max_window_bits == 10
                await wait_for(lambda: all("v" in ws.subs for ws in everyone), timeout=10, message="snapshots")
                for ws in everyone:
                    await agrees_with_rest(client, base, PARAMS, ws.subs["v"])
                await wait_for(lambda: all(ws.subs["v"].kinds().count("delta") >= 3 for ws in everyone),
                               timeout=20, message="deltas")
                for ws in everyone:
                    await agrees_with_rest(client, base, PARAMS, ws.subs["v"])
                hub = app.state.service.hub
                writers = {c: c.direct_writer for c in hub.connections}
                if direct_writes:
                    # Every connection kept the fast path, compressed ones included, with its window.
                    assert sorted((w.bits is not None, w.bits) for w in writers.values()) == \
                        [(False, None), (True, 10), (True, 15), (True, 15), (True, 15)]
                    assert hub.written_directly["ws"] > 0
                    # Compressed once per message and window, not once per client: three clients share
                    # the 15-bit frames, one has its own 10-bit ones.
                    large = max(sum(1 for m in ws.messages if m["type"] in ("snapshot", "delta"))
                                for ws in (*deflated, narrow))
                    assert 0 < hub.deflated.compressed <= 2 * large + 4, (hub.deflated.compressed, large)
                else:
                    assert all(w is None for w in writers.values())
                tasks.cancel_scope.cancel()


def _chromium() -> str | None:
    path = "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else shutil.which("chromium")
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return None
    return path


TRACK_JS = """
async ([url, view]) => {
  const merge = (row, patch) => {
    for (const [k, v] of Object.entries(patch)) {
      if (v && typeof v === 'object' && !Array.isArray(v) && row[k] && typeof row[k] === 'object') merge(row[k], v);
      else row[k] = v;
    }
  };
  const t = window.tracker = {rows: null, seq: -1, known: -1, history: {}, deltas: 0, extensions: null};
  const ws = new WebSocket(url);
  await new Promise((ok, fail) => { ws.onopen = ok; ws.onerror = fail; });
  t.extensions = ws.extensions;
  ws.onmessage = (event) => {
    const m = JSON.parse(event.data);
    if (m.type === 'snapshot') { t.rows = m.rows; t.seq = m.seq; }
    else if (m.type === 'delta') {
      const byAddress = new Map(t.rows.map(r => [r.token_address, r]));
      for (const a of m.remove) byAddress.delete(a);
      for (const item of m.upsert) {
        if (!byAddress.has(item.token_address)) byAddress.set(item.token_address, {});
        merge(byAddress.get(item.token_address), item);
      }
      const order = m.order || t.rows.map(r => r.token_address).filter(a => byAddress.has(a));
      t.rows = order.map(a => byAddress.get(a)); t.seq = m.seq; t.deltas += 1;
      t.known = Math.max(t.known, m.prev_seq);
    } else if (m.type === 'heartbeat') { t.known = Math.max(t.known, m.seq); return; }
    else return;
    t.history[t.seq] = JSON.stringify(t.rows);
    t.known = Math.max(t.known, t.seq);
  };
  ws.send(JSON.stringify({op: 'subscribe', id: 'v', view: view}));
  return t.extensions;
}
"""

AT_JS = """
(seq) => {
  const t = window.tracker;
  if (t.known < seq) return null;
  const held = Object.keys(t.history).map(Number).filter(s => s <= seq).sort((a, b) => a - b);
  return held.length ? t.history[held[held.length - 1]] : null;
}
"""


async def test_a_browser_reads_the_same_view_over_a_compressed_websocket(tmp_path):
    chromium = _chromium()
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium or Playwright missing")
        pytest.skip("Chromium or Playwright missing")
    from playwright.async_api import async_playwright

    market = Market(seed=6, n_tokens=80)
    async with serve_market(market, tick_interval=0.3) as upstream:
        async with running_service(fast_settings(upstream, data_dir=str(tmp_path))) as (base, app), \
                httpx.AsyncClient() as client, async_playwright() as pw:
            await wait_for(lambda: ready(client, base), timeout=20, message="ready")
            browser = await pw.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
            try:
                page = await browser.new_page()
                await page.goto(f"{base}/ready")
                extensions = await page.evaluate(TRACK_JS, [ws_url(base), VIEW])
                assert "permessage-deflate" in extensions and "server_no_context_takeover" in extensions
                await wait_for(lambda: page.evaluate("window.tracker.deltas >= 3"), timeout=20, message="deltas")
                for _ in range(2):
                    body = (await client.get(f"{base}/api/tokens", params=PARAMS)).json()
                    held = await wait_for(lambda: page.evaluate(AT_JS, body["seq"]), timeout=15,
                                          message=f"the browser at seq {body['seq']}")
                    assert orjson.loads(held) == body["data"]
                hub = app.state.service.hub
                browser_writer = next(c.direct_writer for c in hub.connections if c.kind == "ws")
                assert browser_writer is not None and browser_writer.bits is not None  # the fast path, compressed
                assert hub.written_directly["ws"] > 0
            finally:
                await browser.close()
