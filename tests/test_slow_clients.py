"""Slow and stalled stream clients, end to end: a client that stops reading is judged by what it has not
taken (our queue, the transport's buffer, the kernel's) and gets a real close frame 4008 (WebSocket) or the
end of its stream (SSE) within 15 s, while the others keep receiving."""

from __future__ import annotations

import asyncio
import socket
import struct
import time

import anyio
import httpx
import pytest

from app.demo.market import Market
from app.demo.server import serve_market
from tests.support import fast_settings, running_service, wait_for
from tests.test_streams import SSEClient, ready, stalled_socket, ws_handshake, ws_text_frame

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]


def ws_frames(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, payload) of each complete unmasked server frame in `data`."""
    frames, i = [], 0
    while i + 2 <= len(data):
        opcode, size = data[i] & 0x0F, data[i + 1] & 0x7F
        i += 2
        if size == 126:
            size, i = struct.unpack_from(">H", data, i)[0], i + 2
        elif size == 127:
            size, i = struct.unpack_from(">Q", data, i)[0], i + 8
        if i + size > len(data):
            break
        frames.append((opcode, data[i:i + size]))
        i += size
    return frames


async def read_to_end(sock: socket.socket) -> tuple[bytes, str]:
    """Everything the server still sends (within 10 s), and how the connection ended ("eof" or "reset")."""
    loop = asyncio.get_running_loop()
    received = bytearray()
    with anyio.fail_after(10):
        while True:
            try:
                chunk = await loop.sock_recv(sock, 1 << 20)
            except ConnectionResetError:
                return bytes(received), "reset"
            if not chunk:
                return bytes(received), "eof"
            received += chunk


@pytest.mark.parametrize("heartbeat_s", [5.0])  # write stall timeout: min(10, 2 x heartbeat) = 10 s
async def test_a_stalled_websocket_gets_a_4008_close_frame_and_a_stalled_sse_stream_ends_within_15_s(
        tmp_path, heartbeat_s):
    market = Market(seed=41, n_tokens=150)
    async with serve_market(market, tick_interval=0.2) as upstream:
        settings = fast_settings(upstream, heartbeat_s=heartbeat_s, data_dir=str(tmp_path))
        async with running_service(settings) as (base, app), httpx.AsyncClient() as client:
            await wait_for(lambda: ready(client, base), timeout=20, message="ready")
            hub = app.state.service.hub
            assert hub.stall_s == 10.0
            await wait_for(lambda: len(app.state.service.store.latest().records) >= 100, timeout=20,
                           message="a big universe")
            healthy = SSEClient(client, f"{base}/api/stream?limit=100")
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(healthy.run)
                await wait_for(lambda: healthy.rows, timeout=10, message="a healthy client's snapshot")
                started = time.monotonic()
                ws = await stalled_socket(base, ws_handshake("/ws"),
                                          ws_text_frame({"op": "subscribe", "id": "s", "view": {"limit": 100}}))
                sse = await stalled_socket(base, b"GET /api/stream?limit=100 HTTP/1.1\r\nHost: x\r\n\r\n")
                try:
                    dropped = hub.metrics.dropped_clients
                    await wait_for(lambda: dropped.labels("ws")._value.get() >= 1
                                   and dropped.labels("sse")._value.get() >= 1,
                                   timeout=15, message="both stalled clients judged too slow")
                    judged_in = time.monotonic() - started
                    # The client reads again: what was buffered for it, then the end, cleanly.
                    ws_data, ws_end = await read_to_end(ws)
                    sse_data, sse_end = await read_to_end(sse)
                    ended_in = time.monotonic() - started
                finally:
                    ws.close()
                    sse.close()
                frames = ws_frames(ws_data)  # (stalled_socket read the handshake answer)
                assert frames and frames[-1][0] == 0x8, (frames[-3:], ws_end)  # a close frame, last
                assert struct.unpack(">H", frames[-1][1][:2])[0] == 4008
                assert frames[-1][1][2:] == b"too slow to keep up"
                assert all(op == 0x1 for op, _ in frames[:-1])  # whole text frames before it: nothing torn
                assert sse_data.endswith(b"\r\n0\r\n\r\n") and sse_end == "eof"  # the chunked stream's end
                assert judged_in < 15 and ended_in < 15, (judged_in, ended_in)
                print(f"judged slow after {judged_in:.1f} s, close frame read after {ended_in:.1f} s; "
                      f"{len(frames)} WS frames, {len(sse_data)} SSE bytes")
                # The healthy client kept receiving throughout.
                deltas = [t for kind, _, t in healthy.events if kind == "delta" and t > started]
                assert len(deltas) >= 10 and max(b - a for a, b in zip(deltas, deltas[1:])) < 2.0
                assert not any(c.closed for c in hub.connections)
                tasks.cancel_scope.cancel()


async def test_a_client_that_reads_slowly_but_keeps_up_is_not_dropped(tmp_path):
    """Progress is judged by what the client acknowledges: one draining a little every second stays."""
    market = Market(seed=42, n_tokens=60)
    async with serve_market(market, tick_interval=0.5) as upstream:
        settings = fast_settings(upstream, heartbeat_s=1.0, data_dir=str(tmp_path))  # stall timeout 2 s
        async with running_service(settings) as (base, app), httpx.AsyncClient() as client:
            await wait_for(lambda: ready(client, base), timeout=20, message="ready")
            hub = app.state.service.hub
            sock = await stalled_socket(base, b"GET /api/stream?limit=10 HTTP/1.1\r\nHost: x\r\n\r\n")
            loop = asyncio.get_running_loop()
            try:
                received = 0
                deadline = time.monotonic() + 8
                while time.monotonic() < deadline:
                    await anyio.sleep(0.5)  # a client that takes its data in bursts, twice a second
                    try:
                        while chunk := sock.recv(65536):
                            received += len(chunk)
                    except BlockingIOError:
                        pass
                assert received > 0
                assert hub.metrics.dropped_clients.labels("sse")._value.get() == 0
                assert [c.closed for c in hub.connections] == [None]
            finally:
                sock.close()
                del loop
