"""What the MQTT gateway answers, as pure rules (docs/protocol.md, MQTT): the CONNACK code of a refused login, the
MQTT 5.0 reason code of a refused send and of a close, and the limits a 5.0 CONNACK announces.

MQTT 3.1.1 can refuse a CONNECT only; 5.0 can also refuse one PUBLISH (a PUBACK with a reason code of 0x80 or
more) and say why the server closes (a DISCONNECT with a reason code). The reason codes are the ones MQTT 5.0 lists
for each packet (sections 3.2.2.2, 3.4.2.1, 3.14.2.1): PUBACK has no "packet too large" (0x95), so a message body
over ``limits.max_body_bytes`` gets 0x83 with a Reason String, and 0x95 is the DISCONNECT of a packet over
``mqtt.max_packet_bytes``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from pica.config import MqttConfig
from pica.errors import (
    BadRequest,
    Banned,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    PicaError,
    RateLimited,
    TooManySessions,
    Unauthenticated,
)
from pica.protocol import mqtt as m
from pica.protocol.close_codes import CloseCode

R = m.Reason

CLIENT_ID_CHARS: Final = 64
"""The longest client identifier accepted (3.1.1 servers must take 23; longer ones are common)."""


def connack_code(error: PicaError, level: int) -> int:
    """The CONNACK code of a refused authentication, in the client's protocol level."""
    if level == m.MQTT5_LEVEL:
        if isinstance(error, Banned):
            return R.BANNED
        if isinstance(error, Unauthenticated):
            return R.BAD_USER_NAME_OR_PASSWORD
        if isinstance(error, RateLimited):
            return R.CONNECTION_RATE_EXCEEDED  # the login rate limits
        if isinstance(error, TooManySessions):
            return R.QUOTA_EXCEEDED
        return R.SERVER_UNAVAILABLE
    if isinstance(error, Banned):
        return m.NOT_AUTHORIZED
    if isinstance(error, Unauthenticated):
        return m.BAD_USERNAME_OR_PASSWORD
    return m.SERVER_UNAVAILABLE  # rate limited, sessions over the cap, the store failing: try again later


def puback_reason(error: PicaError) -> R:
    """The 5.0 PUBACK reason code of a refused send; the Reason String carries the Pica error code."""
    if isinstance(error, RateLimited):
        return R.QUOTA_EXCEEDED
    if isinstance(error, Forbidden | Unauthenticated):
        return R.NOT_AUTHORIZED  # not allowed to write there: blocked, not a member, a before-send veto
    if isinstance(error, NotFound):
        return R.TOPIC_NAME_INVALID  # the topic names no user or group this server knows
    if isinstance(error, BadRequest) and not isinstance(error, PayloadTooLarge):
        return R.PAYLOAD_FORMAT_INVALID  # the JSON payload, or the message body in it, is not what section 7 takes
    return R.IMPLEMENTATION_SPECIFIC_ERROR  # too large, an idempotency conflict, the store failing (retryable)


DISCONNECT_REASONS: Final[dict[CloseCode, R]] = {
    CloseCode.NORMAL: R.SUCCESS,
    CloseCode.SERVER_SHUTDOWN: R.SERVER_SHUTTING_DOWN,
    CloseCode.IDLE_TIMEOUT: R.KEEP_ALIVE_TIMEOUT,
    CloseCode.SLOW_CONSUMER: R.QUOTA_EXCEEDED,
    CloseCode.INTERNAL_ERROR: R.IMPLEMENTATION_SPECIFIC_ERROR,
    CloseCode.PROTOCOL_ERROR: R.PROTOCOL_ERROR,
    CloseCode.AUTH_FAILED: R.NOT_AUTHORIZED,
    CloseCode.TOKEN_EXPIRED: R.NOT_AUTHORIZED,
    CloseCode.SESSION_ENDED: R.NOT_AUTHORIZED,
    CloseCode.FRAME_TOO_LARGE: R.PACKET_TOO_LARGE,
    CloseCode.TOO_MANY_SESSIONS: R.QUOTA_EXCEEDED,
}
"""The 5.0 DISCONNECT reason code of each way Pica closes a connection (its close code, section 20)."""


def disconnect_reason(code: CloseCode) -> R:
    return DISCONNECT_REASONS.get(code, R.UNSPECIFIED_ERROR)


def max_packet_size(max_remaining: int) -> int:
    """The Maximum Packet Size to announce (a whole packet) for a limit on the remaining length."""
    return 1 + _length_bytes(max_remaining) + max_remaining  # the first byte, the remaining length, the rest


