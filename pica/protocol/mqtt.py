"""MQTT 3.1.1 packets, sans-I/O: encode, decode, and an incremental reader.

The gateway (:mod:`pica.mqtt.gateway`) feeds bytes to :class:`PacketReader` and writes what :func:`encode` returns;
nothing here touches a socket. Only protocol level 4 (MQTT 3.1.1) is spoken: a CONNECT of any other level is still
decoded far enough (name, level) for the server to refuse it: CONNACK 1 "unacceptable protocol version" as 3.1.1 asks
(MQTT-3.1.2-2), or for MQTT 5.0 the 5.0-format CONNACK ``MQTT5_UNSUPPORTED_VERSION_CONNACK``.

Whatever the bytes, :meth:`PacketReader.feed` and :func:`decode` return packets or raise :class:`InvalidFrame` (a
malformed packet) or :class:`FrameTooLarge` (a declared remaining length over the limit, raised before the body is
buffered). After either, the stream is unusable and the caller closes the connection (MQTT-4.8.0-1).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from pica.errors import FrameTooLarge, InvalidFrame

PROTOCOL_LEVEL: Final = 4
"""MQTT 3.1.1."""

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

MQTT5_LEVEL: Final = 5
MQTT5_UNSUPPORTED_VERSION_CONNACK: Final = bytes.fromhex("2003008400")
"""The refusal of an MQTT 5.0 CONNECT in MQTT 5.0's own CONNACK format: flags 0, reason code 0x84 "Unsupported
Protocol Version", no properties (MQTT 5.0, 3.1.2.2). A 5.0 client reads a CONNACK as 5.0, where 3.1.1's code 0x01
would mean nothing; the codec otherwise encodes 3.1.1 only."""

CONNECT, CONNACK, PUBLISH, PUBACK = 1, 2, 3, 4
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK = 8, 9, 10, 11
PINGREQ, PINGRESP, DISCONNECT = 12, 13, 14

_U16: Final = struct.Struct(">H")


@dataclass(frozen=True, slots=True)
class Connect:
    client_id: str
    clean_session: bool = True
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
    """Any other level is decoded only up to here: the rest of such a CONNECT is left unread."""


@dataclass(frozen=True, slots=True)
class ConnAck:
    return_code: int
    session_present: bool = False


@dataclass(frozen=True, slots=True)
class Publish:
    topic: str
    payload: bytes
    qos: int = 0
    packet_id: int | None = None
    """Present exactly when ``qos`` > 0."""
    retain: bool = False
    dup: bool = False


@dataclass(frozen=True, slots=True)
class PubAck:
    packet_id: int


@dataclass(frozen=True, slots=True)
class Subscribe:
    packet_id: int
    filters: tuple[tuple[str, int], ...]
    """(topic filter, requested QoS), at least one."""


@dataclass(frozen=True, slots=True)
class SubAck:
    packet_id: int
    return_codes: tuple[int, ...]
    """Granted QoS (0 to 2) or ``SUBACK_FAILURE``, one per filter of the SUBSCRIBE."""


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    packet_id: int
    filters: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class UnsubAck:
    packet_id: int


@dataclass(frozen=True, slots=True)
class PingReq:
    pass


@dataclass(frozen=True, slots=True)
class PingResp:
    pass


@dataclass(frozen=True, slots=True)
class Disconnect:
    pass


Packet = (Connect | ConnAck | Publish | PubAck | Subscribe | SubAck | Unsubscribe | UnsubAck | PingReq | PingResp
          | Disconnect)


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


def encode(packet: Packet) -> bytes:
    """The packet's bytes. Raises ValueError for a packet that cannot be put on the wire (a field out of range)."""
    match packet:
        case Publish():
            if (packet.qos > 0) != (packet.packet_id is not None) or not 0 <= packet.qos <= 2:
                raise ValueError("a packet id goes with QoS 1 and 2 only")
            flags = (packet.dup << 3) | (packet.qos << 1) | packet.retain
            ident = _U16.pack(packet.packet_id) if packet.packet_id is not None else b""
            return _packet(PUBLISH, flags, _string(packet.topic) + ident + packet.payload)
        case PubAck():
            return _packet(PUBACK, 0, _U16.pack(packet.packet_id))
        case ConnAck():
            return _packet(CONNACK, 0, bytes((int(packet.session_present), packet.return_code)))
        case SubAck():
            return _packet(SUBACK, 0, _U16.pack(packet.packet_id) + bytes(packet.return_codes))
        case UnsubAck():
            return _packet(UNSUBACK, 0, _U16.pack(packet.packet_id))
        case PingReq():
            return _packet(PINGREQ, 0, b"")
        case PingResp():
            return _packet(PINGRESP, 0, b"")
        case Disconnect():
            return _packet(DISCONNECT, 0, b"")
        case Subscribe():
            body = _U16.pack(packet.packet_id) + b"".join(_string(t) + bytes((q,)) for t, q in packet.filters)
            return _packet(SUBSCRIBE, 0b0010, body)
        case Unsubscribe():
            return _packet(UNSUBSCRIBE, 0b0010, _U16.pack(packet.packet_id) + b"".join(map(_string, packet.filters)))
        case Connect():
            return _packet(CONNECT, 0, _connect_body(packet))
    raise ValueError(f"not a packet: {packet!r}")


