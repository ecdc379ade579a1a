"""The MQTT codec with bytes only: round trips, the size limit before buffering, and a fuzz of arbitrary input."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pica.errors import FrameTooLarge, InvalidFrame
from pica.protocol import mqtt as m

text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=30)
topic = text.filter(lambda t: t and "+" not in t and "#" not in t)
ident = st.integers(1, 65535)


@st.composite
def publishes(draw: st.DrawFn) -> m.Publish:
    qos = draw(st.integers(0, 2))
    return m.Publish(draw(topic), draw(st.binary(max_size=64)), qos, draw(ident) if qos else None,
                     draw(st.booleans()), draw(st.booleans()) if qos else False)


@st.composite
def connects(draw: st.DrawFn) -> m.Connect:
    will = draw(st.booleans())
    user = draw(st.none() | text)
    return m.Connect(draw(text), draw(st.booleans()), draw(st.integers(0, 65535)), user,
                     draw(st.none() | st.binary(max_size=40)) if user is not None else None,
                     draw(text) if will else None, draw(st.binary(max_size=20)) if will else b"",
                     draw(st.integers(0, 2)) if will else 0, draw(st.booleans()) if will else False)


packets = st.one_of(
    publishes(), connects(),
    st.builds(m.ConnAck, st.integers(0, 5), st.booleans()),
    st.builds(m.PubAck, ident),
    st.builds(m.Subscribe, ident, st.lists(st.tuples(text, st.integers(0, 2)), min_size=1, max_size=4).map(tuple)),
    st.builds(m.SubAck, ident, st.lists(st.sampled_from([0, 1, 2, 0x80]), max_size=4).map(tuple)),
    st.builds(m.Unsubscribe, ident, st.lists(text, min_size=1, max_size=4).map(tuple)),
    st.builds(m.UnsubAck, ident),
    st.just(m.PingReq()), st.just(m.PingResp()), st.just(m.Disconnect()),
)


@given(st.lists(packets, max_size=5), st.integers(1, 7))
def test_round_trip_in_any_chunking(sent: list[m.Packet], chunk: int) -> None:
    data = b"".join(map(m.encode, sent))
    reader = m.PacketReader(10_000)
    got: list[m.Packet] = []
    for i in range(0, len(data), chunk):
        got += reader.feed(data[i:i + chunk])
    assert got == sent


@given(st.binary(max_size=300))
def test_arbitrary_bytes_give_packets_or_the_codec_errors(data: bytes) -> None:
    reader = m.PacketReader(200)
    try:
        reader.feed(data)
    except (InvalidFrame, FrameTooLarge):
        with pytest.raises(InvalidFrame):
            reader.feed(b"\xc0\x00")  # a failed stream stays failed


@given(st.binary(max_size=100), st.integers(0, 255))
def test_decode_of_any_body_gives_a_packet_or_invalid_frame(body: bytes, first: int) -> None:
    with contextlib.suppress(InvalidFrame):
        m.decode(first, body)


def test_remaining_length_is_refused_before_the_body_arrives() -> None:
    reader = m.PacketReader(1000)
    with pytest.raises(FrameTooLarge):
        reader.feed(b"\x30\xff\xff\x7f")  # declares 2 MiB, sends nothing of it


def test_five_length_bytes_are_malformed() -> None:
    with pytest.raises(InvalidFrame):
        m.PacketReader(m.MAX_REMAINING_LENGTH).feed(b"\x30\xff\xff\xff\xff\x01")


def test_mqtt5_connect_reads_as_level_5() -> None:
    # CONNECT, "MQTT", level 5, flags, keep-alive, then properties this codec does not read
    packet = m.PacketReader(100).feed(bytes.fromhex("100f00044d5154540502003c0300000000"))
    assert packet == [m.Connect(client_id="", level=5)]


@pytest.mark.parametrize("data", [
    bytes.fromhex("3204000161"),        # QoS 1 PUBLISH too short for its packet id
    bytes.fromhex("3603000161"),        # QoS 3
    bytes.fromhex("30030001") + b"#",   # wildcard in a topic name
    bytes.fromhex("8003000161"),        # SUBSCRIBE with flags 0
    bytes.fromhex("82020001"),          # SUBSCRIBE without a filter
    bytes.fromhex("c001"),              # PINGREQ with a body (needs the byte)
    bytes.fromhex("50020001"),          # PUBREC: QoS 2 is not spoken
])
def test_malformed_packets(data: bytes) -> None:
    with pytest.raises(InvalidFrame):
        m.PacketReader(100).feed(data + b"\x00")
