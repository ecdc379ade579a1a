"""The MQTT codec with bytes only: round trips of 3.1.1 and 5.0 packets, the size limit before buffering, and a fuzz
of arbitrary input."""

from __future__ import annotations

import contextlib
import dataclasses

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


def test_a_connect_of_another_level_reads_as_that_level() -> None:
    # CONNECT, "MQTT", level 6, then what this codec does not read
    packet = m.PacketReader(100).feed(bytes.fromhex("100f00044d5154540602003c0300000000"))
    assert packet == [m.Connect(client_id="", level=6)]


# ---------------------------------------------------------------------------------------------- MQTT 5.0

def _number(kind: str, low: int, high: int) -> st.SearchStrategy[int]:
    return st.integers(max(low, 0), min(high, {"u8": 255, "u16": 65535}.get(kind, high)))


@st.composite
def properties(draw: st.DrawFn, context: int) -> m.Properties:
    values: dict[str, object] = {}
    for ident, (name, kind, where, (low, high)) in m._PROPERTIES.items():
        if context not in where or not draw(st.booleans()):
            continue
        value: st.SearchStrategy[object] = (text if kind == "str" else st.binary(max_size=8) if kind == "bin"
                                            else st.tuples(text, text) if kind == "pair" else _number(kind, low, high))
        values[name] = tuple(draw(st.lists(value, min_size=1, max_size=3))) if ident in m._REPEATABLE \
            else draw(value)
    return m.Properties(**values)  # type: ignore[arg-type]


reason = st.sampled_from


@st.composite
def connects5(draw: st.DrawFn) -> m.Connect:
    will = draw(st.booleans())
    return m.Connect(draw(text), draw(st.booleans()), draw(st.integers(0, 65535)), draw(st.none() | text),
                     draw(st.none() | st.binary(max_size=40)), draw(text) if will else None,
                     draw(st.binary(max_size=20)) if will else b"", draw(st.integers(0, 2)) if will else 0,
                     draw(st.booleans()) if will else False, level=5, properties=draw(properties(m.CONNECT)),
                     will_properties=draw(properties(m.WILL)) if will else m.NO_PROPERTIES)


@st.composite
def publishes5(draw: st.DrawFn) -> m.Publish:
    return dataclasses.replace(draw(publishes()), properties=draw(properties(m.PUBLISH)))


options = st.integers(0, 2).flatmap(lambda q: st.integers(0, 2).flatmap(
    lambda rh: st.integers(0, 3).map(lambda bits: q | bits << 2 | rh << 4)))
packets5 = st.one_of(
    publishes5(), connects5(),
    st.builds(m.ConnAck, reason(sorted(m._CONNACK_CODES)), st.booleans(), properties(m.CONNACK)),
    st.builds(m.PubAck, ident, reason(sorted(m._PUBACK_CODES)), properties(m.PUBACK)),
    st.builds(m.Subscribe, ident, st.lists(st.tuples(text, options), min_size=1, max_size=4).map(tuple),
              properties(m.SUBSCRIBE)),
    st.builds(m.SubAck, ident, st.lists(reason(sorted(m._SUBACK_CODES)), max_size=4).map(tuple),
              properties(m.SUBACK)),
    st.builds(m.Unsubscribe, ident, st.lists(text, min_size=1, max_size=4).map(tuple), properties(m.UNSUBSCRIBE)),
    st.builds(m.UnsubAck, ident, st.lists(reason(sorted(m._UNSUBACK_CODES)), min_size=1, max_size=4).map(tuple),
              properties(m.UNSUBACK)),
    st.builds(m.Disconnect, reason(sorted(m._DISCONNECT_CODES)), properties(m.DISCONNECT)),
    st.builds(m.Auth, reason(sorted(m._AUTH_CODES)), properties(m.AUTH)),
    st.just(m.PingReq()), st.just(m.PingResp()),
)


@given(st.lists(packets5, max_size=5), st.integers(1, 7))
def test_mqtt5_round_trip_in_any_chunking(sent: list[m.Packet], chunk: int) -> None:
    data = b"".join(m.encode(p, m.MQTT5_LEVEL) for p in sent)
    reader = m.PacketReader(10_000, m.MQTT5_LEVEL)
    got: list[m.Packet] = []
    for i in range(0, len(data), chunk):
        got += reader.feed(data[i:i + chunk])
    assert got == sent


@given(connects5(), st.lists(packets5.filter(lambda p: not isinstance(p, m.Connect)), max_size=3))
def test_a_level_5_connect_switches_the_reader_to_mqtt5(connect: m.Connect, after: list[m.Packet]) -> None:
    reader = m.PacketReader(10_000)  # a server's reader: 3.1.1 until a CONNECT says otherwise
    data = m.encode(connect) + b"".join(m.encode(p, m.MQTT5_LEVEL) for p in after)
    assert reader.feed(data) == [connect, *after]


