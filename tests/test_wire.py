"""A lean wire, end to end: gzip'd REST answers and permessage-deflate WebSockets that cost no more per client.

The whole service over loopback against the simulated market. REST: httpx (which asks for gzip and
decodes it), and raw requests where the test must see the bytes and headers themselves. WebSocket: the
`websockets` client, which offers permessage-deflate unless told not to, and headless Chromium
(/usr/bin/chromium through Playwright, as tests/test_page.py) for a browser's own deflate.
"""

from __future__ import annotations

import gzip
import os
import shutil
import time
from typing import Any

import anyio
import httpx
import orjson
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory, PerMessageDeflate

from app.api import compression
from app.demo.market import Market
from app.demo.model import SOURCES
from app.demo.server import serve_market
from app.history import open_state, origin_of
from app.runtime import Options
from tests.support import fast_settings, running_service, wait_for
from tests.test_streams import (
    Tracker,
    WSClient,
    agrees_with_rest,
    ready,
    stalled_socket,
    ws_handshake,
    ws_text_frame,
    ws_url,
)

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


async def test_a_compressed_client_that_stops_reading_is_dropped_and_the_others_keep_receiving(tmp_path):
    market = Market(seed=7, n_tokens=150)
    async with serve_market(market, tick_interval=0.1) as upstream:
        settings = fast_settings(upstream, heartbeat_s=0.5, data_dir=str(tmp_path))  # write timeout: 2 s
        async with running_service(settings) as (base, app), httpx.AsyncClient() as client:
            await wait_for(lambda: ready(client, base), timeout=20, message="ready")
            hub = app.state.service.hub
            await wait_for(lambda: len(app.state.service.store.latest().records) >= 100, timeout=20,
                           message="a big universe")
            reader = WSClient(ws_url(base))
            async with anyio.create_task_group() as tasks:
                await tasks.start(reader.run)
                await reader.send({"op": "subscribe", "id": "s", "view": {"limit": 100}})
                offer = ws_handshake("/ws").replace(b"\r\n\r\n", b"\r\nSec-WebSocket-Extensions: "
                                                    b"permessage-deflate; client_max_window_bits\r\n\r\n")
                # Compressed frames are a third of the bytes: many views fill the socket's buffers sooner.
                sorts = ["volume", "price_change", "txns", "market_cap", "liquidity", "fdv", "created", "price"]
                stalled = await stalled_socket(base, offer, b"".join(ws_text_frame(
                    {"op": "subscribe", "id": f"{sort}{order}", "view": {"sort": sort, "order": order, "limit": 100}})
                    for sort in sorts for order in ("asc", "desc")))
                try:
                    dropped = hub.metrics.dropped_clients.labels("ws")
                    await wait_for(lambda: dropped._value.get() >= 1 and len(hub.connections) == 1, timeout=20,
                                   message="the stalled compressed client closed as slow and let go")
                    (kept,) = hub.connections
                    assert kept.direct_writer is not None and kept.direct_writer.bits == 15 and not kept.closed
                    seen = reader.subs["s"].kinds().count("delta")
                    await wait_for(lambda: reader.subs["s"].kinds().count("delta") >= seen + 3, timeout=10,
                                   message="more deltas for the reader")
                    await agrees_with_rest(client, base, {"limit": "100"}, reader.subs["s"])
                finally:
                    stalled.close()
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


# ------------------------------------------------------------------------------------------ REST gzip

GZIP = {"Accept-Encoding": "gzip"}
PLAIN = {"Accept-Encoding": "identity"}


async def raw_get(client: httpx.AsyncClient, url: str, method: str = "GET", **kw: Any) -> tuple[httpx.Response, bytes]:
    """A response and its body as it came over the wire (httpx would decode gzip)."""
    async with client.stream(method, url, **kw) as response:
        body = b"".join([chunk async for chunk in response.aiter_raw()])
    return response, body


