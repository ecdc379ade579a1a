"""Encoding and decoding of frames: pure functions from bytes to frames and back.

The decoder never raises anything but :class:`~pica.errors.InvalidFrame` or :class:`~pica.errors.UnknownFrame`,
whatever bytes it is given (checked by a Hypothesis property test).
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Final, TypeVar

import msgspec

from pica.errors import InvalidFrame, UnknownFrame
from pica.protocol import frames as f

MALFORMED: Final = (msgspec.DecodeError, RecursionError, UnicodeError)
"""What msgspec raises for bytes that are not a well-formed document: bad syntax, nesting too deep, and (msgspec
0.22) a string that is not UTF-8, which comes out as a bare UnicodeDecodeError rather than a DecodeError."""


class Encoding(Enum):
    JSON = "json"
    MSGPACK = "msgpack"


_json_encoder: Final = msgspec.json.Encoder()
_msgpack_encoder: Final = msgspec.msgpack.Encoder()
_client_decoders: Final = {
    Encoding.JSON: msgspec.json.Decoder(f.ClientFrame),
    Encoding.MSGPACK: msgspec.msgpack.Decoder(f.ClientFrame),
}
_server_decoders: Final = {
    Encoding.JSON: msgspec.json.Decoder(f.ServerFrame),
    Encoding.MSGPACK: msgspec.msgpack.Decoder(f.ServerFrame),
}
_raw_decoders: Final[dict[Encoding, msgspec.json.Decoder[Any] | msgspec.msgpack.Decoder[Any]]] = {
    Encoding.JSON: msgspec.json.Decoder(),
    Encoding.MSGPACK: msgspec.msgpack.Decoder(),
}

FrameT = TypeVar("FrameT")


def encode(frame: msgspec.Struct, encoding: Encoding) -> bytes:
    if encoding is Encoding.JSON:
        return _json_encoder.encode(frame)
    return _msgpack_encoder.encode(frame)


def encode_value(value: Any, encoding: Encoding) -> bytes:
    """Encode a plain value (used for bodies and HTTP payloads)."""
    if encoding is Encoding.JSON:
        return _json_encoder.encode(value)
    return _msgpack_encoder.encode(value)


def decode_client_frame(data: bytes | str, encoding: Encoding) -> f.ClientFrame:
    """Decode a frame a client sent. Raises InvalidFrame or UnknownFrame only."""
    return _decode(data, encoding, _client_decoders[encoding], f.CLIENT_FRAME_TYPES)  # type: ignore[no-any-return]


def decode_server_frame(data: bytes | str, encoding: Encoding) -> f.ServerFrame:
    """Decode a frame a server sent (used by clients). Raises InvalidFrame or UnknownFrame only."""
    return _decode(data, encoding, _server_decoders[encoding], f.SERVER_FRAME_TYPES)  # type: ignore[no-any-return]


def _decode(data: bytes | str, encoding: Encoding, decoder: Any, known: frozenset[str]) -> Any:
    try:
        return decoder.decode(data)
    except msgspec.ValidationError as exc:
        frame_type = _frame_type(data, encoding)
        if frame_type is not None and frame_type not in known:
            raise UnknownFrame(f"unknown frame type {frame_type[:32]!r}") from None
        raise InvalidFrame(str(exc)) from None
    except MALFORMED as exc:
        raise InvalidFrame(f"malformed frame: {exc}"[:200]) from None


def _frame_type(data: bytes | str, encoding: Encoding) -> str | None:
    try:
        raw = _raw_decoders[encoding].decode(data.encode() if isinstance(data, str) else data)
    except MALFORMED:
        return None
    if isinstance(raw, dict):
        t = raw.get("t")
        if isinstance(t, str):
            return t
    return None
