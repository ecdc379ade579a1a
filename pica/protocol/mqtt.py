"""MQTT 3.1.1 and 5.0 packets, sans-I/O: encode, decode, and an incremental reader.

The gateway (:mod:`pica.mqtt.gateway`) feeds bytes to :class:`PacketReader` and writes what :func:`encode` returns;
nothing here touches a socket. Protocol levels 4 (MQTT 3.1.1) and 5 (MQTT 5.0) are spoken. A CONNECT says its own
level; the packets after it follow that level, so the reader switches to 5.0 when it decodes a level 5 CONNECT (a
client's reader of the server's packets is given the level). A CONNECT of any other level is decoded only far enough
(name, level) for the server to refuse it with CONNACK 1 "unacceptable protocol version" (MQTT-3.1.2-2).

5.0 adds to most packets a property list (:class:`Properties`) and reason codes (:class:`Reason`); the dataclasses
carry them as fields whose defaults are what 3.1.1 has (no properties, code 0), and encoding a 3.1.1 packet with
anything else raises ValueError. AUTH (5.0's extended authentication) is decoded, so that it can be refused.

Whatever the bytes, :meth:`PacketReader.feed` and :func:`decode` return packets or raise :class:`InvalidFrame` (a
malformed packet) or :class:`FrameTooLarge` (a declared remaining length over the limit, raised before the body is
buffered). After either, the stream is unusable and the caller closes the connection (MQTT-4.8.0-1).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from pica.errors import FrameTooLarge, InvalidFrame

PROTOCOL_LEVEL: Final = 4
"""MQTT 3.1.1."""
MQTT5_LEVEL: Final = 5
"""MQTT 5.0."""

MAX_REMAINING_LENGTH: Final = 268_435_455
"""The largest remaining length the 4-byte variable-length encoding can express."""

# CONNACK return codes (MQTT 3.1.1, 3.2.2.3).
ACCEPTED: Final = 0
UNACCEPTABLE_PROTOCOL_VERSION: Final = 1
IDENTIFIER_REJECTED: Final = 2
SERVER_UNAVAILABLE: Final = 3
BAD_USERNAME_OR_PASSWORD: Final = 4
NOT_AUTHORIZED: Final = 5

SUBACK_FAILURE: Final = 0x80


class Reason(IntEnum):
    """MQTT 5.0 reason codes (section 2.4) the server sends or checks; below 0x80 success, from 0x80 a failure."""

    SUCCESS = 0x00
    GRANTED_QOS_1 = 0x01
    GRANTED_QOS_2 = 0x02
    DISCONNECT_WITH_WILL = 0x04
    NO_MATCHING_SUBSCRIBERS = 0x10
    NO_SUBSCRIPTION_EXISTED = 0x11
    CONTINUE_AUTHENTICATION = 0x18
    RE_AUTHENTICATE = 0x19
    UNSPECIFIED_ERROR = 0x80
    MALFORMED_PACKET = 0x81
    PROTOCOL_ERROR = 0x82
    IMPLEMENTATION_SPECIFIC_ERROR = 0x83
    UNSUPPORTED_PROTOCOL_VERSION = 0x84
    CLIENT_IDENTIFIER_NOT_VALID = 0x85
    BAD_USER_NAME_OR_PASSWORD = 0x86
    NOT_AUTHORIZED = 0x87
    SERVER_UNAVAILABLE = 0x88
    SERVER_BUSY = 0x89
    BANNED = 0x8A
    SERVER_SHUTTING_DOWN = 0x8B
    BAD_AUTHENTICATION_METHOD = 0x8C
    KEEP_ALIVE_TIMEOUT = 0x8D
    SESSION_TAKEN_OVER = 0x8E
    TOPIC_FILTER_INVALID = 0x8F
    TOPIC_NAME_INVALID = 0x90
    PACKET_IDENTIFIER_IN_USE = 0x91
    PACKET_IDENTIFIER_NOT_FOUND = 0x92
    RECEIVE_MAXIMUM_EXCEEDED = 0x93
    TOPIC_ALIAS_INVALID = 0x94
    PACKET_TOO_LARGE = 0x95
    MESSAGE_RATE_TOO_HIGH = 0x96
    QUOTA_EXCEEDED = 0x97
    ADMINISTRATIVE_ACTION = 0x98
    PAYLOAD_FORMAT_INVALID = 0x99
    RETAIN_NOT_SUPPORTED = 0x9A
    QOS_NOT_SUPPORTED = 0x9B
    USE_ANOTHER_SERVER = 0x9C
    SERVER_MOVED = 0x9D
    SHARED_SUBSCRIPTIONS_NOT_SUPPORTED = 0x9E
    CONNECTION_RATE_EXCEEDED = 0x9F
    MAXIMUM_CONNECT_TIME = 0xA0
    SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED = 0xA1
    WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED = 0xA2


CONNECT, CONNACK, PUBLISH, PUBACK = 1, 2, 3, 4
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK = 8, 9, 10, 11
PINGREQ, PINGRESP, DISCONNECT, AUTH = 12, 13, 14, 15
WILL: Final = 0
"""Not a packet type: the context of a CONNECT's will properties, for :data:`_PROPERTIES`."""