def _connect_body(packet: Connect) -> bytes:
    will = packet.will_topic is not None
    flags = ((packet.username is not None) << 7 | (packet.password is not None) << 6 | packet.will_retain << 5
             | packet.will_qos << 3 | will << 2 | packet.clean_session << 1)
    parts = [_string(packet.protocol_name), bytes((packet.level, flags)), _U16.pack(packet.keep_alive),
             _string(packet.client_id)]
    if packet.will_topic is not None:
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

    def end(self) -> None:
        if self.left():
            raise InvalidFrame("trailing bytes in packet")


def _packet_id(body: _Body) -> int:
    ident = body.u16()
    if ident == 0:  # MQTT-2.3.1-1
        raise InvalidFrame("packet identifier 0")
    return ident


_FIXED_FLAGS: Final = {CONNECT: 0, CONNACK: 0, PUBACK: 0, SUBSCRIBE: 2, SUBACK: 0, UNSUBSCRIBE: 2, UNSUBACK: 0,
                       PINGREQ: 0, PINGRESP: 0, DISCONNECT: 0}
"""The reserved flag bits each packet type must carry (MQTT-2.2.2-1); PUBLISH's are its own."""


def decode(first: int, data: bytes) -> Packet:
    """One packet from its first byte and its body (the bytes after the remaining length)."""
    kind, flags = first >> 4, first & 0x0F
    if kind != PUBLISH:
        if kind not in _FIXED_FLAGS:
            raise InvalidFrame(f"unsupported packet type {kind}")
        if flags != _FIXED_FLAGS[kind]:
            raise InvalidFrame("malformed fixed header flags")
    body = _Body(data)
    packet: Packet
    if kind == PUBLISH:
        packet = _decode_publish(flags, body)
    elif kind == CONNECT:
        packet = _decode_connect(body)
        if packet.level != PROTOCOL_LEVEL:
            return packet  # the rest follows another level's rules (MQTT 5: properties); the answer is a refusal
    elif kind == CONNACK:
        ack_flags, code = body.u8(), body.u8()
        if ack_flags & 0xFE:
            raise InvalidFrame("malformed CONNACK flags")
        packet = ConnAck(code, bool(ack_flags))
    elif kind == PUBACK:
        packet = PubAck(_packet_id(body))
    elif kind == SUBSCRIBE:
        ident = _packet_id(body)
        filters = []
        while body.left():
            topic, qos = body.string(), body.u8()
            if qos > 2:  # MQTT-3.8.3-4
                raise InvalidFrame("malformed requested QoS")
            filters.append((topic, qos))
        if not filters:  # MQTT-3.8.3-3
            raise InvalidFrame("SUBSCRIBE without a topic filter")
        packet = Subscribe(ident, tuple(filters))
    elif kind == SUBACK:
        ident = _packet_id(body)
        codes = tuple(body.take(body.left()))
        if any(c not in (0, 1, 2, SUBACK_FAILURE) for c in codes):
            raise InvalidFrame("malformed SUBACK return code")
        packet = SubAck(ident, codes)
    elif kind == UNSUBSCRIBE:
        ident = _packet_id(body)
        topics = []
        while body.left():
            topics.append(body.string())
        if not topics:  # MQTT-3.10.3-2
            raise InvalidFrame("UNSUBSCRIBE without a topic filter")
        packet = Unsubscribe(ident, tuple(topics))
    elif kind == UNSUBACK:
        packet = UnsubAck(_packet_id(body))
    elif kind == PINGREQ:
        packet = PingReq()
    elif kind == PINGRESP:
        packet = PingResp()
    else:
        packet = Disconnect()
    body.end()
    return packet


