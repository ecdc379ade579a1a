"""What travels on the bus: envelopes around already-encoded frames. Pure functions, no I/O.

An envelope is a MessagePack array whose last element is the frame itself, embedded as the MessagePack map the
sending node already built for its own MessagePack clients (``OutboundFrame.payload``): encoding an envelope copies
bytes and never re-encodes the frame. The receiving node decodes the whole envelope in one pass, straight into the
typed frame of the protocol model (``frames.ServerFrame``), so the frame is validated exactly as a client would
validate it, by the same structs.

Shapes (positional, to stay small):

- user channel ``{prefix}u:{user_id}``: ``[origin, frame]``
- ``{prefix}groups``: ``[origin, conversation_id, version, seq, also, frame]``
- ``{prefix}control``: ``[origin, kind, reason]`` (``kind`` is ``"resync"``)
"""

from __future__ import annotations

from typing import Final

import msgspec

from pica.protocol import frames as f

RESYNC: Final = "resync"


class UserEnvelope(msgspec.Struct, array_like=True, frozen=True):
    origin: str
    frame: f.ServerFrame


class GroupEnvelope(msgspec.Struct, array_like=True, frozen=True):
    origin: str
    conversation_id: str
    version: int
    seq: int
    also: tuple[int, ...]
    frame: f.ServerFrame


class ControlEnvelope(msgspec.Struct, array_like=True, frozen=True):
    origin: str
    kind: str
    reason: str = ""


class BadEnvelope(Exception):
    """Bytes on a bus channel that are not an envelope this version understands."""


_encoder: Final = msgspec.msgpack.Encoder()
_user_decoder: Final = msgspec.msgpack.Decoder(UserEnvelope)
_group_decoder: Final = msgspec.msgpack.Decoder(GroupEnvelope)
_control_decoder: Final = msgspec.msgpack.Decoder(ControlEnvelope)


def encode_user(origin: str, frame_payload: bytes) -> bytes:
    return _encoder.encode((origin, msgspec.Raw(frame_payload)))


def encode_group(origin: str, conversation_id: str, version: int, seq: int, also: tuple[int, ...],
                 frame_payload: bytes) -> bytes:
    return _encoder.encode((origin, conversation_id, version, seq, also, msgspec.Raw(frame_payload)))


def encode_control(origin: str, kind: str, reason: str = "") -> bytes:
    return _encoder.encode((origin, kind, reason))


def decode_user(data: bytes) -> UserEnvelope:
    try:
        return _user_decoder.decode(data)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise BadEnvelope(str(exc)[:200]) from None


def decode_group(data: bytes) -> GroupEnvelope:
    try:
        return _group_decoder.decode(data)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise BadEnvelope(str(exc)[:200]) from None


def decode_control(data: bytes) -> ControlEnvelope:
    try:
        return _control_decoder.decode(data)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise BadEnvelope(str(exc)[:200]) from None
