"""The wire's compression codecs, on their own: gzip answers (app.api.compression) and shared
permessage-deflate frames (app.streams.deflate). Over HTTP and WebSocket: tests/test_wire.py."""

from __future__ import annotations

import gzip
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from app.api.compression import accepts_gzip, deflate_head, gzip_body, gzip_etag, gzip_join
from app.streams.deflate import MIN_COMPRESS, FrameCache, compressed_wire, wire


@pytest.mark.parametrize(("header", "accepted"), [
    ("gzip", True), ("gzip, deflate, br, zstd", True), ("GZip;Q=0.5", True), ("x-gzip", True),
    ("gzip;q=0.001", True), ("br;q=1.0, gzip;q=0", False), ("gzip;q=0.0", False), ("*", True),
    ("*;q=0", False), ("*, gzip;q=0", False), ("gzip;q=0, *", False), ("identity", False), ("deflate, br", False),
    ("gzip;q=nonsense", False), ("gzip;q=2", False), ("", False), (None, False), (b"gzip, deflate", True),
])
def test_accept_encoding_honours_q_values(header, accepted):
    assert accepts_gzip(header) is accepted


def test_gzip_etag_is_another_tag_and_keeps_weakness():
    assert gzip_etag('"e:1:abc"') == '"e:1:abc-gzip"'
    assert gzip_etag('W/"e:1"') == 'W/"e:1-gzip"'


@settings(max_examples=60, deadline=None)
@given(head=st.binary(max_size=3000), tail=st.binary(max_size=70_000))
def test_a_cached_deflated_head_and_a_stored_tail_make_one_valid_gzip_body(head, tail):
    body = gzip_join(deflate_head(head), tail)
    assert gzip.decompress(body) == head + tail
    # One member, read to its end by a single streaming decoder (as httpx and browsers read it).
    decoder = zlib.decompressobj(31)
    assert decoder.decompress(body) == head + tail and decoder.eof and decoder.unused_data == b""


def test_a_page_sized_json_body_shrinks_and_round_trips():
    rows = b",".join(f'{{"token_address":"{i:032d}","price_usd":0.000{i},"stats":{{"5m":{{"buys":{i}}}}}}}'.encode()
                     for i in range(400))
    body = b'{"data":[' + rows + b'],"next_cursor":"abc","seq":1}'
    assert len(gzip_body(body)) < len(body) / 4 and gzip.decompress(gzip_body(body)) == body
    head, tail = body[:-30], body[-30:]
    assert abs(len(gzip_join(deflate_head(head), tail)) - len(gzip_body(body))) < 100


def read_frame(data: bytes, extension: PerMessageDeflate | None) -> Frame:
    """A server frame as the `websockets` client parses it (with its negotiated extension)."""
    reader = StreamReader()
    reader.feed_data(data)
    parser = Frame.parse(reader.read_exact, mask=False, extensions=[extension] if extension else [])
    try:
        next(parser)
    except StopIteration as done:
        return done.value
    raise AssertionError("incomplete frame")


@pytest.mark.parametrize("size", [0, MIN_COMPRESS - 1, MIN_COMPRESS, 5000, 70_000, 300_000])
@pytest.mark.parametrize("bits", [9, 12, 15])
def test_a_shared_compressed_frame_is_what_a_client_with_or_without_context_takeover_reads(size, bits):
    items = ",".join([f'{{"price_usd":{i}}}' for i in range(size // 16)])
    text = ('{"type":"delta","id":"s","upsert":[' + items + "]}")[:size] if size else ""
    # A client that keeps its decompression context (as if server_no_context_takeover had not been
    # agreed) reads independently compressed messages as well as one that resets it each time.
    for reset in (True, False):
        client = PerMessageDeflate(reset, False, bits, 12)
        for _ in range(3):
            frame = read_frame(wire(text, bits), client)
            assert frame.opcode is Opcode.TEXT and frame.fin and frame.data.decode() == text
    assert wire(text, None) == Frame(Opcode.TEXT, text.encode()).serialize(mask=False)
    if len(text) >= MIN_COMPRESS:
        assert wire(text, bits)[0] == 0xC1  # RSV1: compressed
        assert len(wire(text, bits)) < len(text)


def test_frames_mixed_with_the_servers_own_compressed_frames_decode_in_order():
    """Direct frames and frames compressed by websockets' own extension (the ASGI path), interleaved on
    one connection, decode in order: neither refers back to the other's bytes."""
    from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory

    from app.streams.deflate import factory

    params, server_ext = factory().process_request_params([], [])
    assert ("server_no_context_takeover", None) in params and ("client_no_context_takeover", None) in params
    assert isinstance(factory(), ServerPerMessageDeflateFactory)
    client = PerMessageDeflate(True, True, 15, 12)
    texts = [f'{{"n":{i},"pad":"{"ab" * (50 * i)}"}}' for i in range(12)]
    for i, text in enumerate(texts):
        if i % 2:
            data = wire(text, 15)
        else:
            data = Frame(Opcode.TEXT, text.encode()).serialize(mask=False, extensions=[server_ext])
        assert read_frame(data, client).data.decode() == text


def test_the_frame_cache_compresses_a_message_once_and_stays_bounded():
    cache = FrameCache(max_bytes=200_000)
    text = '{"type":"snapshot","rows":[' + ",".join([f'{{"a":{i}}}' for i in range(3000)]) + "]}"
    first = cache.wire(text, 15)
    assert cache.wire(text, 15) is first and cache.compressed == 1
    assert cache.wire(text, 12) is not first and cache.compressed == 2  # another window, another frame
    assert first == compressed_wire(text.encode(), 15)
    for i in range(100):
        cache.wire(text + " " * i, 15)
    assert cache.bytes <= cache.max_bytes
    assert cache.wire("small", 15) == wire("small", None)  # small messages go uncompressed
