"""RFC 6455 WebSocket for the server side, sans-I/O: the opening handshake's request head and the client's frames.

The HTTP port serves the API through aiohttp, but a WebSocket that lives for hours does not need aiohttp's request,
response, handler task and reader for all that time: they cost about 13 KiB per idle connection, eight times the
framed TCP transport. So the port's socket protocol (pica.gateway.ws_raw) reads the first request head itself, and
when it is a well-formed upgrade to ``/v1/ws`` it answers the handshake and carries the socket on with this module's
:class:`FrameReader`; anything else goes to aiohttp, unchanged. This module takes bytes and returns decisions: it never
touches a socket.

What the reader enforces on the client's frames (RFC 6455 section 5):

- every frame is masked (5.1), no reserved bit is set (no extension is negotiated, 5.2), the opcode is known;
- control frames (close, ping, pong) have at most 125 bytes and are not fragmented (5.5), and may come between the
  fragments of a message (5.4);
- continuation frames only continue a started message, and a new message does not start inside one;
- a message, whole or reassembled from fragments, is at most ``max_message`` bytes, checked from each frame header
  before its payload is buffered (close 1009);
- a close frame's payload is empty, or a status code and UTF-8 reason.

A violation raises :class:`WebSocketError` with the close code the connection must be failed with.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qsl, urlsplit

ACCEPT_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_HEAD_BYTES: Final = 16_384
"""A request head longer than this is not ours to parse: aiohttp gets it (and answers its own limits' errors)."""
MAX_CONTROL_PAYLOAD: Final = 125

PROTOCOL_ERROR: Final = 1002
MESSAGE_TOO_BIG: Final = 1009
NORMAL_CLOSURE: Final = 1000


class Opcode(enum.IntEnum):
    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


_DATA: Final = frozenset({Opcode.TEXT, Opcode.BINARY})
_KNOWN: Final = frozenset(int(op) for op in Opcode)
_OPCODES: Final = {int(op): op for op in Opcode}
"""Opcode by number: a dict lookup, where ``Opcode(n)`` costs an enum call per frame."""
_FIRST_CONTROL: Final = int(Opcode.CLOSE)


class WebSocketError(Exception):
    """The client broke the protocol: fail the connection with ``close_code``."""

    def __init__(self, close_code: int, reason: str) -> None:
        super().__init__(reason)
        self.close_code = close_code
        self.reason = reason


# --------------------------------------------------------------------------------------------------- handshake


@dataclass(frozen=True, slots=True)
class RequestHead:
    method: str
    path: str
    query: Mapping[str, str]
    """The first value of each query parameter."""
    headers: Mapping[str, str]
    """Lower-cased names; repeated headers joined with ``, `` (RFC 9110 5.3)."""

    def header(self, name: str) -> str:
        return self.headers.get(name, "")


def head_length(data: bytes | bytearray) -> int | None:
    """The length of the request head at the start of ``data`` (through its blank line), None while incomplete."""
    end = data.find(b"\r\n\r\n")
    return None if end < 0 else end + 4


def parse_request_head(head: bytes | bytearray) -> RequestHead | None:
    """A complete request head, parsed; None if it is not well-formed HTTP/1.1 (the caller leaves it to aiohttp)."""
    lines = bytes(head).decode("latin-1").split("\r\n")  # latin-1 decodes every byte
    request_line = lines[0].split(" ")
    if len(request_line) != 3 or request_line[2] != "HTTP/1.1":
        return None
    method, target, _ = request_line
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip() or any(c in name for c in " \t"):
            return None
        key = name.lower()
        value = value.strip(" \t")
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    if not target.startswith("/"):
        return None
    parts = urlsplit(target)
    query: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        query.setdefault(key, value)
    return RequestHead(method, parts.path, query, headers)


def _tokens(value: str) -> set[str]:
    return {token.strip().lower() for token in value.split(",")}


def upgrade_key(head: RequestHead, path: str) -> str | None:
    """The client's ``Sec-WebSocket-Key`` if ``head`` is a well-formed RFC 6455 opening handshake for ``path`` (a
    GET with ``Upgrade: websocket``, ``Connection: upgrade``, version 13 and a 16-byte base64 key, no body); None
    otherwise."""
    if head.method != "GET" or head.path != path:
        return None
    if "websocket" not in _tokens(head.header("upgrade")) or "upgrade" not in _tokens(head.header("connection")):
        return None
    if head.header("sec-websocket-version") != "13":
        return None
    if "content-length" in head.headers or "transfer-encoding" in head.headers:
        return None
    key = head.header("sec-websocket-key")
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            return None
    except ValueError:
        return None
    return key


def accept_value(key: str) -> str:
    """``Sec-WebSocket-Accept`` for the client's key (RFC 6455 4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + ACCEPT_GUID).digest()).decode("ascii")


def switching_protocols(key: str, extra_headers: Mapping[str, str]) -> bytes:
    """The whole ``101 Switching Protocols`` answer."""
    headers = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Accept": accept_value(key),
               **extra_headers}
    head = "HTTP/1.1 101 Switching Protocols\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    return head.encode("latin-1")


# --------------------------------------------------------------------------------------------------- frames


def close_frame(code: int, reason: str = "") -> bytes:
    """A server close frame (unmasked); the reason is cut to fit a control frame."""
    reason_bytes = reason.encode()[:MAX_CONTROL_PAYLOAD - 2]
    while True:  # never cut a UTF-8 sequence in half
        try:
            reason_bytes.decode()
            break
        except UnicodeDecodeError:
            reason_bytes = reason_bytes[:-1]
    payload = struct.pack("!H", code) + reason_bytes
    return bytes((0x80 | Opcode.CLOSE, len(payload))) + payload


def control_frame(opcode: Opcode, payload: bytes) -> bytes:
    """A server ping or pong frame (unmasked)."""
    return bytes((0x80 | opcode, len(payload))) + payload


def unmask(payload: bytes | bytearray, mask: bytes) -> bytes:
    """XOR ``payload`` with the 4-byte ``mask`` repeated: one big-integer XOR, not a Python loop per byte."""
    length = len(payload)
    if not length:
        return b""
    key = mask * (length // 4 + 1)
    value = int.from_bytes(payload, "little") ^ int.from_bytes(key[:length], "little")
    return value.to_bytes(length, "little")


@dataclass(frozen=True, slots=True)
class Message:
    """A complete data message (text or binary)."""

    opcode: Opcode
    payload: bytes


@dataclass(frozen=True, slots=True)
class Control:
    """A ping, pong or close frame. For close: ``code`` (1005 when the payload was empty) and ``reason``."""

    opcode: Opcode
    payload: bytes
    code: int = 0
    reason: str = ""


Event = Message | Control

_NO_STATUS: Final = 1005


def _close_details(payload: bytes) -> tuple[int, str]:
    if not payload:
        return _NO_STATUS, ""
    if len(payload) == 1:
        raise WebSocketError(PROTOCOL_ERROR, "close frame with a one-byte payload")
    (code,) = struct.unpack_from("!H", payload)
    if not (1000 <= code <= 1014 and code not in (1004, 1005, 1006)) and not 3000 <= code <= 4999:
        raise WebSocketError(PROTOCOL_ERROR, f"invalid close code {code}")
    try:
        reason = payload[2:].decode()
    except UnicodeDecodeError:
        raise WebSocketError(1007, "close reason is not UTF-8") from None
    return code, reason


class FrameReader:
    """The client's byte stream in, complete messages and control frames out, in order.

    ``feed()`` returns the events found so far. After it has raised, the stream is unusable."""

    __slots__ = ("_broken", "_buffer", "_fragments", "_fragments_opcode", "_max_message")

    def __init__(self, max_message: int) -> None:
        self._buffer = bytearray()
        self._max_message = max_message
        self._fragments: list[bytes] | None = None
        self._fragments_opcode = Opcode.TEXT
        self._broken = False

    def _fail(self, code: int, reason: str) -> WebSocketError:
        self._broken = True
        self._buffer.clear()
        self._fragments = None
        return WebSocketError(code, reason)

    def feed(self, data: bytes) -> list[Event]:
        if self._broken:
            raise WebSocketError(PROTOCOL_ERROR, "stream already failed")
        buffer = self._buffer
        buffer += data
        events: list[Event] = []
        offset, end = 0, len(buffer)
        while end - offset >= 2:
            first, second = buffer[offset], buffer[offset + 1]
            fin, opcode = first & 0x80, first & 0x0F
            if first & 0x70:
                raise self._fail(PROTOCOL_ERROR, "reserved bits set (no extension was negotiated)")
            if opcode not in _KNOWN:
                raise self._fail(PROTOCOL_ERROR, f"unknown opcode {opcode}")
            if not second & 0x80:
                raise self._fail(PROTOCOL_ERROR, "unmasked frame")
            length = second & 0x7F
            header = 2
            if length == 126:
                if end - offset < 4:
                    break
                (length,) = struct.unpack_from("!H", buffer, offset + 2)
                header = 4
            elif length == 127:
                if end - offset < 10:
                    break
                (length,) = struct.unpack_from("!Q", buffer, offset + 2)
                header = 10
            control = opcode >= _FIRST_CONTROL
            if control:
                if length > MAX_CONTROL_PAYLOAD or not fin:
                    raise self._fail(PROTOCOL_ERROR, "control frame too long or fragmented")
            else:
                held = sum(map(len, self._fragments)) if self._fragments is not None else 0
                if held + length > self._max_message:
                    raise self._fail(MESSAGE_TOO_BIG,
                                     f"message of {held + length} bytes exceeds the limit of {self._max_message}")
            total = header + 4 + length
            if end - offset < total:
                break
            mask = bytes(buffer[offset + header:offset + header + 4])
            start = offset + header + 4
            payload = unmask(buffer[start:start + length], mask)
            offset += total
            if control:
                if opcode == Opcode.CLOSE:
                    try:
                        code, reason = _close_details(payload)
                    except WebSocketError as exc:
                        raise self._fail(exc.close_code, exc.reason) from None
                    events.append(Control(Opcode.CLOSE, payload, code, reason))
                else:
                    events.append(Control(_OPCODES[opcode], payload))
                continue
            if opcode == Opcode.CONTINUATION:
                if self._fragments is None:
                    raise self._fail(PROTOCOL_ERROR, "continuation frame without a message to continue")
                self._fragments.append(payload)
                if fin:
                    events.append(Message(self._fragments_opcode, b"".join(self._fragments)))
                    self._fragments = None
                continue
            if self._fragments is not None:
                raise self._fail(PROTOCOL_ERROR, "a new message started inside a fragmented one")
            if fin:
                events.append(Message(_OPCODES[opcode], payload))
            else:
                self._fragments = [payload]
                self._fragments_opcode = _OPCODES[opcode]
        if offset:
            del buffer[:offset]
        return events