_U16: Final = struct.Struct(">H")
_U32: Final = struct.Struct(">I")

# The reason codes each 5.0 packet may carry (sections 3.2.2.2, 3.4.2.1, 3.9.3, 3.11.3, 3.14.2.1, 3.15.2.1).
_CONNACK_CODES: Final = frozenset({0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90,
                                   0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F})
_PUBACK_CODES: Final = frozenset({0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99})
_SUBACK_CODES: Final = frozenset({0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2})
_UNSUBACK_CODES: Final = frozenset({0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91})
_DISCONNECT_CODES: Final = frozenset({0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90,
                                      *range(0x93, 0xA3)})
_AUTH_CODES: Final = frozenset({0x00, 0x18, 0x19})


@dataclass(frozen=True, slots=True)
class Properties:
    """An MQTT 5.0 property list (section 2.2.2.2): each field one property, None (or empty) when absent. Which
    packet may carry which property is checked on encoding (ValueError) and decoding (InvalidFrame)."""

    payload_format: int | None = None
    """0x01: 1 when the payload is UTF-8."""
    message_expiry: int | None = None
    """0x02, seconds."""
    content_type: str | None = None
    """0x03."""
    response_topic: str | None = None
    """0x08."""
    correlation_data: bytes | None = None
    """0x09."""
    subscription_ids: tuple[int, ...] = ()
    """0x0B, each 1 to 268,435,455; repeated in a PUBLISH."""
    session_expiry: int | None = None
    """0x11, seconds; absent means 0 (the session ends with the connection)."""
    assigned_client_id: str | None = None
    """0x12."""
    server_keep_alive: int | None = None
    """0x13, seconds: the keep-alive the server applies instead of the CONNECT's."""
    auth_method: str | None = None
    """0x15."""
    auth_data: bytes | None = None
    """0x16."""
    request_problem_info: int | None = None
    """0x17: 0 asks the server to leave Reason Strings out of everything but CONNACK, PUBLISH and DISCONNECT."""
    will_delay: int | None = None
    """0x18, seconds."""
    request_response_info: int | None = None
    """0x19."""
    response_info: str | None = None
    """0x1A."""
    server_reference: str | None = None
    """0x1C."""
    reason_string: str | None = None
    """0x1F: a human-readable explanation of the reason code."""
    receive_maximum: int | None = None
    """0x21, 1 to 65,535: QoS 1 and 2 PUBLISHes the sender of this property accepts unacknowledged."""
    topic_alias_maximum: int | None = None
    """0x22."""
    topic_alias: int | None = None
    """0x23, from 1."""
    maximum_qos: int | None = None
    """0x24, 0 or 1 (absent: 2)."""
    retain_available: int | None = None
    """0x25."""
    user_properties: tuple[tuple[str, str], ...] = ()
    """0x26, name-value pairs, repeatable, in order."""
    maximum_packet_size: int | None = None
    """0x27, bytes, from 1: the largest whole packet (fixed header included) the sender accepts."""
    wildcard_available: int | None = None
    """0x28."""
    subscription_ids_available: int | None = None
    """0x29."""
    shared_available: int | None = None
    """0x2A."""


NO_PROPERTIES: Final = Properties()

_ALL_WITH_PROPERTIES: Final = frozenset({CONNECT, CONNACK, PUBLISH, PUBACK, SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK,
                                         DISCONNECT, AUTH, WILL})
