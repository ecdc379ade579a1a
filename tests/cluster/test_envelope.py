"""Whatever bytes arrive on a bus channel (another version's envelope, a stray PUBLISH from an operator's shell, a
truncated or corrupted copy), the decoders either return a typed envelope or raise BadEnvelope, which the node
counts and drops. Nothing else may escape: an exception there would reach the subscriber's reader loop.

Pure: no Redis. The round trips check that what a node encodes is what the others decode."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pica.cluster.envelope import (
    BadEnvelope,
    ControlEnvelope,
    EphemeralEnvelope,
    GroupEnvelope,
    JoinEnvelope,
    UserEnvelope,
    decode_control,
    decode_group,
    decode_user,
    encode_control,
    encode_ephemeral,
    encode_group,
    encode_join,
    encode_user,
)
from pica.protocol import frames as f
from pica.protocol.codec import Encoding
from pica.protocol.outbound import OutboundFrame

DECODERS: list[Callable[[bytes], Any]] = [decode_user, decode_group, decode_control]

node_ids = st.text(min_size=1, max_size=20)
conversation_ids = st.builds(lambda n: f"g:{n}", st.integers(1, 10**9))
bodies = st.dictionaries(st.text(max_size=8), st.text(max_size=20), max_size=3).map(lambda d: {"text": "hi", **d})


def payload(frame: Any) -> bytes:
    return OutboundFrame(frame).payload(Encoding.MSGPACK)


def msg(conversation_id: str, seq: int, body: dict[str, Any]) -> f.Msg:
    return f.Msg(conversation_id=conversation_id, seq=seq, sender=7, client_msg_id="c", ts=1, body=body)


def decodes_or_refuses(decode: Callable[[bytes], Any], data: bytes) -> None:
    with contextlib.suppress(BadEnvelope):
        decode(data)


@settings(max_examples=300, deadline=None)  # a loaded CI machine must not turn slowness into failure
@given(data=st.binary(max_size=200))
def test_random_bytes_decode_or_are_refused(data: bytes) -> None:
    for decode in DECODERS:
        decodes_or_refuses(decode, data)


@st.composite
def valid_envelopes(draw: st.DrawFn) -> bytes:
    origin, cid = draw(node_ids), draw(conversation_ids)
    seq, body = draw(st.integers(1, 2**40)), draw(bodies)
    kind = draw(st.sampled_from(["user", "join", "group", "ephemeral", "control"]))
    if kind == "user":
        return encode_user(origin, payload(msg(cid, seq, body)))
    if kind == "join":
        return encode_join(origin, cid, seq, payload(msg(cid, seq, body)))
    if kind == "group":
        return encode_group(origin, cid, draw(st.integers(0, 2**31)), seq, tuple(draw(st.lists(st.integers(1, 99)))),
                            payload(msg(cid, seq, body)))
    if kind == "ephemeral":
        typing = f.Typing(conversation_id=cid, user_id=3)
        return encode_ephemeral(origin, cid, draw(st.integers(1, 99)), draw(st.integers(0, 2**31)), payload(typing))
    return encode_control(origin, "resync", draw(st.text(max_size=30)))


@settings(max_examples=300, deadline=None)  # a loaded CI machine must not turn slowness into failure
@given(envelope=valid_envelopes(), cut=st.integers(0, 400), flips=st.lists(st.tuples(st.integers(0, 400),
                                                                                        st.integers(1, 255)),
                                                                              max_size=4))
def test_truncated_or_corrupted_envelopes_decode_or_are_refused(envelope: bytes, cut: int,
                                                                  flips: list[tuple[int, int]]) -> None:
    damaged = bytearray(envelope[: max(0, len(envelope) - cut % (len(envelope) + 1))])
    for at, mask in flips:
        if damaged:
            damaged[at % len(damaged)] ^= mask
    for decode in DECODERS:
        decodes_or_refuses(decode, bytes(damaged))


@settings(max_examples=100, deadline=None)
@given(origin=node_ids, cid=conversation_ids, seq=st.integers(1, 2**40), body=bodies,
       version=st.integers(0, 2**31), also=st.lists(st.integers(1, 99), max_size=5), skip=st.integers(1, 99))
def test_every_envelope_round_trips(origin: str, cid: str, seq: int, body: dict[str, Any], version: int,
                                    also: list[int], skip: int) -> None:
    m = msg(cid, seq, body)
    typing = f.Typing(conversation_id=cid, user_id=skip)
    assert decode_user(encode_user(origin, payload(m))) == UserEnvelope(origin, m)
    assert decode_user(encode_join(origin, cid, seq, payload(m))) == JoinEnvelope(origin, cid, seq, m)
    assert decode_group(encode_group(origin, cid, version, seq, tuple(also), payload(m))) == GroupEnvelope(
        origin, cid, version, seq, tuple(also), m)
    assert decode_group(encode_ephemeral(origin, cid, skip, version, payload(typing))) == EphemeralEnvelope(
        origin, cid, (skip, version), typing)
    assert decode_control(encode_control(origin, "resync", "why")) == ControlEnvelope(origin, "resync", "why")
