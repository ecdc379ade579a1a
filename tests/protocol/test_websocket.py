"""The server's WebSocket reader, sans-I/O: a client's frames in any chunking give the same messages, in order; each
RFC 6455 violation fails with its close code; a request head is an upgrade only when it is a well-formed one."""

from __future__ import annotations

import os
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pica.protocol.websocket import (
    MESSAGE_TOO_BIG,
    PROTOCOL_ERROR,
    Control,
    FrameReader,
    Message,
    Opcode,
    WebSocketError,
    accept_value,
    close_frame,
    head_length,
    parse_request_head,
    switching_protocols,
    unmask,
    upgrade_key,
)


def client_frame(payload: bytes, opcode: int = Opcode.TEXT, *, fin: bool = True, masked: bool = True,
                 rsv: int = 0, key: bytes | None = None) -> bytes:
    """A frame as a browser writes it: masked with a random key."""
    length = len(payload)
    first = (0x80 if fin else 0) | rsv | opcode
    bit = 0x80 if masked else 0
    if length < 126:
        header = bytes((first, bit | length))
    elif length < 65_536:
        header = bytes((first, bit | 126)) + struct.pack("!H", length)
    else:
        header = bytes((first, bit | 127)) + struct.pack("!Q", length)
    if not masked:
        return header + payload
    key = key or os.urandom(4)
    return header + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def read_all(stream: bytes, chunk: int, max_message: int = 1 << 20) -> list[Message | Control]:
    reader = FrameReader(max_message)
    events: list[Message | Control] = []
    for start in range(0, len(stream), chunk):
        events += reader.feed(stream[start:start + chunk])
    return events