_REASON_STRING_IN: Final = frozenset({CONNACK, PUBACK, SUBACK, UNSUBACK, DISCONNECT, AUTH})
_MESSAGE: Final = frozenset({PUBLISH, WILL})
_FLAG: Final = (0, 1)
"""Values of a property that is a boolean byte."""

_PROPERTIES: Final[dict[int, tuple[str, str, frozenset[int], tuple[int, int]]]] = {
    # id: (field, wire type, where it may appear, (lowest, highest) value of a number)
    0x01: ("payload_format", "u8", _MESSAGE, _FLAG),
    0x02: ("message_expiry", "u32", _MESSAGE, (0, 2**32 - 1)),
    0x03: ("content_type", "str", _MESSAGE, (0, 0)),
    0x08: ("response_topic", "str", _MESSAGE, (0, 0)),
    0x09: ("correlation_data", "bin", _MESSAGE, (0, 0)),
    0x0B: ("subscription_ids", "varint", frozenset({PUBLISH, SUBSCRIBE}), (1, MAX_REMAINING_LENGTH)),
    0x11: ("session_expiry", "u32", frozenset({CONNECT, CONNACK, DISCONNECT}), (0, 2**32 - 1)),
    0x12: ("assigned_client_id", "str", frozenset({CONNACK}), (0, 0)),
    0x13: ("server_keep_alive", "u16", frozenset({CONNACK}), (0, 65535)),
    0x15: ("auth_method", "str", frozenset({CONNECT, CONNACK, AUTH}), (0, 0)),
    0x16: ("auth_data", "bin", frozenset({CONNECT, CONNACK, AUTH}), (0, 0)),
    0x17: ("request_problem_info", "u8", frozenset({CONNECT}), _FLAG),
    0x18: ("will_delay", "u32", frozenset({WILL}), (0, 2**32 - 1)),
    0x19: ("request_response_info", "u8", frozenset({CONNECT}), _FLAG),
    0x1A: ("response_info", "str", frozenset({CONNACK}), (0, 0)),
    0x1C: ("server_reference", "str", frozenset({CONNACK, DISCONNECT}), (0, 0)),
    0x1F: ("reason_string", "str", _REASON_STRING_IN, (0, 0)),
    0x21: ("receive_maximum", "u16", frozenset({CONNECT, CONNACK}), (1, 65535)),
    0x22: ("topic_alias_maximum", "u16", frozenset({CONNECT, CONNACK}), (0, 65535)),
    0x23: ("topic_alias", "u16", frozenset({PUBLISH}), (1, 65535)),
    0x24: ("maximum_qos", "u8", frozenset({CONNACK}), _FLAG),
    0x25: ("retain_available", "u8", frozenset({CONNACK}), _FLAG),
    0x26: ("user_properties", "pair", _ALL_WITH_PROPERTIES, (0, 0)),
    0x27: ("maximum_packet_size", "u32", frozenset({CONNECT, CONNACK}), (1, 2**32 - 1)),
    0x28: ("wildcard_available", "u8", frozenset({CONNACK}), _FLAG),
    0x29: ("subscription_ids_available", "u8", frozenset({CONNACK}), _FLAG),
    0x2A: ("shared_available", "u8", frozenset({CONNACK}), _FLAG),
}
"""The properties of MQTT 5.0 (section 2.2.2.2, table 2-4)."""
_REPEATABLE: Final = frozenset({0x0B, 0x26})


@dataclass(frozen=True, slots=True)
class Connect:
    client_id: str
    clean_session: bool = True
    """In 5.0, Clean Start."""
    keep_alive: int = 0
    """Seconds; 0 turns the keep-alive off."""
    username: str | None = None
    password: bytes | None = None
    will_topic: str | None = None
    will_payload: bytes = b""
    will_qos: int = 0
    will_retain: bool = False
    protocol_name: str = "MQTT"
    level: int = PROTOCOL_LEVEL
    """4 or 5; any other level is decoded only up to here: the rest of such a CONNECT is left unread."""
    properties: Properties = NO_PROPERTIES
    will_properties: Properties = NO_PROPERTIES