class Counted:
    """Counts the calls of one of app.api.compression's encoders (the call sites look them up there)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, name: str):
        self.calls = 0
        original = getattr(compression, name)

        def counted(*args: Any) -> Any:
            self.calls += 1
            return original(*args)

        monkeypatch.setattr(compression, name, counted)


async def settled(market: Market, svc: Any) -> int:
    """The seq once the versions stop: every upstream answers 500 from now on, so refreshes change
    nothing (the same seq over a few refresh intervals)."""
    for source in SOURCES:
        market.faults.set(source, "500")

    async def same() -> int | None:
        seq = svc.store.latest().seq
        await anyio.sleep(0.6)  # a few refresh intervals (0.25 s): long enough for a new version to appear
        return seq if svc.store.latest().seq == seq and seq > 0 else None

    return await wait_for(same, timeout=20, interval=0, message="the versions to settle")


async def seed_history(settings: Any, mints: list[str]) -> set[str]:
    """Two hours of a sample a minute for `mints` in DATA_DIR, as a service that ran that long keeps them."""
    history, snapshots = open_state(settings.data_dir, origin_of(settings))
    try:
        now = float(round(time.time()))  # whole seconds: the slots are a minute apart to the millisecond
        for minute in range(120, 1, -1):
            assert await history.record({mint: {"price_usd": 1 + minute / 1000, "stats": {
                "5m": {"volume_usd": 5000.0}, "1h": {"volume_usd": 60000.0}, "24h": {"volume_usd": 1e6}}}
                for mint in mints}, now - 60 * minute)
    finally:
        history.close()
        if snapshots is not None:
            snapshots.close()
    return set(mints)


async def check_both_encodings(client: httpx.AsyncClient, url: str, **kw: Any) -> tuple[bytes, bytes]:
    """GET `url` plain and gzip'd: the same JSON, `Vary`, one ETag per encoding, each a 304 for its own
    encoding only, HEAD as GET without the body. Returns (plain body, gzip body)."""
    plain, plain_body = await raw_get(client, url, headers=PLAIN, **kw)
    zipped, zipped_body = await raw_get(client, url, headers=GZIP, **kw)
    assert plain.status_code == zipped.status_code == 200
    assert len(plain_body) > compression.MIN_SIZE, "the test wants an answer over 1 KiB"
    assert "content-encoding" not in plain.headers and zipped.headers["content-encoding"] == "gzip"
    assert gzip.decompress(zipped_body) == plain_body
    assert len(zipped_body) < 0.75 * len(plain_body) and int(zipped.headers["content-length"]) == len(zipped_body)
    assert plain.headers["vary"] == zipped.headers["vary"] == "Accept-Encoding"
    assert plain.headers["content-type"] == zipped.headers["content-type"] == "application/json"
    tag, gz_tag = plain.headers.get("etag"), zipped.headers.get("etag")
    if tag is not None:
        assert gz_tag == compression.gzip_etag(tag) != tag
        for headers, etag, status in [({**GZIP, "If-None-Match": gz_tag}, gz_tag, 304),
                                      ({**GZIP, "If-None-Match": f'"other", W/{gz_tag}'}, gz_tag, 304),
                                      ({**PLAIN, "If-None-Match": tag}, tag, 304),
                                      ({**PLAIN, "If-None-Match": gz_tag}, tag, 200)]:
            response, body = await raw_get(client, url, headers=headers, **kw)
            assert response.status_code == status and response.headers["etag"] == etag, (headers, response)
            assert response.headers["vary"] == "Accept-Encoding"
            assert (body == b"") is (status == 304)
    head, head_body = await raw_get(client, url, "HEAD", headers=GZIP, **kw)
    assert head.status_code == 200 and head_body == b""
    assert head.headers["content-encoding"] == "gzip" and head.headers["content-length"] == str(len(zipped_body))
    return plain_body, zipped_body


async def test_answers_over_1_kib_go_out_gzipped_once_per_version_and_query(tmp_path, monkeypatch):
    deflated_heads = Counted(monkeypatch, "deflate_head")
    joined = Counted(monkeypatch, "gzip_join")  # a gzip page made by the handler (the hot path only sends)
    whole_bodies = Counted(monkeypatch, "gzip_body")
    market = Market(seed=7, n_tokens=120)
    async with serve_market(market, tick_interval=None) as upstream:
        settings = fast_settings(upstream, data_dir=str(tmp_path), alert_price_pct=0.01, alert_min_volume_usd=0.0,
                                 alert_min_liquidity_usd=0.0)
        seeded = await seed_history(settings, [t.mint for t in market.tokens])
        async with running_service(settings) as (base, app), httpx.AsyncClient(base_url=base) as client:
            svc = app.state.service
            await wait_for(lambda: ready(client, base), timeout=20, message="ready")

            async def some_alerts() -> bool:  # the market moves only when told: a few moves, some alerts
                if len(svc.store.latest().recent_alerts) >= 10:
                    return True
                market.tick(3)
                market.invalidate()
                return False

            await wait_for(some_alerts, timeout=20, interval=0.5, message="alerts")
            seq = await settled(market, svc)
            # The first page of a 100-row view: by the handler, then from the hot path's bytes.
            plain, zipped = await check_both_encodings(client, "/api/tokens", params={"limit": "100"})
            body = orjson.loads(plain)
            assert body["seq"] == seq and len(body["data"]) == 100 and body["next_cursor"]
            assert deflated_heads.calls == 1  # the rows of this view and version, deflated once
            made = joined.calls
            for _ in range(5):
                response, again = await raw_get(client, "/api/tokens", params={"limit": "100"}, headers=GZIP)
                assert response.headers["content-encoding"] == "gzip" and gzip.decompress(again) == plain
            assert joined.calls == made  # all five from the hot path's bytes
            # Another spelling of the same view misses the hot path; the handler has the deflated rows.
            response, other = await raw_get(client, "/api/tokens", params={"limit": "100", "sort": "volume"},
                                            headers=GZIP)
            assert orjson.loads(gzip.decompress(other))["data"] == body["data"]
            assert deflated_heads.calls == 1
            # The next page, by its cursor.
            await check_both_encodings(client, "/api/tokens", params={"limit": "100", "cursor": body["next_cursor"]})
            assert deflated_heads.calls == 2
            # One token, its history, the alerts, the API's description: each gzip'd once for this version.
            address = next(a for a in (r["token_address"] for r in body["data"]) if a in seeded)
            whole_bodies.calls = 0
            for url, params in [(f"/api/tokens/{address}", {}),
                                (f"/api/tokens/{address}/history", {"interval": "1m", "limit": "1000"}),
                                ("/api/alerts", {"limit": "1000"})]:
                await check_both_encodings(client, url, params=params)
                await check_both_encodings(client, url, params=params)
            assert svc.store.latest().seq == seq, "the versions moved: the counts below would not hold"
            assert whole_bodies.calls == 3
            await check_both_encodings(client, "/openapi.json")
            assert whole_bodies.calls == 3  # made once, at start
            # Small answers stay plain, whatever the client takes; Accept-Encoding's q-values are honoured.
            response, small = await raw_get(client, "/api/alerts", params={"limit": "1"}, headers=GZIP)
            assert "content-encoding" not in response.headers and len(orjson.loads(small)["data"]) == 1
            assert response.headers["vary"] == "Accept-Encoding"
            for accept, encoded in [("gzip;q=0", False), ("br;q=1, gzip;q=0.5", True), ("*", True),
                                    ("*, gzip;q=0", False), ("deflate, br", False)]:
                response, _ = await raw_get(client, "/api/tokens", params={"limit": "100"},
                                            headers={"Accept-Encoding": accept})
                assert (response.headers.get("content-encoding") == "gzip") is encoded, accept
            health = await client.get("/health", headers=GZIP)
            assert health.status_code == 200 and health.headers["vary"] == "Accept-Encoding"
            assert ("content-encoding" in health.headers) is (len(health.content) > compression.MIN_SIZE)