def _length_bytes(n: int) -> int:
    size = 1
    while n >= 128:
        n >>= 7
        size += 1
    return size


@dataclass(frozen=True, slots=True)
class ClientLimits:
    """What a 5.0 client's CONNECT asks of the server (section 3.1.2.11)."""

    receive_maximum: int = 65_535
    """QoS 1 PUBLISHes it accepts unacknowledged."""
    maximum_packet_size: int = m.MAX_REMAINING_LENGTH + 5
    problem_information: bool = True
    """False: no Reason String except in CONNACK, PUBLISH and DISCONNECT."""


def client_limits(props: m.Properties) -> ClientLimits:
    return ClientLimits(
        receive_maximum=props.receive_maximum or 65_535,
        maximum_packet_size=props.maximum_packet_size or m.MAX_REMAINING_LENGTH + 5,
        problem_information=props.request_problem_info != 0,
    )


def connect_refusal(connect: m.Connect) -> tuple[R, str] | None:
    """Why a 5.0 CONNECT is refused before its credentials are looked at, or None."""
    if connect.properties.auth_method is not None:
        return R.BAD_AUTHENTICATION_METHOD, "extended authentication is not supported"
    if connect.will_topic is not None and connect.will_retain:
        return R.RETAIN_NOT_SUPPORTED, "a retained will (Retain Available is 0)"  # MQTT-3.2.2-13
    if connect.will_qos > 1:
        return R.QOS_NOT_SUPPORTED, "a will of QoS 2 (Maximum QoS is 1)"  # MQTT-3.2.2-12
    if len(connect.client_id) > CLIENT_ID_CHARS:
        return R.CLIENT_IDENTIFIER_NOT_VALID, f"client id over {CLIENT_ID_CHARS} characters"
    return None


def persistent(connect: m.Connect) -> bool:
    """Whether the connection resumes a persistent session: 3.1.1's clean session 0; in 5.0 Clean Start 0 with a
    Session Expiry Interval over 0 (with 0, the session ends with the connection, MQTT 5.0 3.1.2.11.2)."""
    if connect.level == m.MQTT5_LEVEL:
        return not connect.clean_session and bool(connect.properties.session_expiry)
    return not connect.clean_session


def applied_keep_alive(requested: int, config: MqttConfig) -> int:
    """The keep-alive the server applies, in seconds: 0 (none) counts as the maximum, so that a vanished client's
    socket is closed in the end."""
    return min(max(requested or config.max_keep_alive, config.min_keep_alive), config.max_keep_alive)


def connack_properties(config: MqttConfig, inflight_sends: int, connect: m.Connect,
                       assigned_client_id: str | None) -> m.Properties:
    """The server's limits, announced in a 5.0 CONNACK (section 3.2.2.3). Receive Maximum bounds the client's own
    unacknowledged sends: ``limits.max_inflight_requests`` (``inflight_sends``), past which the server stops reading
    (``mqtt.max_inflight_messages`` is the other direction, bounded by the client's Receive Maximum)."""
    keep_alive = applied_keep_alive(connect.keep_alive, config)
    return m.Properties(
        assigned_client_id=assigned_client_id,
        server_keep_alive=keep_alive if keep_alive != connect.keep_alive else None,
        receive_maximum=max(1, min(inflight_sends, 65_535)),
        topic_alias_maximum=0,
        maximum_qos=1,
        retain_available=0,
        maximum_packet_size=max_packet_size(config.max_packet_bytes),
        wildcard_available=1,
        subscription_ids_available=0,
        shared_available=0,
    )


def suback_refusal(topic_filter: str) -> R:
    """The SUBACK reason code of a filter :func:`pica.mqtt.topics.filter_scope` refused (or over the limits)."""
    if topic_filter.startswith("$share/"):
        return R.SHARED_SUBSCRIPTIONS_NOT_SUPPORTED
    return R.NOT_AUTHORIZED


def error_disconnect_reason(error: PicaError) -> R:
    """The 5.0 DISCONNECT reason code of an error that ends the connection (a ban, an ended session, ...)."""
    if isinstance(error, TooManySessions):
        return R.QUOTA_EXCEEDED
    if isinstance(error, Unauthenticated):
        return R.NOT_AUTHORIZED
    if isinstance(error, RateLimited):
        return R.MESSAGE_RATE_TOO_HIGH
    if isinstance(error, BadRequest):
        return R.PROTOCOL_ERROR
    return R.IMPLEMENTATION_SPECIFIC_ERROR


def reason_text(error: PicaError) -> str:
    """A Reason String: the Pica error code (section 19), then its message."""
    return f"{error.code}: {error.message}"[:200]