@dataclass(frozen=True, slots=True)
class ConnAck:
    return_code: int
    """In 5.0, the reason code."""
    session_present: bool = False
    properties: Properties = NO_PROPERTIES


@dataclass(frozen=True, slots=True)
class Publish:
    topic: str
    payload: bytes
    qos: int = 0
    packet_id: int | None = None
    """Present exactly when ``qos`` > 0."""
    retain: bool = False
    dup: bool = False
    properties: Properties = NO_PROPERTIES


@dataclass(frozen=True, slots=True)
class PubAck:
    packet_id: int
    reason_code: int = 0
    properties: Properties = NO_PROPERTIES


@dataclass(frozen=True, slots=True)
class Subscribe:
    packet_id: int
    filters: tuple[tuple[str, int], ...]
    """(topic filter, requested QoS), at least one. In 5.0 the number is the whole subscription options byte: QoS in
    bits 0-1, No Local bit 2, Retain As Published bit 3, Retain Handling bits 4-5."""
    properties: Properties = NO_PROPERTIES


@dataclass(frozen=True, slots=True)
class SubAck:
    packet_id: int
    return_codes: tuple[int, ...]
    """Granted QoS (0 to 2) or ``SUBACK_FAILURE``, one per filter of the SUBSCRIBE; in 5.0 reason codes."""
    properties: Properties = NO_PROPERTIES


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    packet_id: int
    filters: tuple[str, ...]
    properties: Properties = NO_PROPERTIES


@dataclass(frozen=True, slots=True)
class UnsubAck:
    packet_id: int
    reason_codes: tuple[int, ...] = ()
    """5.0 only: one per filter of the UNSUBSCRIBE."""
    properties: Properties = NO_PROPERTIES


@dataclass(frozen=True, slots=True)
class PingReq:
    pass


@dataclass(frozen=True, slots=True)
class PingResp:
    pass


@dataclass(frozen=True, slots=True)
class Disconnect:
    reason_code: int = 0
    properties: Properties = NO_PROPERTIES


@dataclass(frozen=True, slots=True)
class Auth:
    """5.0 only."""

    reason_code: int = 0
    properties: Properties = NO_PROPERTIES


Packet = (Connect | ConnAck | Publish | PubAck | Subscribe | SubAck | Unsubscribe | UnsubAck | PingReq | PingResp
          | Disconnect | Auth)


# ---------------------------------------------------------------------------------------------- encoding


def _varint(n: int) -> bytes:
    if not 0 <= n <= MAX_REMAINING_LENGTH:
        raise ValueError(f"remaining length {n} out of range")
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(text: str) -> bytes:
    data = text.encode("utf-8")
    return _U16.pack(len(data)) + data


def _binary(data: bytes) -> bytes:
    return _U16.pack(len(data)) + data


def _packet(kind: int, flags: int, body: bytes) -> bytes:
    return bytes(((kind << 4) | flags,)) + _varint(len(body)) + body


def _value(kind: str, value: object) -> bytes:
    if kind == "str":
        assert isinstance(value, str)
        return _string(value)
    if kind == "bin":
        assert isinstance(value, bytes)
        return _binary(value)
    if kind == "pair":
        assert isinstance(value, tuple)
        return _string(value[0]) + _string(value[1])
    assert isinstance(value, int)
    if kind == "varint":
        return _varint(value)
    return value.to_bytes({"u8": 1, "u16": 2, "u32": 4}[kind], "big")


def _properties(props: Properties, context: int) -> bytes:
    """A property list with its length, in property id order."""
    if props is NO_PROPERTIES:
        return b"\x00"
    out = bytearray()
    for ident, (name, kind, where, (low, high)) in _PROPERTIES.items():
        value = getattr(props, name)
        if value is None or value == ():
            continue
        if context not in where:
            raise ValueError(f"property {name} is not allowed here")
        for item in (value if ident in _REPEATABLE else (value,)):
            if kind in ("u8", "u16", "u32", "varint") and not low <= item <= high:
                raise ValueError(f"property {name} out of range")
            out.append(ident)
            out += _value(kind, item)
    return _varint(len(out)) + out


def _is_plain(packet: Packet) -> bool:
    """Nothing of 5.0 in the packet: what a 3.1.1 packet may hold."""
    if isinstance(packet, Auth):
        return False
    return all(getattr(packet, name, None) in (None, 0, (), NO_PROPERTIES)
               for name in ("properties", "will_properties", "reason_code", "reason_codes"))


