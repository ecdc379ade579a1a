"""RFC 6455 §5.1: every frame a client sends must be masked, and a server must fail a connection that sends one
that is not (close 1002). aiohttp's WebSocket reader (3.14) unmasks when the bit is set and accepts the frame as it
is when it is not, in both its C and its Python versions, and keeps no trace of the bit for its caller. So the HTTP
port's socket protocol (pica.api.socket) walks the frame headers of the client's stream itself, ahead of aiohttp,
with this checker: bytes in, the offset of the first unmasked frame out. It reads headers only and skips payloads,
so its cost is a few operations per frame, not per byte.
"""

from __future__ import annotations

import struct
from typing import Final

PROTOCOL_ERROR: Final = 1002

_MASK_BIT: Final = 0x80
_LENGTH_16: Final = 126
_LENGTH_64: Final = 127


def fail_frame(reason: bytes = b"unmasked frame") -> bytes:
    """The server's close frame 1002 (unmasked, as server frames are)."""
    payload = struct.pack("!H", PROTOCOL_ERROR) + reason[:123]
    return bytes((0x88, len(payload))) + payload


class MaskCheck:
    """Follows frame boundaries in a client's byte stream, starting at a frame boundary (right after the upgrade).

    ``feed(data)`` returns None while every frame header seen is masked, else the offset in ``data`` where the first
    unmasked frame's header starts (0 when that header began in an earlier chunk). After a violation the checker
    stays failed."""

    __slots__ = ("_failed", "_head", "_skip")

    def __init__(self) -> None:
        self._skip = 0
        """Payload bytes (and the rest of the header) still to pass before the next frame header."""
        self._head = bytearray()
        """The first bytes of a header split across chunks (at most 10: up to the end of a 64-bit length)."""
        self._failed = False

    def feed(self, data: bytes) -> int | None:
        if self._failed:
            return 0
        pos, end = 0, len(data)
        while pos < end:
            if self._skip:
                step = min(self._skip, end - pos)
                self._skip -= step
                pos += step
                continue
            start = pos - len(self._head)  # where this header began (negative: in an earlier chunk)
            if len(self._head) < 2:
                take = min(2 - len(self._head), end - pos)
                self._head += data[pos:pos + take]
                pos += take
                if len(self._head) < 2:
                    break
                if not self._head[1] & _MASK_BIT:
                    self._failed = True
                    return max(start, 0)
            short = self._head[1] & 0x7F
            extended = 2 if short == _LENGTH_16 else 8 if short == _LENGTH_64 else 0
            if len(self._head) < 2 + extended:
                take = min(2 + extended - len(self._head), end - pos)
                self._head += data[pos:pos + take]
                pos += take
                if len(self._head) < 2 + extended:
                    break
            length = int.from_bytes(self._head[2:2 + extended], "big") if extended else short
            self._head.clear()
            self._skip = 4 + length  # the masking key, then the payload
        return None
