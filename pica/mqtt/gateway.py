"""The MQTT 3.1.1 and 5.0 transport: a :class:`Connection` whose wire is MQTT packets (docs/protocol.md, MQTT).

Everything the other gateways enforce comes from :class:`Connection` unchanged: the auth deadline, registering with
the hub (so cluster delivery, bans, session revocation and the session cap reach MQTT devices like any other), the
in-flight limit on sends, the per-connection request rate, the slow-consumer cut, and the send path itself
(``Connection._submit`` → ``ChatService.submit`` → the ack after the durable commit). This class only translates:

- inbound packets into those calls: CONNECT into an authentication, PUBLISH on ``send/...`` into a send, PUBACK into
  the delivered cursor;
- outbound frames into packets: ``ready`` into CONNACK 0, ``sent`` into PUBACK, ``msg`` into a QoS 1 PUBLISH on
  ``msg/<conversation_id>`` when a subscription covers it; the rest (receipts, typing, presence, pings) has no MQTT
  form and is dropped;
- errors into what the client's MQTT level can say: a CONNACK code before the session is accepted; after it, in
  3.1.1 closing the socket (it has no negative acknowledgement) with a log line naming the reason, in 5.0 a PUBACK
  with a reason code for a refused send and a DISCONNECT with a reason code before the server closes
  (:mod:`pica.mqtt.rules` holds which code for what).

Small seams of the base classes exist for this one: ``Connection.idle_limit()`` (the keep-alive's 1.5x rule instead
of ``limits.idle_timeout``), ``Connection.within_rate()`` (the request rate, which ``on_payload`` applies to decoded
Pica frames) and ``TcpConnection._refusal()`` (what a socket over the per-address cap is told: nothing, in MQTT);
``push`` and ``send_error`` are overridden (docs/architecture.md, "The MQTT gateway").

A persistent session (3.1.1's clean session 0; 5.0's Clean Start 0 with a Session Expiry Interval over 0) keeps its
state in the store, not in memory: its position is the user's delivered cursor of each conversation, moved by this
client's PUBACKs. When it subscribes, it is sent everything after those cursors, page by page through
``ChatService.sync``, before the live messages held back meanwhile.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import socket
from collections import deque
from collections.abc import Coroutine
from typing import Any, Final

import msgspec

from pica.config import MqttConfig
from pica.core.bots import is_bot_key
from pica.core.sessions import Identity
from pica.core.validation import normalize_username
from pica.errors import (
    FrameTooLarge,
    InvalidFrame,
    InvalidUsername,
    PicaError,
    Unauthenticated,
)
from pica.gateway.connection import State
from pica.gateway.services import GatewayServices
from pica.gateway.tcp import TcpConnection, reset
from pica.gateway.tls import ServerTls
from pica.mqtt import rules, topics
from pica.protocol import frames as f
from pica.protocol import mqtt as m
from pica.protocol.close_codes import CloseCode
from pica.protocol.codec import Encoding
from pica.protocol.frames import ClientMsgId
from pica.protocol.outbound import OutboundFrame

log = logging.getLogger(__name__)

NO_CURSOR: Final = 2**62
"""A sync cursor past any seq: the user's own timeline ``u:<id>`` (delete-for-me notices) is not replayed."""

CURSOR_FLUSH_DELAY: Final = 0.2
"""Seconds PUBACKs are gathered before the delivered cursors they move are written: one store write per
conversation per interval instead of one per message. A crash in between re-sends those messages (at least once)."""

MAX_EARLY_PACKETS: Final = 16
"""Packets a client may send after CONNECT before its CONNACK; more close the connection."""


def _normal(username: str) -> str | None:
    try:
        return normalize_username(username)
    except InvalidUsername:
        return None


class SendPayload(msgspec.Struct, forbid_unknown_fields=True):
    """The payload of a PUBLISH on ``send/u/<id>`` or ``send/g/<id>``: what ``POST /v1/messages`` takes."""

    client_msg_id: ClientMsgId
    body: dict[str, Any]