def encode(packet: Packet, level: int = PROTOCOL_LEVEL) -> bytes:
    """The packet's bytes in MQTT 3.1.1 (level 4) or 5.0 (level 5; a CONNECT follows its own ``level``). Raises
    ValueError for a packet that cannot be put on the wire (a field out of range, 5.0 fields in 3.1.1)."""
    v5 = (packet.level if isinstance(packet, Connect) else level) == MQTT5_LEVEL
    if not v5 and not _is_plain(packet):
        raise ValueError(f"{type(packet).__name__} with MQTT 5.0 fields in MQTT 3.1.1")
    match packet:
        case Publish():
            if (packet.qos > 0) != (packet.packet_id is not None) or not 0 <= packet.qos <= 2:
                raise ValueError("a packet id goes with QoS 1 and 2 only")
            flags = (packet.dup << 3) | (packet.qos << 1) | packet.retain
            ident = _U16.pack(packet.packet_id) if packet.packet_id is not None else b""
            props = _properties(packet.properties, PUBLISH) if v5 else b""
            return _packet(PUBLISH, flags, _string(packet.topic) + ident + props + packet.payload)
        case PubAck():
            return _packet(PUBACK, 0, _U16.pack(packet.packet_id) + _reason_and_properties(packet, PUBACK))
        case ConnAck():
            props = _properties(packet.properties, CONNACK) if v5 else b""
            return _packet(CONNACK, 0, bytes((int(packet.session_present), packet.return_code)) + props)
        case SubAck():
            props = _properties(packet.properties, SUBACK) if v5 else b""
            return _packet(SUBACK, 0, _U16.pack(packet.packet_id) + props + bytes(packet.return_codes))
        case UnsubAck():
            props = _properties(packet.properties, UNSUBACK) + bytes(packet.reason_codes) if v5 else b""
            return _packet(UNSUBACK, 0, _U16.pack(packet.packet_id) + props)
        case PingReq():
            return _packet(PINGREQ, 0, b"")
        case PingResp():
            return _packet(PINGRESP, 0, b"")
        case Disconnect():
            return _packet(DISCONNECT, 0, _reason_and_properties(packet, DISCONNECT) if v5 else b"")
        case Auth():
            return _packet(AUTH, 0, _reason_and_properties(packet, AUTH))
        case Subscribe():
            props = _properties(packet.properties, SUBSCRIBE) if v5 else b""
            body = b"".join(_string(t) + bytes((q,)) for t, q in packet.filters)
            return _packet(SUBSCRIBE, 0b0010, _U16.pack(packet.packet_id) + props + body)
        case Unsubscribe():
            props = _properties(packet.properties, UNSUBSCRIBE) if v5 else b""
            body = b"".join(map(_string, packet.filters))
            return _packet(UNSUBSCRIBE, 0b0010, _U16.pack(packet.packet_id) + props + body)
        case Connect():
            return _packet(CONNECT, 0, _connect_body(packet))
    raise ValueError(f"not a packet: {packet!r}")


def _reason_and_properties(packet: PubAck | Disconnect | Auth, context: int) -> bytes:
    """5.0's short forms: the reason code is left out when it is 0 and there are no properties, the property
    length when there are none (sections 3.4.2.1, 3.14.2.1, 3.15.2.1)."""
    if packet.properties != NO_PROPERTIES:
        return bytes((packet.reason_code,)) + _properties(packet.properties, context)
    return bytes((packet.reason_code,)) if packet.reason_code else b""


def _connect_body(packet: Connect) -> bytes:
    will = packet.will_topic is not None
    flags = ((packet.username is not None) << 7 | (packet.password is not None) << 6 | packet.will_retain << 5
             | packet.will_qos << 3 | will << 2 | packet.clean_session << 1)
    v5 = packet.level == MQTT5_LEVEL
    parts = [_string(packet.protocol_name), bytes((packet.level, flags)), _U16.pack(packet.keep_alive)]
    if v5:
        parts.append(_properties(packet.properties, CONNECT))
    parts.append(_string(packet.client_id))
    if packet.will_topic is not None:
        if v5:
            parts.append(_properties(packet.will_properties, WILL))
        parts += [_string(packet.will_topic), _binary(packet.will_payload)]
    if packet.username is not None:
        parts.append(_string(packet.username))
    if packet.password is not None:
        parts.append(_binary(packet.password))
    return b"".join(parts)