def test_the_handshake_answer_is_rfc_6455s_example() -> None:
    assert accept_value("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 section 1.3
    answer = switching_protocols("dGhlIHNhbXBsZSBub25jZQ==", {"Server": "Pica"})
    assert answer.startswith(b"HTTP/1.1 101 Switching Protocols\r\n") and answer.endswith(b"\r\n\r\n")
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in answer and b"Server: Pica\r\n" in answer


UPGRADE = (b"GET /v1/ws?encoding=msgpack&device=phone&device=other HTTP/1.1\r\nHost: pica\r\nUpgrade: WebSocket\r\n"
           b"Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           b"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer abc\r\n\r\n")


def test_a_browsers_upgrade_is_recognised_with_its_query_and_headers() -> None:
    assert head_length(UPGRADE[:-1]) is None and head_length(UPGRADE + b"\x81") == len(UPGRADE)
    head = parse_request_head(UPGRADE)
    assert head is not None
    assert upgrade_key(head, "/v1/ws") == "dGhlIHNhbXBsZSBub25jZQ=="
    assert head.query == {"encoding": "msgpack", "device": "phone"}  # the first value, as aiohttp's query.get
    assert head.header("authorization") == "Bearer abc" and head.header("x-missing") == ""
    assert upgrade_key(head, "/v1/other") is None


@pytest.mark.parametrize("change", [
    (b"GET /v1/ws", b"POST /v1/ws"),
    (b"Upgrade: WebSocket", b"Upgrade: h2c"),
    (b"Connection: keep-alive, Upgrade", b"Connection: keep-alive"),
    (b"Sec-WebSocket-Version: 13", b"Sec-WebSocket-Version: 8"),
    (b"dGhlIHNhbXBsZSBub25jZQ==", b"c2hvcnQ="),  # a key that is not 16 bytes
    (b"Host: pica\r\n", b"Host: pica\r\nContent-Length: 3\r\n"),  # an upgrade has no body
    (b"HTTP/1.1", b"HTTP/1.0"),
    (b"Host: pica", b"Host : pica"),  # whitespace before the colon: not HTTP/1.1 (RFC 9112 5.1)
], ids=["method", "upgrade", "connection", "version", "key", "body", "http10", "header-space"])
def test_anything_but_a_well_formed_upgrade_is_left_to_aiohttp(change: tuple[bytes, bytes]) -> None:
    head = parse_request_head(UPGRADE.replace(*change))
    assert head is None or upgrade_key(head, "/v1/ws") is None


@given(payloads=st.lists(st.tuples(st.binary(max_size=300), st.sampled_from([Opcode.TEXT, Opcode.BINARY]),
                                   st.integers(1, 3)), max_size=6),
       chunk=st.integers(1, 64))
def test_messages_come_out_whole_and_in_order_in_any_chunking(
        payloads: list[tuple[bytes, Opcode, int]], chunk: int) -> None:
    stream = b""
    for payload, opcode, parts in payloads:  # each message in 1 to 3 fragments, a ping between fragments
        cuts = [len(payload) * i // parts for i in range(parts + 1)]
        for i in range(parts):
            stream += client_frame(payload[cuts[i]:cuts[i + 1]], opcode if i == 0 else Opcode.CONTINUATION,
                                   fin=i == parts - 1)
            if i < parts - 1:
                stream += client_frame(b"hb", Opcode.PING)
    events = read_all(stream, chunk)
    messages = [e for e in events if isinstance(e, Message)]
    assert [(m.opcode, m.payload) for m in messages] == [(opcode, payload) for payload, opcode, _ in payloads]
    pings = [e for e in events if isinstance(e, Control)]
    assert all(p.opcode is Opcode.PING and p.payload == b"hb" for p in pings)
    assert len(pings) == sum(parts - 1 for _, _, parts in payloads)


@given(payload=st.binary(max_size=2000), key=st.binary(min_size=4, max_size=4))
def test_unmasking_is_the_xor_of_the_repeated_key(payload: bytes, key: bytes) -> None:
    assert unmask(payload, key) == bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def test_a_close_frame_gives_its_code_and_reason() -> None:
    [event] = read_all(client_frame(struct.pack("!H", 1001) + "bye ✓".encode(), Opcode.CLOSE), 3)
    assert isinstance(event, Control) and (event.opcode, event.code, event.reason) == (Opcode.CLOSE, 1001, "bye ✓")
    [empty] = read_all(client_frame(b"", Opcode.CLOSE), 100)
    assert isinstance(empty, Control) and empty.code == 1005


@pytest.mark.parametrize(("stream", "code"), [
    (client_frame(b"hi", masked=False), PROTOCOL_ERROR),
    (client_frame(b"hi", rsv=0x40), PROTOCOL_ERROR),  # a compressed frame, but no extension was agreed
    (client_frame(b"hi", 0x3), PROTOCOL_ERROR),  # a reserved opcode
    (client_frame(b"x" * 126, Opcode.PING), PROTOCOL_ERROR),
    (client_frame(b"x", Opcode.PING, fin=False), PROTOCOL_ERROR),
    (client_frame(b"x", Opcode.CONTINUATION), PROTOCOL_ERROR),
    (client_frame(b"a", fin=False) + client_frame(b"b"), PROTOCOL_ERROR),  # a new message inside a fragmented one
    (client_frame(b"\x03"[:1], Opcode.CLOSE), PROTOCOL_ERROR),  # a one-byte close payload
    (client_frame(struct.pack("!H", 1005), Opcode.CLOSE), PROTOCOL_ERROR),  # a code never sent on the wire
    (client_frame(struct.pack("!H", 1000) + b"\xff", Opcode.CLOSE), 1007),
    (client_frame(b"x" * 1025), MESSAGE_TOO_BIG),
    (client_frame(b"x" * 600, fin=False) + client_frame(b"x" * 600, Opcode.CONTINUATION), MESSAGE_TOO_BIG),
], ids=["unmasked", "rsv", "opcode", "long-ping", "fragmented-ping", "stray-continuation", "interleaved",
        "close-1-byte", "close-1005", "close-not-utf8", "too-big", "too-big-in-fragments"])
def test_each_violation_fails_the_stream_with_its_close_code(stream: bytes, code: int) -> None:
    reader = FrameReader(1024)
    with pytest.raises(WebSocketError) as failed:
        reader.feed(stream)
    assert failed.value.close_code == code
    with pytest.raises(WebSocketError):
        reader.feed(client_frame(b"ok"))  # a failed stream stays failed


def test_an_oversized_message_is_refused_from_its_header_before_its_payload_arrives() -> None:
    header = client_frame(b"x" * 70_000)[:14]  # the header and the key only
    with pytest.raises(WebSocketError) as failed:
        FrameReader(65_536).feed(header)
    assert failed.value.close_code == MESSAGE_TOO_BIG


def test_a_close_reason_is_cut_to_fit_a_control_frame_without_splitting_a_character() -> None:
    frame = close_frame(4001, "é" * 100)
    assert frame[0] == 0x88 and frame[1] <= 125
    assert struct.unpack("!H", frame[2:4]) == (4001,)
    frame[4:].decode()  # whole characters only
