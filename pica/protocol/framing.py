"""Length-prefixed framing for the TCP transport, sans-I/O.

Each frame on the wire is a 4-byte unsigned big-endian payload length followed by that many bytes of MessagePack.
The reader checks the declared length against its limit as soon as the 4 header bytes are in, before it buffers or
allocates the payload, so an oversized frame costs the server nothing.
"""

from __future__ import annotations

import struct
from typing import Final

from pica.errors import FrameTooLarge, InvalidFrame

HEADER: Final = struct.Struct(">I")
HEADER_SIZE: Final = HEADER.size


def frame_bytes(payload: bytes) -> bytes:
    """Prefix ``payload`` with its length."""
    return HEADER.pack(len(payload)) + payload


class FrameReader:
    """Turns a byte stream into frame payloads.

    ``feed()`` returns the complete payloads found so far. After it has raised (FrameTooLarge, InvalidFrame) the
    stream is unusable: the caller must close the connection.
    """

    __slots__ = ("_broken", "_buffer", "_max_frame")

    def __init__(self, max_frame: int) -> None:
        self._buffer = bytearray()
        self._max_frame = max_frame
        self._broken = False

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        if self._broken:
            raise InvalidFrame("stream already failed")
        buffer = self._buffer
        buffer += data
        payloads: list[bytes] = []
        offset = 0
        end = len(buffer)
        while end - offset >= HEADER_SIZE:
            (length,) = HEADER.unpack_from(buffer, offset)
            if length > self._max_frame:
                self._broken = True
                buffer.clear()
                raise FrameTooLarge(f"frame of {length} bytes exceeds the limit of {self._max_frame}")
            if length == 0:
                self._broken = True
                buffer.clear()
                raise InvalidFrame("empty frame")
            if end - offset - HEADER_SIZE < length:
                break
            start = offset + HEADER_SIZE
            payloads.append(bytes(buffer[start : start + length]))
            offset = start + length
        if offset:
            del buffer[:offset]
        return payloads