# ---------------------------------------------------------------------------------------------- decoding


class _Body:
    """A cursor over one packet's body; every read checks the bounds and raises InvalidFrame past them."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def left(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int) -> bytes:
        if self.left() < n:
            raise InvalidFrame("packet ends early")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        value: int = _U16.unpack(self.take(2))[0]
        return value

    def u32(self) -> int:
        value: int = _U32.unpack(self.take(4))[0]
        return value

    def varint(self) -> int:
        value = 0
        for shift in (0, 7, 14, 21):
            byte = self.u8()
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                if shift and not byte:  # MQTT 5.0 1.5.5: the fewest bytes
                    raise InvalidFrame("malformed variable byte integer")
                return value
        raise InvalidFrame("malformed variable byte integer")

    def binary(self) -> bytes:
        return self.take(self.u16())

    def string(self) -> str:
        try:
            text = self.binary().decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidFrame("string is not UTF-8") from None
        if "\x00" in text:  # MQTT-1.5.3-2
            raise InvalidFrame("string holds U+0000")
        return text

    def properties(self, context: int) -> Properties:
        length = self.varint()
        if length > self.left():
            raise InvalidFrame("property length past the packet")
        if not length:
            return NO_PROPERTIES
        end = self.pos + length
        values: dict[str, object] = {}
        while self.pos < end:
            ident = self.varint()
            spec = _PROPERTIES.get(ident)
            if spec is None or context not in spec[2]:
                raise InvalidFrame(f"property 0x{ident:02x} not allowed here")
            name, kind, _, (low, high) = spec
            value: object
            if kind == "str":
                value = self.string()
            elif kind == "bin":
                value = self.binary()
            elif kind == "pair":
                value = (self.string(), self.string())
            else:
                value = self.varint() if kind == "varint" else int.from_bytes(
                    self.take({"u8": 1, "u16": 2, "u32": 4}[kind]), "big")
                if not low <= value <= high:
                    raise InvalidFrame(f"property {name} out of range")
            if ident in _REPEATABLE:
                values[name] = (*values.get(name, ()), value)  # type: ignore[misc]
            elif name in values:
                raise InvalidFrame(f"property {name} given twice")
            else:
                values[name] = value
        if self.pos != end:
            raise InvalidFrame("property past the property length")
        return Properties(**values)  # type: ignore[arg-type]

    def end(self) -> None:
        if self.left():
            raise InvalidFrame("trailing bytes in packet")


def _packet_id(body: _Body) -> int:
    ident = body.u16()
    if ident == 0:  # MQTT-2.3.1-1
        raise InvalidFrame("packet identifier 0")
    return ident


def _reason(body: _Body, allowed: frozenset[int]) -> int:
    code = body.u8()
    if code not in allowed:
        raise InvalidFrame(f"reason code 0x{code:02x} not allowed here")
    return code


_FIXED_FLAGS: Final = {CONNECT: 0, CONNACK: 0, PUBACK: 0, SUBSCRIBE: 2, SUBACK: 0, UNSUBSCRIBE: 2, UNSUBACK: 0,
                       PINGREQ: 0, PINGRESP: 0, DISCONNECT: 0, AUTH: 0}
"""The reserved flag bits each packet type must carry (MQTT-2.2.2-1); PUBLISH's are its own."""