def _decode_publish(flags: int, body: _Body) -> Publish:
    qos = (flags >> 1) & 0b11
    if qos == 3:  # MQTT-3.3.1-4
        raise InvalidFrame("PUBLISH with QoS 3")
    dup = bool(flags & 0b1000)
    if dup and qos == 0:  # MQTT-3.3.1-2
        raise InvalidFrame("DUP set on a QoS 0 PUBLISH")
    topic = body.string()
    if not topic or "+" in topic or "#" in topic:  # MQTT-3.3.2-1, 4.7.3-1
        raise InvalidFrame("malformed topic name")
    ident = _packet_id(body) if qos else None
    return Publish(topic, body.take(body.left()), qos, ident, bool(flags & 1), dup)


def _decode_connect(body: _Body) -> Connect:
    name = body.string()
    level = body.u8()
    if name != "MQTT" and not (name == "MQIsdp" and level == 3):  # MQTT-3.1.2-1
        raise InvalidFrame("not an MQTT CONNECT")
    if level != PROTOCOL_LEVEL:
        return Connect(client_id="", protocol_name=name, level=level)
    flags = body.u8()
    keep_alive = body.u16()
    if flags & 1:  # MQTT-3.1.2-3
        raise InvalidFrame("reserved CONNECT flag set")
    will, will_qos, will_retain = bool(flags & 0b100), (flags >> 3) & 0b11, bool(flags & 0b10_0000)
    if will_qos == 3 or (not will and (will_qos or will_retain)):  # MQTT-3.1.2-11, -13, -14, -15
        raise InvalidFrame("malformed will flags")
    has_user, has_password = bool(flags & 0x80), bool(flags & 0x40)
    if has_password and not has_user:  # MQTT-3.1.2-22
        raise InvalidFrame("password without a user name")
    client_id = body.string()
    will_topic, will_payload = (body.string(), body.binary()) if will else (None, b"")
    username = body.string() if has_user else None
    password = body.binary() if has_password else None
    return Connect(client_id, bool(flags & 0b10), keep_alive, username, password, will_topic, will_payload,
                   will_qos, will_retain, name, level)


class PacketReader:
    """Turns a byte stream into packets.

    The remaining length is checked against ``max_packet`` as soon as its last byte is in, before the body is
    buffered. After ``feed()`` has raised, the stream is unusable.
    """

    __slots__ = ("_broken", "_buffer", "_max_packet")

    def __init__(self, max_packet: int) -> None:
        self._buffer = bytearray()
        self._max_packet = max_packet
        self._broken = False

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
            packets.append(decode(buffer[offset], bytes(buffer[pos:pos + length])))
            offset = pos + length
        del buffer[:offset]
        return packets
