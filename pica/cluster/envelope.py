"""What travels on the bus: envelopes around already-encoded frames. Pure functions, no I/O.

An envelope is a MessagePack array whose last element is the frame itself, embedded as the MessagePack map the
sending node already built for its own MessagePack clients (``OutboundFrame.payload``): encoding an envelope copies
bytes and never re-encodes the frame. The receiving node decodes the whole envelope in one pass, straight into the
typed frame of the protocol model (``frames.ServerFrame``), so the frame is validated exactly as a client would
validate it, by the same structs.

Shapes (positional, to stay small):

- user channel ``{prefix}u:{user_id}``, two kinds told apart by their first element:
  ``["u", origin, frame]`` (a frame for the user) and ``["j", origin, conversation_id, seq, frame]`` (the user
  joined a group: ``frame`` is the notice of seq ``seq``; see :mod:`pica.cluster.groups`)
- group channel ``{prefix}g:{conversation_id}``, two kinds told apart by their length (the first byte of the
  envelope, a MessagePack fixarray header): ``[origin, conversation_id, version, seq, also, frame]`` (a frame of the
  group's timeline) and ``["e", origin, conversation_id, [skip_user, version], frame]`` (an ephemeral frame such as
  a typing notice, for every member but ``skip_user`` as of membership ``version`` or later: no seq, never stored;
  the pair keeps the envelope at five elements, so that its length still tells it from a timeline envelope)
- ``{prefix}control``: ``[origin, kind, reason]`` (``kind`` is ``"resync"``)

A join carries neither the membership version nor the list of users added: the receiving node never consults its
member cache for it (the notice goes to the channel's user directly, and the cache reloads through the version of
the next group envelope), and the channel already names the user. A list of every added user in every copy would
cost O(added²) bytes when a big group is created.
"""

from __future__ import annotations

from typing import Final

import msgspec

from pica.protocol import frames as f
from pica.protocol.codec import MALFORMED

RESYNC: Final = "resync"


class UserEnvelope(msgspec.Struct, array_like=True, frozen=True, tag="u"):
    origin: str
    frame: f.ServerFrame


class JoinEnvelope(msgspec.Struct, array_like=True, frozen=True, tag="j"):
    origin: str
    conversation_id: str
    seq: int
    frame: f.ServerFrame


class GroupEnvelope(msgspec.Struct, array_like=True, frozen=True):
    origin: str
    conversation_id: str
    version: int
    seq: int
    also: tuple[int, ...]
    frame: f.ServerFrame


class EphemeralEnvelope(msgspec.Struct, array_like=True, frozen=True, tag="e"):
    """Not part of the timeline: carries no seq, so it proves nothing about the channel being live at some seq."""

    origin: str
    conversation_id: str
    audience: tuple[int, int]
    """(skip_user, version): every member but ``skip_user``, as of membership ``version`` or later."""
    frame: f.ServerFrame


class ControlEnvelope(msgspec.Struct, array_like=True, frozen=True):
    origin: str
    kind: str
    reason: str = ""


class BadEnvelope(Exception):
    """Bytes on a bus channel that are not an envelope this version understands."""


_encoder: Final = msgspec.msgpack.Encoder()
_user_decoder: Final[msgspec.msgpack.Decoder[UserEnvelope | JoinEnvelope]] = msgspec.msgpack.Decoder(
    UserEnvelope | JoinEnvelope
)
_group_decoder: Final = msgspec.msgpack.Decoder(GroupEnvelope)
_ephemeral_decoder: Final = msgspec.msgpack.Decoder(EphemeralEnvelope)
_EPHEMERAL_HEADER: Final = b"\x95"
"""A fixarray of 5 elements: an ephemeral envelope (a timeline one has 6). Dispatching on this byte keeps the
timeline envelope's bytes as they were and costs no second decode."""
_control_decoder: Final = msgspec.msgpack.Decoder(ControlEnvelope)


def encode_user(origin: str, frame_payload: bytes) -> bytes:
    return _encoder.encode(("u", origin, msgspec.Raw(frame_payload)))


def encode_join(origin: str, conversation_id: str, seq: int, frame_payload: bytes) -> bytes:
    return _encoder.encode(("j", origin, conversation_id, seq, msgspec.Raw(frame_payload)))


def encode_group(origin: str, conversation_id: str, version: int, seq: int, also: tuple[int, ...],
                 frame_payload: bytes) -> bytes:
    return _encoder.encode((origin, conversation_id, version, seq, also, msgspec.Raw(frame_payload)))


def encode_ephemeral(origin: str, conversation_id: str, skip_user: int, version: int, frame_payload: bytes) -> bytes:
    return _encoder.encode(("e", origin, conversation_id, (skip_user, version), msgspec.Raw(frame_payload)))


def encode_control(origin: str, kind: str, reason: str = "") -> bytes:
    return _encoder.encode((origin, kind, reason))


def decode_user(data: bytes) -> UserEnvelope | JoinEnvelope:
    try:
        return _user_decoder.decode(data)
    except MALFORMED as exc:
        raise BadEnvelope(str(exc)[:200]) from None


def decode_group(data: bytes) -> GroupEnvelope | EphemeralEnvelope:
    try:
        if data[:1] == _EPHEMERAL_HEADER:
            return _ephemeral_decoder.decode(data)
        return _group_decoder.decode(data)
    except MALFORMED as exc:
        raise BadEnvelope(str(exc)[:200]) from None


def decode_control(data: bytes) -> ControlEnvelope:
    try:
        return _control_decoder.decode(data)
    except MALFORMED as exc:
        raise BadEnvelope(str(exc)[:200]) from None