def decode(first: int, data: bytes, level: int = PROTOCOL_LEVEL) -> Packet:
    """One packet from its first byte and its body (the bytes after the remaining length), read as MQTT 3.1.1 or
    5.0 (``level``); a CONNECT is read as the level it names."""
    kind, flags = first >> 4, first & 0x0F
    v5 = level == MQTT5_LEVEL
    if kind != PUBLISH:
        if kind not in _FIXED_FLAGS or (kind == AUTH and not v5):
            raise InvalidFrame(f"unsupported packet type {kind}")
        if flags != _FIXED_FLAGS[kind]:
            raise InvalidFrame("malformed fixed header flags")
    body = _Body(data)
    packet: Packet
    if kind == PUBLISH:
        packet = _decode_publish(flags, body, v5)
    elif kind == CONNECT:
        packet = _decode_connect(body)
        if packet.level not in (PROTOCOL_LEVEL, MQTT5_LEVEL):
            return packet  # the rest follows another level's rules; the answer is a refusal
    elif kind == CONNACK:
        ack_flags = body.u8()
        code = _reason(body, _CONNACK_CODES) if v5 else body.u8()
        if ack_flags & 0xFE:
            raise InvalidFrame("malformed CONNACK flags")
        packet = ConnAck(code, bool(ack_flags), body.properties(CONNACK) if v5 else NO_PROPERTIES)
    elif kind == PUBACK:
        ident = _packet_id(body)
        if v5 and body.left():
            code = _reason(body, _PUBACK_CODES)
            packet = PubAck(ident, code, body.properties(PUBACK) if body.left() else NO_PROPERTIES)
        else:
            packet = PubAck(ident)
    elif kind == SUBSCRIBE:
        packet = _decode_subscribe(body, v5)
    elif kind == SUBACK:
        ident = _packet_id(body)
        props = body.properties(SUBACK) if v5 else NO_PROPERTIES
        codes = tuple(body.take(body.left()))
        if any(c not in (_SUBACK_CODES if v5 else (0, 1, 2, SUBACK_FAILURE)) for c in codes):
            raise InvalidFrame("malformed SUBACK return code")
        packet = SubAck(ident, codes, props)
    elif kind == UNSUBSCRIBE:
        ident = _packet_id(body)
        props = body.properties(UNSUBSCRIBE) if v5 else NO_PROPERTIES
        topics = []
        while body.left():
            topics.append(body.string())
        if not topics:  # MQTT-3.10.3-2
            raise InvalidFrame("UNSUBSCRIBE without a topic filter")
        packet = Unsubscribe(ident, tuple(topics), props)
    elif kind == UNSUBACK:
        ident = _packet_id(body)
        if v5:
            props = body.properties(UNSUBACK)
            codes = tuple(body.take(body.left()))
            if not codes or any(c not in _UNSUBACK_CODES for c in codes):
                raise InvalidFrame("malformed UNSUBACK reason code")
            packet = UnsubAck(ident, codes, props)
        else:
            packet = UnsubAck(ident)
    elif kind == PINGREQ:
        packet = PingReq()
    elif kind == PINGRESP:
        packet = PingResp()
    elif kind == DISCONNECT:
        packet = Disconnect(*_decode_reason_and_properties(body, _DISCONNECT_CODES, DISCONNECT)) if v5 \
            else Disconnect()
    else:
        packet = Auth(*_decode_reason_and_properties(body, _AUTH_CODES, AUTH))
    body.end()
    return packet


def _decode_reason_and_properties(body: _Body, allowed: frozenset[int], context: int) -> tuple[int, Properties]:
    code = _reason(body, allowed) if body.left() else 0
    return code, body.properties(context) if body.left() else NO_PROPERTIES


def _decode_subscribe(body: _Body, v5: bool) -> Subscribe:
    ident = _packet_id(body)
    props = body.properties(SUBSCRIBE) if v5 else NO_PROPERTIES
    filters = []
    while body.left():
        topic, options = body.string(), body.u8()
        if options & 0b11 == 3 or options & (0b1100_0000 if v5 else 0b1111_1100):  # MQTT-3.8.3-4, -5
            raise InvalidFrame("malformed subscription options")
        if v5 and options >> 4 == 3:
            raise InvalidFrame("malformed retain handling")
        filters.append((topic, options))
    if not filters:  # MQTT-3.8.3-3
        raise InvalidFrame("SUBSCRIBE without a topic filter")
    return Subscribe(ident, tuple(filters), props)


def _decode_publish(flags: int, body: _Body, v5: bool) -> Publish:
    qos = (flags >> 1) & 0b11
    if qos == 3:  # MQTT-3.3.1-4
        raise InvalidFrame("PUBLISH with QoS 3")
    dup = bool(flags & 0b1000)
    if dup and qos == 0:  # MQTT-3.3.1-2
        raise InvalidFrame("DUP set on a QoS 0 PUBLISH")
    topic = body.string()
    # 5.0 lets a Topic Alias stand for the name; this server announces none (Topic Alias Maximum 0), so an empty
    # name is malformed in both levels
    if not topic or "+" in topic or "#" in topic:  # MQTT-3.3.2-1, 4.7.3-1
        raise InvalidFrame("malformed topic name")
    ident = _packet_id(body) if qos else None
    props = body.properties(PUBLISH) if v5 else NO_PROPERTIES
    return Publish(topic, body.take(body.left()), qos, ident, bool(flags & 1), dup, props)


