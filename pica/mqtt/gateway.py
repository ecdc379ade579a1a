"""The MQTT 3.1.1 transport: a :class:`Connection` whose wire is MQTT packets (docs/protocol.md, MQTT).

Everything the other gateways enforce comes from :class:`Connection` unchanged: the auth deadline, registering with
the hub (so cluster delivery, bans, session revocation and the session cap reach MQTT devices like any other), the
in-flight limit on sends, the per-connection request rate, the slow-consumer cut, and the send path itself
(``Connection._submit`` → ``ChatService.submit`` → the ack after the durable commit). This class only translates:

- inbound packets into those calls: CONNECT into an authentication, PUBLISH on ``send/...`` into a send, PUBACK into
  the delivered cursor;
- outbound frames into packets: ``ready`` into CONNACK 0, ``sent`` into PUBACK, ``msg`` into a QoS 1 PUBLISH on
  ``msg/<conversation_id>`` when a subscription covers it; the rest (receipts, typing, presence, pings) has no MQTT
  form and is dropped;
- errors into what 3.1.1 can say: a CONNACK code before the session is accepted, closing the socket after (3.1.1 has
  no negative acknowledgement), with a log line naming the reason.

Small seams of the base classes exist for this one: ``Connection.idle_limit()`` (the keep-alive's 1.5x rule instead
of ``limits.idle_timeout``), ``Connection.within_rate()`` (the request rate, which ``on_payload`` applies to decoded
Pica frames) and ``TcpConnection._refusal()`` (what a socket over the per-address cap is told: nothing, in MQTT);
``push`` and ``send_error`` are overridden (docs/architecture.md, "The MQTT gateway").

A persistent session (clean session 0) keeps its state in the store, not in memory: its position is the user's
delivered cursor of each conversation, moved by this client's PUBACKs. When it subscribes, it is sent everything
after those cursors, page by page through ``ChatService.sync``, before the live messages held back meanwhile.
"""

from __future__ import annotations