@given(st.binary(max_size=300))
def test_arbitrary_bytes_after_a_level_5_connect_give_packets_or_the_codec_errors(data: bytes) -> None:
    reader = m.PacketReader(200, m.MQTT5_LEVEL)
    with contextlib.suppress(InvalidFrame, FrameTooLarge):
        reader.feed(data)


@given(st.binary(max_size=100), st.integers(0, 255))
def test_mqtt5_decode_of_any_body_gives_a_packet_or_invalid_frame(body: bytes, first: int) -> None:
    with contextlib.suppress(InvalidFrame):
        m.decode(first, body, m.MQTT5_LEVEL)


@given(packets5.filter(lambda p: not isinstance(p, m.Connect | m.PingReq | m.PingResp)))
def test_mqtt5_bytes_read_as_mqtt311_give_a_packet_or_invalid_frame(packet: m.Packet) -> None:
    with contextlib.suppress(InvalidFrame):
        m.PacketReader(10_000).feed(m.encode(packet, m.MQTT5_LEVEL))


def test_mqtt5_fields_cannot_be_written_as_mqtt311() -> None:
    for packet in (m.PubAck(1, m.Reason.QUOTA_EXCEEDED), m.Disconnect(m.Reason.SERVER_SHUTTING_DOWN), m.Auth(),
                   m.ConnAck(0, properties=m.Properties(receive_maximum=5)), m.UnsubAck(1, (0,))):
        with pytest.raises(ValueError):
            m.encode(packet)


def test_a_property_is_written_only_where_mqtt5_allows_it() -> None:
    with pytest.raises(ValueError):
        m.encode(m.PubAck(1, properties=m.Properties(session_expiry=10)), m.MQTT5_LEVEL)
    with pytest.raises(ValueError):
        m.encode(m.ConnAck(0, properties=m.Properties(receive_maximum=0)), m.MQTT5_LEVEL)


def test_what_mosquitto_pub_writes() -> None:
    # `mosquitto_pub -V mqttv5 -u alice -P pw -i id -q 1 -t send/u/8 -m hi` (mosquitto 2.0.18), as captured
    data = bytes.fromhex("101d00044d51545405c2003c03210014000269640005616c69636500027077"
                         "320f000873656e642f752f380001006869" "e000")
    assert m.PacketReader(1000).feed(data) == [
        m.Connect("id", True, 60, "alice", b"pw", level=5, properties=m.Properties(receive_maximum=20)),
        m.Publish("send/u/8", b"hi", 1, 1),
        m.Disconnect(),
    ]


def test_the_short_forms_of_puback_and_disconnect() -> None:
    # reason code 0 and no properties: the code is left out; a code and no properties: the length is left out
    assert m.encode(m.PubAck(7), m.MQTT5_LEVEL) == bytes.fromhex("40020007")
    assert m.encode(m.PubAck(7, 0x97), m.MQTT5_LEVEL) == bytes.fromhex("4003000797")
    assert m.encode(m.Disconnect(), m.MQTT5_LEVEL) == bytes.fromhex("e000")
    reader = m.PacketReader(100, m.MQTT5_LEVEL)
    assert reader.feed(bytes.fromhex("4003000797" "e0018d" "400400070000")) == [
        m.PubAck(7, 0x97), m.Disconnect(0x8D), m.PubAck(7)]


@pytest.mark.parametrize("data", [
    bytes.fromhex("e00102"),                          # DISCONNECT with a reason code DISCONNECT cannot carry
    bytes.fromhex("e003000211"),                      # DISCONNECT with Session Expiry cut short
    bytes.fromhex("e0050003210001"),                  # Receive Maximum in a DISCONNECT
    bytes.fromhex("40060001000311ff"),                # PUBACK: property length past the end
    bytes.fromhex("4006000100021701"),                # PUBACK with a CONNECT-only property
    bytes.fromhex("4003000101"),                      # PUBACK with a reason code PUBACK cannot carry
    bytes.fromhex("8207000100000161c0"),              # SUBSCRIBE: reserved option bits set
    bytes.fromhex("820700010000016130"),              # SUBSCRIBE: retain handling 3
    bytes.fromhex("3209000161000103230000"),          # PUBLISH: Topic Alias 0
    bytes.fromhex("320a00016100010426000161"),        # PUBLISH: a user property without its value
    bytes.fromhex("320b0001610001052100012100"),      # PUBLISH: Receive Maximum (a CONNECT property)
    bytes.fromhex("320a00016100010401000101"),        # PUBLISH: Payload Format Indicator given twice
    bytes.fromhex("f00101"),                          # AUTH with a reason code AUTH cannot carry
])
def test_malformed_mqtt5_packets(data: bytes) -> None:
    with pytest.raises(InvalidFrame):
        m.PacketReader(100, m.MQTT5_LEVEL).feed(data)


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