_decode_send = msgspec.json.Decoder(SendPayload).decode


MESSAGE_PROPERTIES: Final = m.Properties(payload_format=1, content_type="application/json")
"""Of every message PUBLISH in 5.0: the payload is a UTF-8 JSON ``msg`` frame."""

R = m.Reason


def _looks_like_token(password: str) -> bool:
    """An access token (a JWT: three base64url parts) or a bot's key (``pica_bot_...``) rather than a password. A
    password that happens to look like one is still tried as a token only; users who chose such a password log in
    over HTTP and connect with the token."""
    parts = password.split(".")
    return (len(parts) == 3 and password.startswith("eyJ") and all(parts)) or is_bot_key(password)


class MqttConnection(TcpConnection):
    transport_name = "mqtt"
    __slots__ = (
        "_accepted",
        "_acked",
        "_assigned_id",
        "_client",
        "_client_id",
        "_close_reason",
        "_config",
        "_connacked",
        "_connect",
        "_early",
        "_flush_scheduled",
        "_held",
        "_inflight_out",
        "_keep_alive",
        "_level",
        "_max_inflight",
        "_next_id",
        "_own_session",
        "_packets",
        "_persistent",
        "_replayed",
        "_replaying",
        "_subs",
        "_subscribing",
        "_window",
    )

    def __init__(self, services: GatewayServices, config: MqttConfig) -> None:
        super().__init__(services)
        self._config = config
        self._packets = m.PacketReader(config.max_packet_bytes)
        self._client_id = ""
        self._own_session = False
        """The session was opened by this connection's password CONNECT: it ends with the connection."""
        self._persistent = False
        self._connacked = False
        self._keep_alive = float(config.max_keep_alive) * 1.5
        self._subs: dict[str, tuple[str, int]] = {}
        """Topic filter → (its scope, ``topics.ALL`` or one conversation id; the granted QoS)."""
        self._early: list[m.Packet] = []
        """Packets read after CONNECT, before the authentication ended: 3.1.1 lets clients send them at once
        (section 3.1.4); they are handled after the CONNACK."""
        self._next_id = 0
        self._inflight_out: dict[int, tuple[str, int]] = {}
        """QoS 1 PUBLISHes not yet acknowledged: packet id → (conversation id, seq)."""
        self._acked: dict[str, int] = {}
        """Acknowledged, not yet written as delivered cursors: conversation id → highest seq."""
        self._flush_scheduled = False
        self._replaying = False
        self._replayed = False
        self._held: deque[f.Msg] = deque()
        """Live messages waiting: those that arrived while the store was being replayed (sent after it, unless
        replayed already), and those behind a full in-flight window (sent as PUBACKs open it)."""
        self._window: asyncio.Event | None = None
        self._level = m.PROTOCOL_LEVEL
        self._connect: m.Connect | None = None
        self._assigned_id: str | None = None
        """The client id the server chose for a 5.0 client that sent none (announced in CONNACK)."""
        self._client = rules.ClientLimits()
        self._max_inflight = config.max_inflight_messages
        """The window of unacknowledged QoS 1 messages to this client: lowered to a 5.0 client's Receive Maximum."""
        self._accepted = False
        """An accepting CONNACK was queued: from then on a 5.0 client is told why the server closes."""
        self._close_reason: tuple[int, str | None] | None = None
        """The 5.0 DISCONNECT reason (code, Reason String) of the close under way, when its close code does not say
        enough."""
        self._subscribing: m.Subscribe | None = None
        """The SUBSCRIBE being checked against the request rate: a refusal answers it in SUBACK (5.0)."""

    # ------------------------------------------------------------------------------------------ asyncio.Protocol
    # connection_made (the per-address cap, the drain, the hub's timers), eof_received, connection_lost and the
    # write, pause and resume hooks are TcpConnection's: only the bytes differ.

    def _refusal(self, limit: int) -> bytes:
        return b""  # 3.1.1 answers a CONNECT only, and this client has not sent one yet

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            packets = self._packets.feed(data)
        except (InvalidFrame, FrameTooLarge) as exc:
            if isinstance(exc, FrameTooLarge):
                self.services.metrics.refused("mqtt.max_packet_bytes")
            self._refuse(f"malformed packet: {exc.message}", CloseCode.PROTOCOL_ERROR,
                         R.PACKET_TOO_LARGE if isinstance(exc, FrameTooLarge) else R.MALFORMED_PACKET)
            return
        self.last_recv = self.services.clock.monotonic()
        for packet in packets:
            self.services.metrics.frames_in += 1
            self._on_packet(packet)
            if self.closed:
                break

    def connection_lost(self, exc: Exception | None) -> None:  # type: ignore[override]
        super().connection_lost(exc)
        if self._window is not None:
            self._window.set()  # a replay waiting for acknowledgements ends
        self._flush_cursors()
        if self._own_session and self.user_id:
            # The session a password CONNECT opened belongs to this connection alone (nobody holds its tokens):
            # ended with it, so that a device reconnecting with its password does not pile up sessions until
            # auth.max_sessions ends the user's other ones.
            self._own_session = False
            self._spawn_store_call(self.services.accounts.sessions.end(self.user_id, self.login_session, "mqtt"))

    # ------------------------------------------------------------------------------------------ inbound

    def _on_packet(self, packet: m.Packet) -> None:
        if self.state is State.AWAIT_AUTH:
            if isinstance(packet, m.Connect):
                self._on_connect(packet)
            else:
                self._refuse("the first packet must be CONNECT", CloseCode.PROTOCOL_ERROR)  # MQTT-3.1.0-1
            return
        if self.state is State.AUTHENTICATING:
            if len(self._early) >= MAX_EARLY_PACKETS:
                self._refuse("too many packets before CONNACK", CloseCode.PROTOCOL_ERROR)
            else:
                self._early.append(packet)
            return
        match packet:
            case m.Publish():
                if self.within_rate(packet.packet_id):
                    self._on_publish(packet)
            case m.PubAck():
                self._on_puback(packet.packet_id)
            case m.Subscribe():
                self._subscribing = packet
                allowed = self.within_rate(None)
                self._subscribing = None
                if allowed:
                    self._on_subscribe(packet)
            case m.Unsubscribe():
                codes = tuple(R.SUCCESS if self._subs.pop(topic_filter, None) else R.NO_SUBSCRIPTION_EXISTED
                              for topic_filter in packet.filters)
                self._write(m.UnsubAck(packet.packet_id, codes if self._v5 else ()))
            case m.PingReq():
                self._write(m.PingResp())
            case m.Disconnect():
                self._close_reason = (R.SUCCESS, None)  # the client's: the server sends no DISCONNECT back
                self.close(CloseCode.NORMAL, "disconnect")
            case m.Auth():
                self._refuse("AUTH without an authentication method", CloseCode.PROTOCOL_ERROR)  # MQTT-4.12.0-1
            case _:
                self._refuse(f"unexpected {type(packet).__name__}", CloseCode.PROTOCOL_ERROR)  # a second CONNECT

    @property
    def _v5(self) -> bool:
        return self._level == m.MQTT5_LEVEL

    def _on_connect(self, packet: m.Connect) -> None:
        if packet.level not in (m.PROTOCOL_LEVEL, m.MQTT5_LEVEL):
            self._connack(m.UNACCEPTABLE_PROTOCOL_VERSION, f"protocol level {packet.level} (MQTT 3.1.1 and 5.0 only)")
            return
        self._level = packet.level
        self._connect = packet
        if self._v5:
            refusal = rules.connect_refusal(packet)
            if refusal is not None:
                self._connack(refusal[0], refusal[1])
                return
            self._client = rules.client_limits(packet.properties)
            self._max_inflight = min(self._config.max_inflight_messages, self._client.receive_maximum)
            if not packet.client_id:  # MQTT-3.2.2-16
                self._assigned_id = "auto-" + secrets.token_hex(8)
        elif not packet.client_id and not packet.clean_session:  # MQTT-3.1.3-8
            self._connack(m.IDENTIFIER_REJECTED, "a persistent session needs a client id")
            return
        elif len(packet.client_id) > rules.CLIENT_ID_CHARS:
            self._connack(m.IDENTIFIER_REJECTED, "client id over 64 characters")
            return
        if packet.username is None or packet.password is None:
            self._connack(R.BAD_USER_NAME_OR_PASSWORD if self._v5 else m.BAD_USERNAME_OR_PASSWORD,
                          "no username or password")
            return
        try:
            password = packet.password.decode("utf-8")
        except UnicodeDecodeError:
            self._connack(R.BAD_USER_NAME_OR_PASSWORD if self._v5 else m.BAD_USERNAME_OR_PASSWORD,
                          "password is not UTF-8")
            return
        # Will messages are accepted and never published (docs/protocol.md, MQTT): a chat message needs a
        # client_msg_id and a conversation, which a will cannot carry meaningfully.
        self._client_id = packet.client_id or self._assigned_id or ""
        self._persistent = rules.persistent(packet)
        self._keep_alive = 1.5 * rules.applied_keep_alive(packet.keep_alive, self._config)
        self.state = State.AUTHENTICATING
        task = asyncio.get_running_loop().create_task(self._login(packet.username, password))
        self.services.track(task)

    async def _login(self, username: str, password: str) -> None:
        accounts = self.services.accounts
        try:
            await self.services.connect_turn()
            if self.closed:
                return
            if _looks_like_token(password):
                who = await accounts.authenticate(password)
                user = await accounts.get(who.user_id)
                if user is None or user.username != _normal(username):
                    raise Unauthenticated("the token is not this user's")
            else:
                # A login like POST /v1/auth/login: the same rate limits and audit lines, and a session of its own
                # (listed, revocable: revoking it closes this socket).
                tokens = await accounts.login(username, password, self._address or "", "mqtt")
                self._own_session = True
                who = await accounts.authenticate(tokens.token)
        except PicaError as exc:
            self._connack(rules.connack_code(exc, self._level), exc.message)
            return
        if self.closed:
            return
        if self.services.before_ready is not None:
            await self.services.before_ready(who.user_id)
            if self.closed:
                return
        self._take_over(who)
        self.accept(who, "mqtt-" + (self._client_id or secrets.token_hex(4)))
        early, self._early = self._early, []
        for packet in early:
            if self.state is not State.READY:
                break
            self._on_packet(packet)

    def _take_over(self, who: Identity) -> None:
        """A new connection with a client id closes the user's older one with it on this node (MQTT-3.1.4-2)."""
        if not self._client_id:
            return
        for conn in self.services.hub.of_user(who.user_id):
            if isinstance(conn, MqttConnection) and conn is not self and conn._client_id == self._client_id:
                log.info("mqtt client id taken over", extra={"user_id": who.user_id})
                conn._close_reason = (R.SESSION_TAKEN_OVER, None)
                conn.close(CloseCode.NORMAL, "client id taken over")

    def _on_publish(self, packet: m.Publish) -> None:
        if self._v5:
            # What 5.0 answers with a DISCONNECT: what the CONNACK said the server does not take
            if packet.retain:
                self._refuse("a retained PUBLISH (Retain Available is 0)", CloseCode.PROTOCOL_ERROR,
                             R.RETAIN_NOT_SUPPORTED)
                return
            if packet.qos == 2:
                self._refuse("a QoS 2 PUBLISH (Maximum QoS is 1)", CloseCode.PROTOCOL_ERROR, R.QOS_NOT_SUPPORTED)
                return
            if packet.properties.topic_alias is not None:
                self._refuse("a Topic Alias (Topic Alias Maximum is 0)", CloseCode.PROTOCOL_ERROR,
                             R.TOPIC_ALIAS_INVALID)
                return
        if packet.qos != 1 or packet.packet_id is None:
            # QoS 0 is refused: a send is acknowledged after its durable commit, and QoS 0 has no acknowledgement.
            # QoS 2's exactly-once is what client_msg_id already gives with QoS 1.
            self._refuse(f"send with QoS {packet.qos} (only QoS 1)", CloseCode.PROTOCOL_ERROR,
                         R.IMPLEMENTATION_SPECIFIC_ERROR)
            return
        target = topics.send_target(packet.topic) if len(packet.topic) <= self._config.max_topic_length else None
        if target is None:
            self._refuse_send(packet.packet_id, R.TOPIC_NAME_INVALID,
                              "PUBLISH to a topic other than send/u/<id> or send/g/<id>")
            return
        try:
            payload = _decode_send(packet.payload)
        except msgspec.DecodeError as exc:
            self._refuse_send(packet.packet_id, R.PAYLOAD_FORMAT_INVALID, f"malformed send payload: {exc}")
            return
        kind, ident = target
        to, group_id = (ident, None) if kind == "user" else (None, ident)
        chat = self.services.chat
        self._submit(packet.packet_id, lambda reply: chat.submit(
            self.user_id, payload.client_msg_id, payload.body, reply, to=to, group_id=group_id, origin=self))

    def _on_subscribe(self, packet: m.Subscribe) -> None:
        if packet.properties.subscription_ids:
            self._refuse("a Subscription Identifier (not available)", CloseCode.PROTOCOL_ERROR,
                         R.SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED)
            return
        codes = []
        for topic_filter, options in packet.filters:
            scope = None
            code: int = m.SUBACK_FAILURE
            if len(topic_filter.encode()) > self._config.max_topic_length:
                code = R.TOPIC_FILTER_INVALID if self._v5 else code
            elif topic_filter not in self._subs and len(self._subs) >= self._config.max_subscriptions:
                code = R.QUOTA_EXCEEDED if self._v5 else code
            else:
                scope = topics.filter_scope(topic_filter, self.user_id)
                code = rules.suback_refusal(topic_filter) if self._v5 else code
            if scope is None:
                codes.append(code)
                continue
            # QoS 2 is not spoken; 1 is what a Pica message needs. Of 5.0's options, No Local is what the server
            # does anyway (a send is not published back to its connection), and the retain options mean nothing
            # without retained messages.
            granted = min(options & 0b11, 1)
            self._subs[topic_filter] = (scope, granted)
            codes.append(granted)
        self._write(m.SubAck(packet.packet_id, tuple(codes)))
        if self._persistent and not self._replayed and not self._replaying and self._subs:
            self._replaying = True
            task = asyncio.get_running_loop().create_task(self._replay())
            self.services.track(task)

    def _on_puback(self, packet_id: int) -> None:
        sent = self._inflight_out.pop(packet_id, None)
        if sent is None:
            return  # a PUBACK for nothing we sent (a duplicate): MQTT has no answer for it
        conversation_id, seq = sent
        if seq > self._acked.get(conversation_id, 0):
            self._acked[conversation_id] = seq
        if self._window is not None and len(self._inflight_out) < self._max_inflight:
            self._window.set()
        if not self._replaying:  # a replay sends what is held itself, after the store's messages
            self._send_held()
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_later(CURSOR_FLUSH_DELAY, self._flush_cursors)

    def _flush_cursors(self) -> None:
        """Write the acknowledged positions as the user's delivered cursors: what a persistent session resumes from."""
        self._flush_scheduled = False
        acked, self._acked = self._acked, {}
        chat, user_id = self.services.chat, self.user_id
        for conversation_id, seq in acked.items():
            self._spawn_store_call(chat.mark_received(user_id, conversation_id, seq))

    def _spawn_store_call(self, work: Coroutine[Any, Any, None]) -> None:
        """Run a store call no client waits for; a failure is logged (the cursor or the session stays as it was)."""
        async def guarded() -> None:
            try:
                await work
            except PicaError as exc:
                log.warning("mqtt store call failed", extra={"user_id": self.user_id, "code": exc.code})

        self.services.track(asyncio.get_running_loop().create_task(guarded()))

    # ------------------------------------------------------------------------------------------ the store replay

    async def _replay(self) -> None:
        """Send a persistent session what it missed, from the store, in seq order per conversation, then what
        arrived live meanwhile (unless replayed already): one ordered source, no duplicate from two paths."""
        chat = self.services.chat
        cursors: dict[str, int] = {f"u:{self.user_id}": NO_CURSOR}
        try:
            before_ts: int | None = None
            before_id = ""
            while True:  # the conversation list ends at an empty page (protocol §23.3)
                page = await chat.conversations(self.user_id, before_ts=before_ts, before_id=before_id)
                if not page or self.closed:
                    break
                for summary in page:
                    cursors[summary.conversation_id] = summary.delivered_seq
                before_ts, before_id = page[-1].last_ts, page[-1].conversation_id
            more = True
            while more and not self.closed:
                synced = await chat.sync(self.user_id, cursors, None)
                for msg in synced.messages:
                    cursors[msg.conversation_id] = max(cursors.get(msg.conversation_id, 0), msg.seq)
                    await self._send_when_window_open(msg)
                    if self.closed:
                        break
                more = synced.more and bool(synced.messages)
            # Then the live messages held meanwhile, still in replay mode (new ones queue behind them) and through
            # the window: published at once, they could overrun it and cut a client that is only catching up.
            while self._held and not self.closed:
                msg = self._held.popleft()
                if msg.seq > cursors.get(msg.conversation_id, 0):
                    cursors[msg.conversation_id] = msg.seq
                    await self._send_when_window_open(msg)
        except PicaError as exc:
            log.warning("mqtt replay failed", extra={"user_id": self.user_id, "code": exc.code})
            self.close(CloseCode.INTERNAL_ERROR, "replay failed")
        finally:
            self._replaying = False
            self._replayed = True
            self._held.clear()

    async def _send_when_window_open(self, msg: f.Msg) -> None:
        while len(self._inflight_out) >= self._max_inflight and not self.closed:
            if self._window is None:
                self._window = asyncio.Event()
            self._window.clear()
            await self._window.wait()
        self._publish(msg)

    # ------------------------------------------------------------------------------------------ outbound

    def push(self, frame: OutboundFrame) -> None:
        """The hub's delivery: only ``msg`` frames have an MQTT form (and ``ready``/``sent``, written by Connection
        itself); the rest are dropped here, before costing an outbox entry."""
        payload = frame.frame
        if isinstance(payload, f.Msg):
            if self.closed or self._qos_for(payload.conversation_id) is None:
                return
            if self._replaying or self._held or self._window_full():
                self._hold(payload)
            else:
                if frame.committed_at:
                    self._time(self.services.metrics.delivery, frame.committed_at)
                self._publish(payload)
        elif isinstance(payload, f.Ready | f.Sent):
            super().push(frame)

    def _window_full(self) -> bool:
        return len(self._inflight_out) >= self._max_inflight

    def _hold(self, msg: f.Msg) -> None:
        """Keep a live message until the replay or the window lets it go; past the queue's bound the client is
        cut as a slow consumer (what it missed is in the store, for its persistent session)."""
        if len(self._held) >= self._config.max_queued_messages:
            log.info("cutting slow mqtt subscriber", extra={"user_id": self.user_id, "conn": "mqtt"})
            self.services.metrics.slow_consumers += 1
            self._held.clear()
            if self._v5:  # not cut for unread bytes: it can be told why, after what it was sent
                self._close_reason = (R.QUOTA_EXCEEDED, "too many unacknowledged messages")
            self.close(CloseCode.SLOW_CONSUMER, "too many unacknowledged messages")
            return
        self._held.append(msg)

    def _send_held(self) -> None:
        """Publish held messages, in the order they arrived, while the in-flight window has room."""
        while self._held and not self.closed and not self._window_full():
            self._publish(self._held.popleft())

    def _publish(self, msg: f.Msg) -> None:
        """Write one message: with a packet id in the in-flight window for QoS 1 (the callers make sure it has
        room)."""
        qos = self._qos_for(msg.conversation_id)
        if qos is None or self.closed:
            return
        payload = OutboundFrame(msg).payload(Encoding.JSON)
        topic = topics.message_topic(msg.conversation_id)
        if self._v5 and len(payload) + len(topic) + 40 > self._client.maximum_packet_size:
            # MQTT-3.1.2-25: a message too large for the client is dropped as if sent (+40: header and properties)
            log.info("mqtt message over the client's maximum packet size dropped",
                     extra={"user_id": self.user_id, "conversation_id": msg.conversation_id, "seq": msg.seq})
            return
        packet_id = None
        if qos:
            packet_id = self._packet_id()
            self._inflight_out[packet_id] = (msg.conversation_id, msg.seq)
        self._write(m.Publish(topic, payload, qos, packet_id,
                              properties=MESSAGE_PROPERTIES if self._v5 else m.NO_PROPERTIES))

    def _qos_for(self, conversation_id: str) -> int | None:
        """The highest QoS granted by a subscription covering the conversation, or None."""
        best = None
        for scope, qos in self._subs.values():
            if (scope == topics.ALL or scope == conversation_id) and (best is None or qos > best):
                best = qos
        return best

    def _packet_id(self) -> int:
        while True:
            self._next_id = self._next_id % 65535 + 1
            if self._next_id not in self._inflight_out:
                return self._next_id

    def _write(self, packet: m.Packet) -> None:
        """Queue a packet in Connection's outbox (one write per loop turn, the slow-consumer check on flush)."""
        self.queue_bytes(self._encode(packet))

    def _encode(self, packet: m.Packet) -> bytes:
        """The packet in the client's level; a 5.0 acknowledgement loses its Reason String when the client asked
        for none or cannot take the size (MQTT-3.1.2-29, -3.4.2-2)."""
        data = m.encode(packet, self._level)
        if isinstance(packet, m.PubAck | m.SubAck | m.UnsubAck) and packet.properties.reason_string is not None and (
                not self._client.problem_information or len(data) > self._client.maximum_packet_size):
            data = m.encode(dataclasses.replace(packet, properties=m.NO_PROPERTIES), self._level)
        return data

    def send_error(self, error: PicaError, ref: int | None = None) -> None:
        """Before CONNACK the error is a CONNACK code. After it, MQTT 3.1.1 cannot refuse one request: the
        connection is closed (a refused send, a rate limit, a ban, an ended session), with a log line. 5.0 refuses
        a send in its PUBACK (``ref`` is its packet id) and a rate-limited SUBSCRIBE in its SUBACK; the rest closes
        the connection after a DISCONNECT saying why."""
        self.services.metrics.error(error, self.transport_name)
        if not self._connacked:
            self._connack(rules.connack_code(error, self._level), error.message)
            return
        if self._v5 and ref is not None:
            self._refuse_send(ref, rules.puback_reason(error), rules.reason_text(error))
            return
        if self._v5 and self._subscribing is not None:
            sub = self._subscribing
            self._write(m.SubAck(sub.packet_id, (R.QUOTA_EXCEEDED,) * len(sub.filters),
                                 m.Properties(reason_string=rules.reason_text(error))))
            return
        self._refuse(error.code, CloseCode.PROTOCOL_ERROR, rules.error_disconnect_reason(error),
                     rules.reason_text(error))

    def _refuse_send(self, packet_id: int, reason: int, text: str) -> None:
        """A send refused: in 5.0 its PUBACK says why; in 3.1.1 the connection is closed."""
        if not self._v5:
            self._refuse(text, CloseCode.PROTOCOL_ERROR)
            return
        log.info("mqtt send refused: %s", text, extra={"user_id": self.user_id, "code": reason})
        self._write(m.PubAck(packet_id, reason, m.Properties(reason_string=text[:200])))

    def _refuse(self, text: str, code: CloseCode, reason: int | None = None, reason_text: str | None = None) -> None:
        """Close the connection, with a log line; a 5.0 client is sent a DISCONNECT with ``reason`` first (else
        the one of ``code``)."""
        log.info("closing mqtt connection: %s", text, extra={"user_id": self.user_id})
        self._close_reason = (rules.disconnect_reason(code) if reason is None else reason, reason_text or text[:200])
        self.close(code, text[:120])

    def _connack(self, return_code: int, reason: str) -> None:
        """A refused CONNECT: CONNACK with the code, then close (MQTT-3.2.2-5)."""
        if return_code != m.ACCEPTED:
            log.info("mqtt connect refused: %s", reason, extra={"code": return_code})
        props = m.Properties(reason_string=reason[:200]) if self._v5 else m.NO_PROPERTIES
        self.queue_bytes(m.encode(m.ConnAck(return_code, properties=props), self._level))
        self._connacked = True
        self.close(CloseCode.AUTH_FAILED, reason[:120])

    # ------------------------------------------------------------------------------------------ Connection hooks

    def _transport_bytes(self, frame: OutboundFrame) -> bytes:
        payload = frame.frame
        if isinstance(payload, f.Ready):
            self._connacked = self._accepted = True
            props = m.NO_PROPERTIES
            if self._v5 and self._connect is not None:
                props = rules.connack_properties(self._config, self.services.limits.max_inflight_requests,
                                                 self._connect, self._assigned_id)
            return m.encode(m.ConnAck(m.ACCEPTED, session_present=False, properties=props), self._level)
        if isinstance(payload, f.Sent) and payload.ref is not None:
            return m.encode(m.PubAck(payload.ref), self._level)  # after the durable commit: Connection._sent runs then
        return b""

    def _transport_close(self, code: CloseCode, reason: str) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        told = self._close_reason
        if code is CloseCode.SLOW_CONSUMER and told is None:
            reset(transport)  # cut for unread bytes: what it has not read is dropped; it resumes from the store
        else:
            # 3.1.1 has no close notice: the server just closes (after what is queued). 5.0 says why, once the
            # session was accepted (MQTT-3.14.0-1), unless the client itself sent DISCONNECT.
            if self._v5 and self._accepted and (told is None or told[0] != R.SUCCESS):
                why, text = told if told is not None else (rules.disconnect_reason(code), None)
                props = m.Properties(reason_string=text) if text else m.NO_PROPERTIES
                transport.write(m.encode(m.Disconnect(why, props), self._level))
            transport.close()
        if self._window is not None:
            self._window.set()  # a replay waiting for room ends

    def idle_limit(self) -> float:
        return self._keep_alive


async def start_mqtt_server(services: GatewayServices, config: MqttConfig, sock: socket.socket,
                            tls: ServerTls | None = None) -> asyncio.Server:
    """Listen on an already bound socket; with ``tls``, MQTT over TLS (the TCP gateway's context and policy)."""
    return await asyncio.get_running_loop().create_server(
        lambda: MqttConnection(services, config), sock=sock, backlog=4096,
        ssl=tls.tcp if tls else None, ssl_handshake_timeout=tls.handshake_timeout if tls else None,
    )
