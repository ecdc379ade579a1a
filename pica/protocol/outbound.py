"""A server frame encoded at most once per wire form, however many connections it is written to.

Group fan-out writes the same bytes to thousands of sockets; this object makes that one encode (per encoding and
transport framing), not one per recipient.
"""

from __future__ import annotations

import struct

import msgspec

from pica.protocol.codec import Encoding, encode
from pica.protocol.framing import frame_bytes

_WS_TEXT = 0x1
_WS_BINARY = 0x2


def ws_frame(payload: bytes, opcode: int) -> bytes:
    """An unmasked, unfragmented RFC 6455 frame (server to client), FIN set, no extensions."""
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x80 | opcode, length)
    elif length < 65_536:
        header = struct.pack("!BBH", 0x80 | opcode, 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 127, length)
    return header + payload


class OutboundFrame:
    __slots__ = ("_json", "_msgpack", "_tcp", "_ws_binary", "_ws_text", "committed_at", "frame")

    def __init__(self, frame: msgspec.Struct, committed_at: float = 0.0) -> None:
        self.frame = frame
        self.committed_at = committed_at
        """For a stored message pushed after its commit: when the commit's answer reached the node (monotonic
        seconds), which the gateway's delivery-latency histogram measures from; 0.0 for every other frame."""
        self._json: bytes | None = None
        self._msgpack: bytes | None = None
        self._tcp: bytes | None = None
        self._ws_text: bytes | None = None
        self._ws_binary: bytes | None = None

    def payload(self, encoding: Encoding) -> bytes:
        if encoding is Encoding.JSON:
            if self._json is None:
                self._json = encode(self.frame, Encoding.JSON)
            return self._json
        if self._msgpack is None:
            self._msgpack = encode(self.frame, Encoding.MSGPACK)
        return self._msgpack

    def tcp_bytes(self) -> bytes:
        """The MessagePack payload with its TCP length prefix."""
        if self._tcp is None:
            self._tcp = frame_bytes(self.payload(Encoding.MSGPACK))
        return self._tcp

    def ws_bytes(self, encoding: Encoding) -> bytes:
        """A whole WebSocket frame: text carrying JSON, or binary carrying MessagePack."""
        if encoding is Encoding.JSON:
            if self._ws_text is None:
                self._ws_text = ws_frame(self.payload(Encoding.JSON), _WS_TEXT)
            return self._ws_text
        if self._ws_binary is None:
            self._ws_binary = ws_frame(self.payload(Encoding.MSGPACK), _WS_BINARY)
        return self._ws_binary