def _decode_connect(body: _Body) -> Connect:
    name = body.string()
    level = body.u8()
    if name != "MQTT" and not (name == "MQIsdp" and level == 3):  # MQTT-3.1.2-1
        raise InvalidFrame("not an MQTT CONNECT")
    if level not in (PROTOCOL_LEVEL, MQTT5_LEVEL):
        return Connect(client_id="", protocol_name=name, level=level)
    v5 = level == MQTT5_LEVEL
    flags = body.u8()
    keep_alive = body.u16()
    if flags & 1:  # MQTT-3.1.2-3
        raise InvalidFrame("reserved CONNECT flag set")
    will, will_qos, will_retain = bool(flags & 0b100), (flags >> 3) & 0b11, bool(flags & 0b10_0000)
    if will_qos == 3 or (not will and (will_qos or will_retain)):  # MQTT-3.1.2-11, -13, -14, -15
        raise InvalidFrame("malformed will flags")
    has_user, has_password = bool(flags & 0x80), bool(flags & 0x40)
    if has_password and not has_user and not v5:  # MQTT-3.1.2-22; 5.0 allows a password alone
        raise InvalidFrame("password without a user name")
    props = body.properties(CONNECT) if v5 else NO_PROPERTIES
    client_id = body.string()
    will_props = body.properties(WILL) if will and v5 else NO_PROPERTIES
    will_topic, will_payload = (body.string(), body.binary()) if will else (None, b"")
    username = body.string() if has_user else None
    password = body.binary() if has_password else None
    return Connect(client_id, bool(flags & 0b10), keep_alive, username, password, will_topic, will_payload,
                   will_qos, will_retain, name, level, props, will_props)


class PacketReader:
    """Turns a byte stream into packets.

    The remaining length is checked against ``max_packet`` as soon as its last byte is in, before the body is
    buffered. After ``feed()`` has raised, the stream is unusable. Packets are read as ``level`` (3.1.1 unless told);
    a CONNECT of level 4 or 5 sets the level of the packets after it.
    """

    __slots__ = ("_broken", "_buffer", "_max_packet", "level")

    def __init__(self, max_packet: int, level: int = PROTOCOL_LEVEL) -> None:
        self._buffer = bytearray()
        self._max_packet = max_packet
        self._broken = False
        self.level = level

    def feed(self, data: bytes) -> list[Packet]:
        if self._broken:
            raise InvalidFrame("stream already failed")
        try:
            return self._feed(data)
        except (InvalidFrame, FrameTooLarge):
            self._broken = True
            self._buffer.clear()
            raise

    def _feed(self, data: bytes) -> list[Packet]:
        buffer = self._buffer
        buffer += data
        packets: list[Packet] = []
        offset = 0
        while len(buffer) - offset >= 2:
            length, multiplier, pos = 0, 1, offset + 1
            while pos < len(buffer):
                byte = buffer[pos]
                pos += 1
                length += (byte & 0x7F) * multiplier
                if not byte & 0x80:
                    break
                multiplier <<= 7
                if pos - offset > 4:  # 4 length bytes at most (MQTT 2.2.3)
                    raise InvalidFrame("malformed remaining length")
            if pos > len(buffer) or buffer[pos - 1] & 0x80:
                break  # the remaining length is not complete yet
            if length > self._max_packet:
                raise FrameTooLarge(f"packet of {length} bytes exceeds the limit of {self._max_packet}")
            if len(buffer) - pos < length:
                break
            packet = decode(buffer[offset], bytes(buffer[pos:pos + length]), self.level)
            if isinstance(packet, Connect) and packet.level in (PROTOCOL_LEVEL, MQTT5_LEVEL):
                self.level = packet.level
            packets.append(packet)
            offset = pos + length
        del buffer[:offset]
        return packets