import asyncio
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
from pica.core.wire import message_frame
from pica.errors import (
    Banned,
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
from pica.mqtt import topics
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


def _connack_code(error: PicaError) -> int:
    """The 3.1.1 CONNACK code of a refused authentication."""
    if isinstance(error, Banned):
        return m.NOT_AUTHORIZED
    if isinstance(error, Unauthenticated):
        return m.BAD_USERNAME_OR_PASSWORD
    return m.SERVER_UNAVAILABLE  # rate limited, sessions over the cap, the store failing: try again later


def _looks_like_token(password: str) -> bool:
    """An access token (a JWT: three base64url parts) or a bot's key (``pica_bot_...``) rather than a password. A
    password that happens to look like one is still tried as a token only; users who chose such a password log in
    over HTTP and connect with the token."""
    parts = password.split(".")
    return (len(parts) == 3 and password.startswith("eyJ") and all(parts)) or is_bot_key(password)


class MqttConnection(TcpConnection):
    transport_name = "mqtt"
    __slots__ = (
        "_acked",
        "_client_id",
        "_config",
        "_connacked",
        "_early",
        "_flush_scheduled",
        "_held",
        "_inflight_out",
        "_keep_alive",
        "_next_id",
        "_own_session",
        "_packets",
        "_persistent",
        "_replayed",
        "_replaying",
        "_subs",
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
            self._refuse(f"malformed packet: {exc.message}", CloseCode.PROTOCOL_ERROR)
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
                if self.within_rate(None):
                    self._on_subscribe(packet)
            case m.Unsubscribe():
                for topic_filter in packet.filters:
                    self._subs.pop(topic_filter, None)
                self._write(m.UnsubAck(packet.packet_id))
            case m.PingReq():
                self._write(m.PingResp())
            case m.Disconnect():
                self.close(CloseCode.NORMAL, "disconnect")
            case _:
                self._refuse(f"unexpected {type(packet).__name__}", CloseCode.PROTOCOL_ERROR)  # a second CONNECT

    def _on_connect(self, packet: m.Connect) -> None:
        if packet.level != m.PROTOCOL_LEVEL:
            self._connack(m.UNACCEPTABLE_PROTOCOL_VERSION, f"protocol level {packet.level} (MQTT 3.1.1 only)",
                          m.MQTT5_UNSUPPORTED_VERSION_CONNACK if packet.level == m.MQTT5_LEVEL else None)
            return
        if not packet.client_id and not packet.clean_session:  # MQTT-3.1.3-8
            self._connack(m.IDENTIFIER_REJECTED, "a persistent session needs a client id")
            return
        if len(packet.client_id) > 64:
            self._connack(m.IDENTIFIER_REJECTED, "client id over 64 characters")
            return
        if packet.username is None or packet.password is None:
            self._connack(m.BAD_USERNAME_OR_PASSWORD, "no username or password")
            return
        try:
            password = packet.password.decode("utf-8")
        except UnicodeDecodeError:
            self._connack(m.BAD_USERNAME_OR_PASSWORD, "password is not UTF-8")
            return
        # Will messages are accepted and never published (docs/protocol.md, MQTT): a chat message needs a
        # client_msg_id and a conversation, which a will cannot carry meaningfully.
        self._client_id = packet.client_id
        self._persistent = not packet.clean_session
        keep_alive = packet.keep_alive or self._config.max_keep_alive
        self._keep_alive = 1.5 * min(max(keep_alive, self._config.min_keep_alive), self._config.max_keep_alive)
        self.state = State.AUTHENTICATING
        task = asyncio.get_running_loop().create_task(self._login(packet.username, password))
        self.services.track(task)

    async def _login(self, username: str, password: str) -> None:
        accounts = self.services.accounts
        try:
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
            self._connack(_connack_code(exc), exc.message)
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
                conn.close(CloseCode.NORMAL, "client id taken over")

    def _on_publish(self, packet: m.Publish) -> None:
        target = topics.send_target(packet.topic) if len(packet.topic) <= self._config.max_topic_length else None
        if target is None:
            self._refuse("PUBLISH to a topic other than send/u/<id> or send/g/<id>", CloseCode.PROTOCOL_ERROR)
            return
        if packet.qos != 1 or packet.packet_id is None:
            # QoS 0 is refused: a send is acknowledged after its durable commit, and QoS 0 has no acknowledgement.
            # QoS 2's exactly-once is what client_msg_id already gives with QoS 1.
            self._refuse(f"send with QoS {packet.qos} (only QoS 1)", CloseCode.PROTOCOL_ERROR)
            return
        try:
            payload = _decode_send(packet.payload)
        except msgspec.DecodeError as exc:
            self._refuse(f"malformed send payload: {exc}", CloseCode.PROTOCOL_ERROR)
            return
        kind, ident = target
        to, group_id = (ident, None) if kind == "user" else (None, ident)
        chat = self.services.chat
        self._submit(packet.packet_id, lambda reply: chat.submit(
            self.user_id, payload.client_msg_id, payload.body, reply, to=to, group_id=group_id, origin=self))

    def _on_subscribe(self, packet: m.Subscribe) -> None:
        codes = []
        for topic_filter, qos in packet.filters:
            scope = None
            if len(topic_filter.encode()) <= self._config.max_topic_length and (
                    topic_filter in self._subs or len(self._subs) < self._config.max_subscriptions):
                scope = topics.filter_scope(topic_filter, self.user_id)
            if scope is None:
                codes.append(m.SUBACK_FAILURE)
                continue
            granted = min(qos, 1)  # QoS 2 is not spoken; 1 is what a Pica message needs
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
        if self._window is not None and len(self._inflight_out) < self._config.max_inflight_messages:
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
                for record in synced.messages:
                    cursors[record.conversation_id] = max(cursors.get(record.conversation_id, 0), record.seq)
                    await self._send_when_window_open(message_frame(record))
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
        while len(self._inflight_out) >= self._config.max_inflight_messages and not self.closed:
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
        return len(self._inflight_out) >= self._config.max_inflight_messages

    def _hold(self, msg: f.Msg) -> None:
        """Keep a live message until the replay or the window lets it go; past the queue's bound the client is
        cut as a slow consumer (what it missed is in the store, for its persistent session)."""
        if len(self._held) >= self._config.max_queued_messages:
            log.info("cutting slow mqtt subscriber", extra={"user_id": self.user_id, "conn": "mqtt"})
            self.services.metrics.slow_consumers += 1
            self._held.clear()
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
        packet_id = None
        if qos:
            packet_id = self._packet_id()
            self._inflight_out[packet_id] = (msg.conversation_id, msg.seq)
        payload = OutboundFrame(msg).payload(Encoding.JSON)
        self._write(m.Publish(topics.message_topic(msg.conversation_id), payload, qos, packet_id))

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
        self._write_bytes(m.encode(packet))

    def _write_bytes(self, data: bytes) -> None:
        if self.closed:
            return
        if self._outbox is None:
            self._outbox = [data]
            asyncio.get_running_loop().call_soon(self.flush)
        else:
            self._outbox.append(data)

    def send_error(self, error: PicaError, ref: int | None = None) -> None:
        """MQTT 3.1.1 cannot refuse one request: before CONNACK the error is a CONNACK code, after it the
        connection is closed (a refused send, a rate limit, a ban, an ended session), with a log line."""
        self.services.metrics.error(error, self.transport_name)
        if not self._connacked:
            self._connack(_connack_code(error), error.message)
            return
        log.info("closing mqtt connection: %s", error.code,
                 extra={"user_id": self.user_id, "code": error.code, "packet_id": ref})
        self.close(CloseCode.PROTOCOL_ERROR, error.code)

    def _refuse(self, reason: str, code: CloseCode) -> None:
        log.info("closing mqtt connection: %s", reason, extra={"user_id": self.user_id})
        self.close(code, reason[:120])

    def _connack(self, return_code: int, reason: str, raw: bytes | None = None) -> None:
        """A refused CONNECT: CONNACK with the code (or the ``raw`` CONNACK of another protocol version), then close
        (MQTT-3.2.2-5)."""
        if return_code != m.ACCEPTED:
            log.info("mqtt connect refused: %s", reason, extra={"code": return_code})
        self._write_bytes(raw if raw is not None else m.encode(m.ConnAck(return_code)))
        self._connacked = True
        self.close(CloseCode.AUTH_FAILED, reason[:120])

    # ------------------------------------------------------------------------------------------ Connection hooks

    def _transport_bytes(self, frame: OutboundFrame) -> bytes:
        payload = frame.frame
        if isinstance(payload, f.Ready):
            self._connacked = True
            return m.encode(m.ConnAck(m.ACCEPTED, session_present=False))
        if isinstance(payload, f.Sent) and payload.ref is not None:
            return m.encode(m.PubAck(payload.ref))  # after the durable commit: Connection._sent runs then
        return b""

    def _transport_close(self, code: CloseCode, reason: str) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if code is CloseCode.SLOW_CONSUMER:
            reset(transport)  # what it has not read is dropped; it resumes from the store
        else:
            transport.close()  # MQTT has no close notice: the server just closes (after what is queued)
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
