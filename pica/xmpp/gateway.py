"""The XMPP client-to-server transport: a :class:`Connection` whose wire is an XML stream (docs/protocol.md, 31).

As with MQTT, everything the other gateways enforce comes from :class:`Connection` unchanged: the auth deadline
(from the TCP connect to resource binding, so a stream that sends nothing, or trickles its negotiation, is closed),
registering with the hub (cluster delivery, bans, session revocation, the session cap), the in-flight limit, the
per-connection request rate (each stanza is one request), the slow-consumer cut and the send path
(``Connection._submit`` → ``ChatService.submit`` → the ack after the durable commit). This class translates:

- the stream's negotiation: STARTTLS (the TLS listeners' context), SASL PLAIN (a login like ``POST
  /v1/auth/login``, with its rate limits; refused on a stream without TLS unless ``xmpp.plain_without_tls``),
  resource binding (which makes the connection READY);
- stanzas into Pica calls (``<message type="chat">`` into a send, receipts and markers into cursors, chat states
  into typing, corrections and retractions into edit and recall, roster and presence subscriptions into contacts);
- Pica frames into stanzas (:mod:`pica.xmpp.stanzas`), in the order they came: a frame naming a user whose name is
  not known yet waits, with everything behind it, for the one lookup.

XEP-0198 stream management counts a ``<message>`` handled only once its commit answered; stream resumption is not
offered (``resume`` is absent from ``<enabled/>``): a client that lost its stream reconnects and fetches what it
missed through its own means (docs/protocol.md, section 31.9, says what is left out).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import secrets
import socket
from collections import OrderedDict, deque
from collections.abc import Coroutine
from typing import Any, Final

from pica.config import XmppConfig
from pica.core.scram import MECHANISMS, ClientFirst, ScramService, parse_client_first, server_first, verify
from pica.core.sessions import Identity
from pica.core.validation import normalize_username
from pica.core.wire import message_frame
from pica.errors import FrameTooLarge, InvalidFrame, InvalidUsername, PicaError, RateLimited
from pica.gateway.connection import State
from pica.gateway.services import GatewayServices
from pica.gateway.tcp import TcpConnection, reset
from pica.gateway.tls import ServerTls
from pica.protocol import frames as f
from pica.protocol import xmpp as x
from pica.protocol.close_codes import CloseCode
from pica.protocol.ids import direct_conversation_id, direct_peer
from pica.protocol.outbound import OutboundFrame
from pica.protocol.xmpp import Element, el
from pica.store.base import MessageRecord, ScramKeyRecord, UserRecord
from pica.xmpp import stanzas
from pica.xmpp.resumption import Detached, Resumptions

log = logging.getLogger(__name__)

MAX_SASL_FAILURES: Final = 3
"""Failed SASL attempts on one stream before it is closed (the login rate limits apply to each one too)."""

CATCH_UP_SLACK_MS: Final = 2_000
"""A resumed stream catches up on conversations it was sent nothing of from this long before it was bound: a
message committed just before the binding may have reached the hub before the stream registered."""

MAX_NAMES: Final = 4_096
"""User names one connection remembers (user id → name); past it the cache starts again."""

_ERROR_CONDITIONS: Final = {
    "rate_limited": ("wait", "resource-constraint"),
    "not_found": ("cancel", "item-not-found"),
    "forbidden": ("auth", "forbidden"),
    "not_member": ("auth", "forbidden"),
    "blocked": ("cancel", "not-acceptable"),
    "too_large": ("modify", "not-acceptable"),
}


_CURSOR_MARKS: Final = frozenset({(x.NS_RECEIPTS, "received"), (x.NS_MARKERS, "received"),
                                   (x.NS_MARKERS, "displayed"), (x.NS_MARKERS, "acknowledged")})
"""A receipt (XEP-0184) or a marker (XEP-0333): the delivered cursor, or the read one for displayed/acknowledged."""


def _condition(error: PicaError) -> tuple[str, str]:
    return _ERROR_CONDITIONS.get(error.code, ("modify", "bad-request"))


class XmppConnection(TcpConnection):
    transport_name = "xmpp"
    __slots__ = (
        "_ask",
        "_bind_id",
        "_bound_at",
        "_carbons",
        "_catching_up",
        "_clean_end",
        "_config",
        "_delivered",
        "_failures",
        "_handled",
        "_ids",
        "_in",
        "_in_task",
        "_mine",
        "_names",
        "_next_ref",
        "_opened",
        "_out",
        "_out_task",
        "_own_session",
        "_refs",
        "_resource",
        "_resuming",
        "_resumptions",
        "_rooms",
        "_sasl_done",
        "_scram",
        "_scram_state",
        "_sent_count",
        "_sm",
        "_sm_done",
        "_sm_id",
        "_tls",
        "_tls_on",
        "_unacked",
        "_unread",
        "_who",
        "_xml",
    )

    def __init__(self, services: GatewayServices, config: XmppConfig, tls: ServerTls | None,
                 direct_tls: bool = False, resumptions: Resumptions | None = None,
                 scram: ScramService | None = None) -> None:
        super().__init__(services)
        self._scram = scram
        self._scram_state: tuple[str, UserRecord | None, ScramKeyRecord, ClientFirst, str, str] | None = None
        """A SCRAM exchange under way: (mechanism, user, keys, client-first, server-first, nonce)."""
        self._resumptions = resumptions
        self._sm_id = ""
        """This stream's resumption id (XEP-0198), when the client enabled resumption."""
        self._sent_count = 0
        self._unacked: deque[tuple[int, bytes]] = deque()
        """Stanzas sent since stream management was enabled and not acknowledged: (count, bytes)."""
        self._ask = False
        """An ``<r/>`` is due after what is queued."""
        self._delivered: dict[str, int] = {}
        """Conversation id → the highest seq written to this stream: never written twice, and where a resumed
        stream catches up from."""
        self._bound_at = 0
        self._resuming: tuple[str, Detached, int] | None = None
        """(id, state, the client's h) of the resumption under way."""
        self._catching_up = False
        self._clean_end = False
        self._config = config
        self._tls = tls
        self._tls_on = direct_tls
        self._xml = x.StreamReader(config.max_stanza_bytes, config.max_depth)
        self._opened = False
        self._sasl_done = False
        self._failures = 0
        self._who: Identity | None = None
        self._own_session = False
        self._resource = ""
        self._bind_id = ""
        self._names: dict[int, str] = {}
        self._ids: dict[str, int] = {}
        """The reverse of ``_names``."""
        self._in: deque[tuple[Element, int]] = deque()
        """Stanzas waiting, in order, behind one that needs a name looked up."""
        self._in_task: asyncio.Task[None] | None = None
        self._out: deque[f.ServerFrame] = deque()
        self._out_task: asyncio.Task[None] | None = None
        self._next_ref = 0
        self._refs: dict[int, tuple[Element, int]] = {}
        """Sends waiting for their commit: request ref → (the message stanza, its XEP-0198 index)."""
        self._mine: OrderedDict[tuple[str, int], str] = OrderedDict()
        """My messages, by (conversation id, seq) → their stanza id: what a correction or a retraction names."""
        self._unread: OrderedDict[tuple[str, int], str] = OrderedDict()
        """Those of them not yet read: the receipts and markers they may still get."""
        self._carbons = False
        self._rooms: dict[int, str] = {}
        """Joined MUC rooms: group id → the nickname the client asked for (it is shown its username)."""
        self._sm = False
        self._handled = 0
        """XEP-0198's h: stanzas read and handled (a message: committed), counted in order."""
        self._sm_done: deque[bool] = deque()
        """Stanzas read after the first unhandled one, in order: whether each is handled yet."""

    # ------------------------------------------------------------------------------------------ asyncio.Protocol

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            events = self._xml.feed(data)
        except FrameTooLarge as exc:
            self.services.metrics.refused("xmpp.max_stanza_bytes")
            self._stream_error("policy-violation", exc.message)
            return
        except InvalidFrame as exc:
            self._stream_error("not-well-formed" if "well-formed" in exc.message else "policy-violation",
                               exc.message)
            return
        self.last_recv = self.services.clock.monotonic()
        for event in events:
            if self.closed:
                break
            if isinstance(event, x.StreamOpen):
                self._on_open(event.attrs)
            elif isinstance(event, x.Stanza):
                self.services.metrics.frames_in += 1
                self._on_stanza(event.element)
            else:
                self._clean_end = True
                self.close(CloseCode.NORMAL, "stream closed by the client")

    def connection_lost(self, exc: Exception | None) -> None:  # type: ignore[override]
        super().connection_lost(exc)
        for task in (self._in_task, self._out_task):
            if task is not None:
                task.cancel()
        if self._sm_id and self._resumptions is not None:
            if self._clean_end or not self.user_id:
                self._resumptions.forget(self._sm_id)
            else:  # lost: resumable for the window, its login session with it
                self._resumptions.detach(self._sm_id, Detached(
                    self.user_id, self._resource, self._handled, self._sent_count, self._unacked,
                    self._delivered, self._bound_at, dict(self._rooms), self._carbons,
                    self.login_session if self._own_session else ""))
                self._own_session = False
        if self._own_session and self.user_id:
            # The session of a SASL login belongs to this stream alone (nobody holds its tokens).
            self._own_session = False
            self._store_call(self.services.accounts.sessions.end(self.user_id, self.login_session, "xmpp"))

    # ------------------------------------------------------------------------------------------ negotiation

    def _on_open(self, attrs: dict[str, str]) -> None:
        domain = self._config.domain
        self.queue_bytes(x.stream_header(secrets.token_hex(8), domain))
        self._opened = True
        if attrs.get("to", domain).lower() != domain:
            self._stream_error("host-unknown", f"this server serves {domain}")
            return
        features = el("features", x.NS_STREAM)  # its children only are written, under the stream's prefix
        if not self._tls_on and self._tls is not None:
            features.add(el("starttls", x.NS_TLS, "", *([] if self._config.plain_without_tls
                                                        else [el("required", x.NS_TLS)])))
        if not self._sasl_done:
            mechanisms = el("mechanisms", x.NS_SASL)
            if self._scram is not None and (self._tls_on or self._tls is None):
                for name in MECHANISMS:
                    mechanisms.add(el("mechanism", x.NS_SASL, name))
            if self._tls_on or self._config.plain_without_tls:
                mechanisms.add(el("mechanism", x.NS_SASL, "PLAIN"))
            if mechanisms.children:
                features.add(mechanisms)
        else:
            features.add(el("bind", x.NS_BIND))
            features.add(el("session", x.NS_SESSION, "", el("optional", x.NS_SESSION)))
            features.add(el("sm", x.NS_SM))
            features.add(el("c", x.NS_CAPS, "", hash="sha-1", node="https://pica.chat", ver=stanzas.caps_hash()))
        self.queue_bytes(x.stream_element("features", *features.children))

    def _restart(self) -> None:
        """A stream restart (after TLS or SASL): a new reader; the client opens a new stream."""
        self._xml = x.StreamReader(self._config.max_stanza_bytes, self._config.max_depth)

    def _on_stanza(self, stanza: Element) -> None:
        if self.state is not State.READY:
            self._negotiate(stanza)
            return
        if not self.within_rate(None):  # reading pauses for a while (Connection._throttle)
            if stanza.name in ("message", "iq") and stanza.get("type") != "error":
                self._write(x.stanza_error(stanza, "wait", "resource-constraint", "too many requests: slow down"))
            return
        index = self._track_in(stanza)
        if self._in or self._needs_lookup(stanza):
            self._in.append((stanza, index))
            if self._in_task is None:
                self._in_task = asyncio.get_running_loop().create_task(self._drain_in())
                self.services.track(self._in_task)
            return
        self._handle(stanza, index)

    def _negotiate(self, stanza: Element) -> None:
        if stanza.ns == x.NS_TLS and stanza.name == "starttls" and self._tls is not None and not self._tls_on:
            self.queue_bytes(el("proceed", x.NS_TLS).to_bytes())
            self.services.track(asyncio.get_running_loop().create_task(self._start_tls()))
            return
        if stanza.ns == x.NS_SASL and stanza.name == "auth" and not self._sasl_done:
            if self.state is State.AUTHENTICATING:
                self._stream_error("policy-violation", "one authentication at a time")
            elif stanza.get("mechanism") in MECHANISMS and self._scram is not None and (self._tls_on or
                                                                                      self._tls is None):
                self._scram_first(stanza.get("mechanism"), stanza.text)
            elif stanza.get("mechanism") != "PLAIN" or not (self._tls_on or self._config.plain_without_tls):
                self._sasl_failure("invalid-mechanism", "PLAIN only, and only over TLS")
            else:
                credentials = x.sasl_plain(stanza.text)
                if credentials is None:
                    self._sasl_failure("malformed-request", "not a SASL PLAIN message")
                    return
                self.state = State.AUTHENTICATING
                self.services.track(asyncio.get_running_loop().create_task(self._login(*credentials)))
            return
        if stanza.ns == x.NS_SASL and stanza.name == "abort":
            self._scram_state = None
            self.state = State.AWAIT_AUTH
            self._sasl_failure("aborted", "")
            return
        if stanza.ns == x.NS_SASL and stanza.name == "response" and self._scram_state is not None:
            self.services.track(asyncio.get_running_loop().create_task(self._scram_final(stanza.text)))
            return
        if stanza.ns == x.NS_SM and stanza.name == "resume" and self._sasl_done and self._who is not None:
            self._resume(stanza)
            return
        if stanza.ns == x.NS_SM and stanza.name == "enable" and self._sasl_done:
            self.queue_bytes(el("failed", x.NS_SM, "", el("unexpected-request", x.NS_STANZAS)).to_bytes())
            return
        if stanza.name == "iq" and self._sasl_done and self._who is not None:
            bind = stanza.child("bind", x.NS_BIND)
            if bind is not None and stanza.get("type") == "set":
                resource = bind.child("resource", x.NS_BIND)
                self._resource = (resource.text.strip() if resource is not None else "")[:64] or \
                    "pica-" + secrets.token_hex(4)
                self._bind_id = stanza.get("id")
                self._bound_at = self.services.clock.now_ms()
                who, self._who = self._who, None
                self.accept(who, "xmpp-" + self._resource)
                return
        self._stream_error("not-authorized", "authenticate and bind a resource first")

    def _resume(self, stanza: Element) -> None:
        """Take up a lost stream (XEP-0198): its stanzas the client did not acknowledge again, then what the store
        holds that it would have been sent since (held live messages after them)."""
        assert self._who is not None
        h = stanza.get("h")
        state = self._resumptions.take(stanza.get("previd"), self._who.user_id) \
            if self._resumptions is not None and h.isdigit() else None
        if state is None:
            self.queue_bytes(el("failed", x.NS_SM, "", el("item-not-found", x.NS_STANZAS)).to_bytes())
            return
        if state.login_session:  # this stream has a login of its own
            self._store_call(self.services.accounts.sessions.end(state.user_id, state.login_session, "xmpp"))
        assert self._resumptions is not None
        self._sm_id = stanza.get("previd")
        self._resumptions.claim(self._sm_id)  # the id stays this stream's, for its next resumption
        self._sm, self._handled, self._sent_count = True, state.handled, state.sent
        self._unacked = deque(item for item in state.unacked if item[0] > int(h))
        self._delivered, self._rooms, self._carbons = state.delivered, state.rooms, state.carbons
        self._bound_at = state.bound_at_ms
        self._resource = state.resource
        self._resuming = (self._sm_id, state, int(h))
        self._catching_up = True  # from the hub's registration on, live messages wait behind the catch-up
        who, self._who = self._who, None
        self.accept(who, "xmpp-" + self._resource)
        if self.state is not State.READY:
            return
        for _, data in self._unacked:
            self.queue_bytes(data)
        self._ask = bool(self._unacked)
        task = asyncio.get_running_loop().create_task(self._catch_up(state.bound_at_ms - CATCH_UP_SLACK_MS))
        self.services.track(task)

    async def _catch_up(self, since_ms: int) -> None:
        chat = self.services.chat
        missed: list[f.Msg] = []
        try:
            conversations: list[str] = []
            before_ts: int | None = None
            before_id = ""
            while True:
                page = await chat.conversations(self.user_id, before_ts=before_ts, before_id=before_id)
                recent = [c.conversation_id for c in page if c.last_ts >= since_ms]
                conversations += recent
                if len(recent) < len(page) or not page:
                    break
                before_ts, before_id = page[-1].last_ts, page[-1].conversation_id
            for conversation_id in conversations:
                if conversation_id.startswith("d:") or (conversation_id.startswith("g:") and
                                                        int(conversation_id[2:]) in self._rooms):
                    missed += [message_frame(r) for r in await self._missed(conversation_id, since_ms)]
        except PicaError as exc:
            log.warning("xmpp catch-up failed", extra={"user_id": self.user_id, "code": exc.code})
            self.close(CloseCode.INTERNAL_ERROR, "catch-up failed")
            return
        finally:
            self._catching_up = False
        self._out.extendleft(reversed(missed))  # before the live messages held meanwhile (one is never written twice)
        if self._out and self._out_task is None:
            self._out_task = asyncio.get_running_loop().create_task(self._drain_out())
            self.services.track(self._out_task)

    async def _missed(self, conversation_id: str, since_ms: int) -> list[MessageRecord]:
        """The messages of a conversation the lost stream was not sent: after what it was, or, for a conversation
        it was sent nothing of, those stored since it was bound."""
        chat, out = self.services.chat, []
        after = self._delivered.get(conversation_id)
        if after is not None:
            while True:
                page = await chat.history(self.user_id, conversation_id, after=after, before=None, limit=None)
                out += page.messages
                if not page.more or not page.messages:
                    return out
                after = page.messages[-1].seq
        before: int | None = None
        while True:
            page = await chat.history(self.user_id, conversation_id, after=None, before=before, limit=None)
            recent = [r for r in page.messages if r.ts >= since_ms]
            out = recent + out
            if len(recent) < len(page.messages) or not page.more or not page.messages:
                return out
            before = page.messages[0].seq

    def _scram_first(self, mechanism: str, payload: str) -> None:
        try:
            client = parse_client_first(base64.b64decode(payload.strip(), validate=True).decode())
        except (binascii.Error, ValueError, UnicodeDecodeError):
            client = None
        if client is None:
            self._sasl_failure("malformed-request", "not a SCRAM client-first message")
            return
        self.state = State.AUTHENTICATING
        self.services.track(asyncio.get_running_loop().create_task(self._scram_challenge(mechanism, client)))

    async def _scram_challenge(self, mechanism: str, client: ClientFirst) -> None:
        assert self._scram is not None
        try:
            user, key = await self._scram.credentials(client.username, mechanism, self._address or "")
        except RateLimited as exc:
            self.state = State.AWAIT_AUTH
            self._sasl_failure("temporary-auth-failure", exc.message)
            return
        nonce = client.nonce + secrets.token_urlsafe(18)
        first = server_first(nonce, key.salt, key.iterations)
        self._scram_state = (mechanism, user, key, client, first, nonce)
        self.queue_bytes(el("challenge", x.NS_SASL, base64.b64encode(first.encode()).decode()).to_bytes())

    async def _scram_final(self, payload: str) -> None:
        assert self._scram is not None and self._scram_state is not None
        mechanism, user, key, client, first, nonce = self._scram_state
        self._scram_state = None
        try:
            final = base64.b64decode(payload.strip(), validate=True).decode()
        except (binascii.Error, ValueError, UnicodeDecodeError):
            final = ""
        answer = verify(mechanism, key, client, first, nonce, final) if user is not None else None
        if user is None or answer is None:
            await self._scram.failed(client.username, self._address or "")
            self.state = State.AWAIT_AUTH
            self._sasl_failure("not-authorized", "wrong username or password")
            return
        try:
            who, session = await self._scram.login(user, self._address or "", "xmpp")
        except PicaError as exc:
            self.state = State.AWAIT_AUTH
            self._sasl_failure("account-disabled" if exc.code == "banned" else "not-authorized", exc.message)
            return
        self.login_session, self._own_session = session, True
        await self._authenticated(who, user.username, base64.b64encode(answer.encode()).decode())

    async def _start_tls(self) -> None:
        assert self._tls is not None
        transport = self._transport
        if transport is None:
            return
        try:
            new = await asyncio.get_running_loop().start_tls(
                transport, self, self._tls.tcp, server_side=True, ssl_handshake_timeout=self._tls.handshake_timeout)
        except (TimeoutError, OSError, ConnectionError) as exc:
            log.info("xmpp starttls failed: %s", exc)
            transport.abort()
            return
        if new is None or self.closed:
            return
        self._transport = new
        self._tls_on = True
        self._restart()

    async def _login(self, username: str, password: str) -> None:
        accounts = self.services.accounts
        try:
            tokens = await accounts.login(username, password, self._address or "", "xmpp")
            self._own_session = True
            who = await accounts.authenticate(tokens.token)
        except RateLimited as exc:
            self.state = State.AWAIT_AUTH
            self._sasl_failure("temporary-auth-failure", exc.message)
            return
        except PicaError as exc:
            self.state = State.AWAIT_AUTH
            self._sasl_failure("not-authorized", exc.message)
            return
        await self._authenticated(who, normalize_username(username), "")

    async def _authenticated(self, who: Identity, username: str, additional: str) -> None:
        """SASL succeeded (PLAIN or SCRAM, whose server-final message is ``additional``): the stream restarts."""
        if self.closed:
            return
        if self.services.before_ready is not None:
            await self.services.before_ready(who.user_id)
            if self.closed:
                return
        self._who = who
        self._sasl_done = True
        self._remember(who.user_id, username)
        self.queue_bytes(el("success", x.NS_SASL, additional).to_bytes())
        self._restart()

    def _sasl_failure(self, condition: str, text: str) -> None:
        self._failures += 1
        failure = el("failure", x.NS_SASL, "", el(condition, x.NS_SASL))
        if text:
            failure.add(el("text", x.NS_SASL, text[:200]))
        self.queue_bytes(failure.to_bytes())
        if self._failures >= MAX_SASL_FAILURES:
            self._stream_error("policy-violation", "too many failed authentications")

    # ------------------------------------------------------------------------------------------ stanzas

    @property
    def _me(self) -> str:
        return f"{self._names.get(self.user_id, '')}@{self._config.domain}"

    def _peer_name(self, stanza: Element) -> str | None:
        jid = x.parse_jid(stanza.get("to"))
        if jid is None or jid.domain != self._config.domain or not jid.local:
            return None
        try:
            return normalize_username(jid.local)
        except InvalidUsername:
            return None

    def _needs_lookup(self, stanza: Element) -> bool:
        name = self._peer_name(stanza)
        return name is not None and stanza.name in ("message", "presence") and name not in self._ids

    async def _drain_in(self) -> None:
        try:
            while self._in and not self.closed:
                stanza, index = self._in[0]
                name = self._peer_name(stanza)
                if name is not None and name not in self._ids:
                    try:
                        user = await self.services.accounts.look_up(self.user_id, username=name)
                    except PicaError as exc:
                        self._in.popleft()
                        self._reply_error(stanza, exc)
                        self._done_in(index)
                        continue
                    if user is not None and not user.deleted:
                        self._remember(user.user_id, user.username)
                self._in.popleft()
                self._handle(stanza, index)
        finally:
            self._in_task = None

    def _user_id_of(self, name: str | None) -> int | None:
        return None if name is None else self._ids.get(name)

    def _remember(self, user_id: int, name: str) -> None:
        if len(self._names) >= MAX_NAMES:
            me = self._names.get(self.user_id)
            self._names.clear()
            self._ids.clear()
            if me is not None:
                self._names[self.user_id], self._ids[me] = me, self.user_id
        self._names[user_id] = name
        self._ids[name] = user_id

    def _handle(self, stanza: Element, index: int) -> None:
        if stanza.ns == x.NS_SM:
            self._on_sm(stanza)
            return
        if stanza.ns != x.NS_CLIENT:
            self._stream_error("unsupported-stanza-type", f"<{stanza.name}> in {stanza.ns}")
            return
        if stanza.name == "message":
            self._on_message(stanza, index)
        elif stanza.name == "iq":
            self._on_iq(stanza)
            self._done_in(index)
        elif stanza.name == "presence":
            self._on_presence(stanza)
            self._done_in(index)
        else:
            self._stream_error("unsupported-stanza-type", f"<{stanza.name}>")

    def _on_message(self, stanza: Element, index: int) -> None:
        chat = self.services.chat
        if stanza.get("type") == "groupchat":
            self._on_room_message(stanza, index)
            return
        peer = self._user_id_of(self._peer_name(stanza))
        if peer is None:
            self._write(x.stanza_error(stanza, "cancel", "item-not-found", "no such user on this server"))
            self._done_in(index)
            return
        conversation_id = direct_conversation_id(self.user_id, peer)
        kind = stanza.get("type", "normal")
        for child in stanza.children:
            if (child.ns, child.name) in _CURSOR_MARKS:
                place = stanzas.parse_stanza_id(child.get("id"))
                if place is not None and place[0] == conversation_id:
                    if child.name in ("displayed", "acknowledged"):
                        self._spawn(None, chat.mark_read(self.user_id, conversation_id, place[1], origin=self))
                    else:
                        self._spawn(None, chat.mark_received(self.user_id, conversation_id, place[1]))
            elif child.ns == x.NS_CHATSTATES and child.name == "composing" and self._typing_allowed(conversation_id):
                self._spawn(None, chat.typing(self.user_id, conversation_id))
        body = stanza.child("body")
        replace, retract = stanza.child("replace", x.NS_CORRECT), stanza.child("retract", x.NS_RETRACT)
        if kind not in ("chat", "normal") or (body is None and retract is None):
            self._done_in(index)  # a receipt, a marker, a chat state alone: handled above
            return
        client_msg_id = stanzas.client_msg_id(stanza) or "x-" + secrets.token_hex(12)
        ref = self._next_ref = self._next_ref + 1
        self._refs[ref] = (stanza, index)
        target = retract if retract is not None else replace
        if target is not None:
            seq = self._own_message(target.get("id"), conversation_id)
            if seq is None:
                self._refs.pop(ref)
                self._write(x.stanza_error(stanza, "cancel", "item-not-found", "no such message of yours"))
                self._done_in(index)
                return
            event, text = ("recall", "") if retract is not None else ("edit", body.text if body else "")
            self._submit(ref, lambda reply: chat.submit_event(event, self.user_id, conversation_id, seq,
                                                              client_msg_id, reply, text, origin=self))
            return
        assert body is not None
        self._submit(ref, lambda reply: chat.submit(self.user_id, client_msg_id, {"text": body.text}, reply, to=peer,
                                                    origin=self))

    def _on_room_message(self, stanza: Element, index: int) -> None:
        target = x.parse_jid(stanza.get("to"))
        group_id = stanzas.room_of(target, self._config.domain) if target is not None else None
        body = stanza.child("body")
        if group_id is None or group_id not in self._rooms:
            self._write(x.stanza_error(stanza, "cancel", "not-acceptable", "join the room first"))
            self._done_in(index)
            return
        if body is None:  # a chat state or a marker in a room: not carried (section 31.9)
            self._done_in(index)
            return
        client_msg_id = stanzas.client_msg_id(stanza) or "x-" + secrets.token_hex(12)
        ref = self._next_ref = self._next_ref + 1
        self._refs[ref] = (stanza, index)
        chat = self.services.chat
        self._submit(ref, lambda reply: chat.submit(self.user_id, client_msg_id, {"text": body.text}, reply,
                                                    group_id=group_id, origin=self))

    def _own_message(self, stanza_id: str, conversation_id: str) -> int | None:
        """The seq of my message named by ``stanza_id``: an id I sent it with (remembered), or a server id."""
        for (cid, seq), sid in self._mine.items():
            if sid == stanza_id and cid == conversation_id:
                return seq
        place = stanzas.parse_stanza_id(stanza_id)
        return place[1] if place is not None and place[0] == conversation_id else None

    def _on_iq(self, iq: Element) -> None:
        kind = iq.get("type")
        if kind in ("result", "error"):
            return  # the answer to our ping
        if kind not in ("get", "set") or len(iq.children) != 1:
            self._write(x.stanza_error(iq, "modify", "bad-request"))
            return
        query = iq.children[0]
        if query.ns == x.NS_PING or query.ns == x.NS_SESSION:
            self._write(stanzas.iq_result(iq))
        elif query.ns == x.NS_ROSTER and kind == "get":
            self._spawn(None, self._roster(iq))
        elif query.ns == x.NS_ROSTER and kind == "set":
            item = query.child("item", x.NS_ROSTER)
            jid = x.parse_jid(item.get("jid")) if item is not None else None
            if item is None or jid is None or jid.domain != self._config.domain:
                self._write(x.stanza_error(iq, "modify", "bad-request"))
            elif item.get("subscription") == "remove":
                self._spawn(None, self._roster_remove(iq, jid.local))
            else:
                self._write(stanzas.iq_result(iq))  # names and groups are not kept (section 31.9)
        elif query.ns == x.NS_DISCO_INFO and kind == "get":
            self._write(stanzas.iq_result(iq, stanzas.disco_info(self._config.domain)))
        elif query.ns == x.NS_DISCO_ITEMS and kind == "get":
            self._write(stanzas.iq_result(iq, el("query", x.NS_DISCO_ITEMS)))
        elif query.ns == x.NS_MAM and kind == "set" and query.name == "query":
            self._spawn(None, self._mam(iq, query))
        elif query.ns == x.NS_MAM and kind == "get":
            self._write(stanzas.iq_result(iq, el("query", x.NS_MAM, "", el("x", x.NS_DATA, "", el(
                "field", x.NS_DATA, "", el("value", x.NS_DATA, x.NS_MAM), var="FORM_TYPE", type_="hidden"),
                el("field", x.NS_DATA, "", var="with", type_="jid-single"), type_="form"))))
        elif query.ns == x.NS_CARBONS and kind == "set" and query.name in ("enable", "disable"):
            self._carbons = query.name == "enable"
            self._write(stanzas.iq_result(iq))
        else:
            self._write(x.stanza_error(iq, "cancel", "service-unavailable"))

    async def _mam(self, iq: Element, query: Element) -> None:
        """A MAM query (XEP-0313) on one 1:1 conversation's timeline (``with`` names the peer), paged by RSM
        (XEP-0059) with archive ids that are places in the timeline. The archive is the store itself."""
        fields = stanzas.form_fields(query.child("x", x.NS_DATA))
        peer_jid = x.parse_jid(fields.get("with", ""))
        if peer_jid is None or peer_jid.domain != self._config.domain or not peer_jid.local:
            self._write(x.stanza_error(iq, "cancel", "feature-not-implemented",
                                       "a query names one peer (with); the whole archive is read per peer"))
            return
        peer = await self.services.accounts.look_up(self.user_id, username=peer_jid.local)
        if peer is None:
            self._write(x.stanza_error(iq, "cancel", "item-not-found"))
            return
        self._remember(peer.user_id, peer.username)
        conversation_id = direct_conversation_id(self.user_id, peer.user_id)
        rsm = query.child("set", x.NS_RSM)
        # Without <before/> a query reads forwards from the oldest message (after seq 0); an empty <before/> asks
        # for the newest page.
        after: int | None = 0 if rsm is None or rsm.child("before", x.NS_RSM) is None else None
        before: int | None = None
        limit = self.services.limits.history_page_size
        if rsm is not None:
            for name, value in ((c.name, c.text.strip()) for c in rsm.children):
                place = stanzas.parse_stanza_id(value) if value else None
                if name == "max" and value.isdigit():
                    limit = max(1, min(limit, int(value)))
                elif name in ("after", "before") and value and (place is None or place[0] != conversation_id):
                    self._write(x.stanza_error(iq, "cancel", "item-not-found", "no such archive id"))
                    return
                elif name == "after" and place is not None:
                    after = place[1]
                elif name == "before" and place is not None:
                    before = place[1]
        page = await self.services.chat.history(self.user_id, conversation_id, after=after, before=before,
                                                limit=limit)
        full = f"{self._me}/{self._resource}"
        for record in page.messages:
            out = stanzas.archived(message_frame(record), self._names, self._config.domain, full, query.get("queryid"))
            if out is not None:
                self._write(out)
        ids = [stanzas.stanza_id(conversation_id, m.seq) for m in page.messages]
        self._write(stanzas.iq_result(iq, stanzas.mam_fin(ids[0] if ids else None, ids[-1] if ids else None,
                                                          not page.more)))

    async def _roster(self, iq: Element) -> None:
        contacts = await self.services.social.contacts(self.user_id)
        query = el("query", x.NS_ROSTER)
        for contact in contacts:
            self._remember(contact.user_id, contact.username)
            if contact.state in ("accepted", "outgoing"):
                query.add(stanzas.roster_item(contact.username, self._config.domain, contact.state))
        self._write(stanzas.iq_result(iq, query))
        for contact in contacts:
            if contact.state == "incoming":
                p = el("presence", x.NS_CLIENT, "", type_="subscribe")
                p.attrs["from"] = f"{contact.username}@{self._config.domain}"
                self._write(p)

    async def _roster_remove(self, iq: Element, name: str) -> None:
        user = await self.services.accounts.look_up(self.user_id, username=name)
        if user is not None:
            await self.services.social.remove(self.user_id, user.user_id)
        self._write(stanzas.iq_result(iq))

    def _on_presence(self, presence: Element) -> None:
        kind = presence.get("type")
        social = self.services.social
        if kind in ("", "unavailable", "probe") and not presence.get("to"):
            if kind == "":
                full = f"{self._me}/{self._resource}"
                echo = el("presence", x.NS_CLIENT, "", to=full)
                echo.attrs["from"] = full
                self._write(echo)  # RFC 6121 4.2.2: the user's own resource is sent its available presence
                self._spawn(None, self._initial_presence())
            return
        target = x.parse_jid(presence.get("to"))
        group_id = stanzas.room_of(target, self._config.domain) if target is not None else None
        if group_id is not None:
            if kind == "unavailable":
                self._leave(group_id)
            elif kind == "":
                self._spawn(None, self._join(presence, group_id))
            return
        peer = self._user_id_of(self._peer_name(presence))
        if peer is None:
            return  # presence to nobody we know: dropped, as RFC 6121 allows
        if kind == "subscribe":
            self._spawn(None, self._ignore(social.request(self.user_id, peer)))
        elif kind == "subscribed":
            self._spawn(None, self._ignore(social.respond(self.user_id, peer, True)))
        elif kind == "unsubscribed":
            self._spawn(None, self._ignore(social.respond(self.user_id, peer, False)))
        elif kind == "unsubscribe":
            self._spawn(None, social.remove(self.user_id, peer))

    async def _join(self, presence: Element, group_id: int) -> None:
        """Enter a group's room: members only (anyone else is told ``registration-required``); the occupants are
        the group's members; the history is the group's timeline."""
        services, domain, me = self.services, self._config.domain, f"{self._me}/{self._resource}"
        try:
            group = await services.groups.get(self.user_id, group_id)
            members = await services.groups.members(self.user_id, group_id)
        except PicaError:
            refusal = x.stanza_error(presence, "auth", "registration-required", "members only")
            refusal.children.insert(0, el("x", x.NS_MUC))  # the join's element echoed, as XEP-0045 shows
            self._write(refusal)
            return
        my_name = self._names.get(self.user_id, "")
        for member in members:
            if member.username:
                self._remember(member.user_id, member.username)
            if member.user_id != self.user_id and member.username:
                self._write(stanzas.occupant(group_id, domain, member.username, member.role, me))
        my_role = next((m.role for m in members if m.user_id == self.user_id), "member")
        target = x.parse_jid(presence.get("to"))
        codes = ("110",) if target is None or target.resource == my_name else ("110", "210")
        self._write(stanzas.occupant(group_id, domain, my_name, my_role, me, codes))
        self._rooms[group_id] = my_name
        muc = presence.child("x", x.NS_MUC)
        history = muc.child("history", x.NS_MUC) if muc is not None else None
        wanted = history.get("maxstanzas") if history is not None else ""
        limit = int(wanted) if wanted.isdigit() else services.limits.history_page_size
        if limit:
            page = await services.chat.history(self.user_id, group.conversation_id, after=None, before=None,
                                               limit=limit)
            for record in page.messages:
                sender = self._names.get(record.sender)
                old = stanzas.room_message(message_frame(record), group_id, sender, domain, me) if sender else None
                if old is not None:
                    old.add(el("delay", x.NS_DELAY, "", stamp=stanzas.stamp(record.ts),
                               from_=stanzas.room_jid(group_id, domain)))
                    self._write(old)
        subject = el("message", x.NS_CLIENT, "", el("subject", x.NS_CLIENT, group.name), type_="groupchat", to=me)
        subject.attrs["from"] = stanzas.room_jid(group_id, self._config.domain)
        self._write(subject)

    def _leave(self, group_id: int) -> None:
        nick = self._rooms.pop(group_id, None)
        if nick is not None:
            self._write(stanzas.occupant(group_id, self._config.domain, self._names.get(self.user_id, nick), "member",
                                         f"{self._me}/{self._resource}", ("110",), gone=True))

    async def _ignore(self, work: Coroutine[Any, Any, object]) -> None:
        await work

    async def _initial_presence(self) -> None:
        """The first available presence: who of my contacts is online (my own goes out through the hub)."""
        contacts = await self.services.social.contacts(self.user_id)
        ids = [c.user_id for c in contacts if c.state == "accepted"]
        for c in contacts:
            self._remember(c.user_id, c.username)
        if ids:
            for info in await self.services.social.presence(self.user_id, ids):
                name = self._names.get(info.user_id)
                if name is not None and info.online:
                    self._write(stanzas.presence_out(name, self._config.domain, True))

    # ------------------------------------------------------------------------------------------ XEP-0198

    def _on_sm(self, stanza: Element) -> None:
        if stanza.name == "enable" and not self._sm:
            self._sm = True
            enabled = el("enabled", x.NS_SM)
            if stanza.get("resume") in ("true", "1") and self._resumptions is not None and self._config.resume_window:
                self._sm_id = self._resumptions.new_id()
                enabled.attrs.update(id=self._sm_id, resume="true", max=str(int(self._config.resume_window)))
            self.queue_bytes(enabled.to_bytes())
        elif stanza.name == "r":
            self.queue_bytes(el("a", x.NS_SM, "", h=str(self._handled % 2**32)).to_bytes())
        elif stanza.name == "a":
            h = stanza.get("h")
            if not h.isdigit() or int(h) > self._sent_count:
                self._stream_error("undefined-condition", "h is more than the server sent")  # handled-count-too-high
                return
            while self._unacked and self._unacked[0][0] <= int(h):
                self._unacked.popleft()
        else:
            self._stream_error("unsupported-stanza-type", f"<{stanza.name}> of stream management")

    def _track_in(self, stanza: Element) -> int:
        """The stanza's place in XEP-0198's count (-1 when stream management is off or for its own elements)."""
        if not self._sm or stanza.ns == x.NS_SM:
            return -1
        self._sm_done.append(False)
        return self._handled + len(self._sm_done) - 1

    def _done_in(self, index: int) -> None:
        """Stanza ``index`` is handled (a message: committed); h moves over the handled prefix, so that a client
        told h never has to send again a message that was not stored."""
        if index < self._handled:
            return
        self._sm_done[index - self._handled] = True
        while self._sm_done and self._sm_done[0]:
            self._sm_done.popleft()
            self._handled += 1

    # ------------------------------------------------------------------------------------------ outbound

    def push(self, frame: OutboundFrame) -> None:
        payload = frame.frame
        if self.closed:
            return
        if isinstance(payload, f.Ready | f.Sent | f.Ping):
            super().push(frame)
            return
        if not isinstance(payload, f.Msg | f.Receipt | f.Typing | f.Presence | f.Contact):
            return
        if frame.committed_at:
            self._time(self.services.metrics.delivery, frame.committed_at)
        if self._out or self._catching_up or self._unknown_name(payload) is not None:
            self._out.append(payload)
            if self._out_task is None and not self._catching_up:
                self._out_task = asyncio.get_running_loop().create_task(self._drain_out())
                self.services.track(self._out_task)
        else:
            self._deliver(payload)

    def _unknown_name(self, frame: f.ServerFrame) -> int | None:
        who: int | None = None
        if isinstance(frame, f.Msg):
            who = frame.sender
        elif isinstance(frame, f.Receipt | f.Presence | f.Contact | f.Typing):
            who = frame.user_id
        return who if who is not None and who not in self._names else None

    async def _drain_out(self) -> None:
        try:
            while self._out and not self.closed:
                frame = self._out[0]
                who = self._unknown_name(frame)
                if who is not None:
                    try:
                        user = await self.services.accounts.get(who)
                    except PicaError:
                        user = None
                    if user is not None and user.username:
                        self._remember(user.user_id, user.username)
                self._out.popleft()
                self._deliver(frame)
        finally:
            self._out_task = None

    def _deliver(self, frame: f.ServerFrame) -> None:
        domain = self._config.domain
        if isinstance(frame, f.Msg):
            if frame.seq <= self._delivered.get(frame.conversation_id, 0):
                return  # written already (a live message the catch-up of a resumed stream also found)
            self._delivered[frame.conversation_id] = frame.seq
        if isinstance(frame, f.Msg) and frame.conversation_id.startswith("g:"):
            group_id = int(frame.conversation_id[2:])
            sender = self._names.get(frame.sender)
            out = stanzas.room_message(frame, group_id, sender, domain, f"{self._me}/{self._resource}") \
                if group_id in self._rooms and sender is not None else None
            if out is not None:
                self._write(out)
            return
        if isinstance(frame, f.Msg):
            out = stanzas.message_out(frame, self.user_id, self._names, domain)
            if out is None:
                return
            if frame.sender == self.user_id:
                if not self._carbons:
                    return
                peer = direct_peer(frame.conversation_id, self.user_id)
                name = self._names.get(peer or 0)
                out.attrs["from"], out.attrs["to"] = f"{self._me}/pica", f"{name}@{domain}"
                out = stanzas.carbon(out, self._me)
            else:
                out.attrs["to"] = f"{self._me}/{self._resource}"
            self._write(out)
            return
        user_id = getattr(frame, "user_id", 0) or 0
        name = self._names.get(user_id)
        if name is None or user_id == self.user_id:
            return  # my own receipts, typing or presence from my other devices: nothing to tell this one
        if isinstance(frame, f.Receipt):
            waiting = [(seq, sid) for (cid, seq), sid in self._unread.items() if cid == frame.conversation_id]
            for out in stanzas.receipts_out(frame, name, domain, waiting):
                self._write(out)
            for seq, _ in waiting:  # told once: a read is the last thing a message of mine can be told of
                if frame.read is not None and seq <= frame.read:
                    del self._unread[(frame.conversation_id, seq)]
        elif isinstance(frame, f.Typing):
            if frame.conversation_id.startswith("d:"):
                self._write(stanzas.typing_out(name, domain))
        elif isinstance(frame, f.Presence):
            self._write(stanzas.presence_out(name, domain, frame.online))
        elif isinstance(frame, f.Contact):
            for out in stanzas.contact_out(name, domain, frame.state, f"{self._me}/{self._resource}"):
                self._write(out)

    def _write(self, stanza: Element) -> None:
        self.queue_bytes(self._counted(stanza.to_bytes()))

    def _counted(self, data: bytes) -> bytes:
        """A stanza sent: counted, and kept until acknowledged, once stream management is on."""
        if self._sm and data:
            self._sent_count += 1
            self._unacked.append((self._sent_count, data))
            self._ask = True
            if len(self._unacked) > self._config.max_unacked:
                log.info("cutting xmpp client: too many unacknowledged stanzas", extra={"user_id": self.user_id})
                self.services.metrics.slow_consumers += 1
                asyncio.get_running_loop().call_soon(self.close, CloseCode.SLOW_CONSUMER, "too many unacknowledged")
        return data

    def flush(self) -> None:
        if self._ask and self._outbox is not None and not self.closed:
            self._ask = False
            self._outbox.append(b"<r xmlns='urn:xmpp:sm:3'/>")
        super().flush()

    def _transport_bytes(self, frame: OutboundFrame) -> bytes:
        payload = frame.frame
        if isinstance(payload, f.Ready) and self._resuming is not None:
            sm_id, _, _ = self._resuming
            self._resuming = None
            return el("resumed", x.NS_SM, "", previd=sm_id, h=str(self._handled % 2**32)).to_bytes()
        if isinstance(payload, f.Ready):
            bind = el("bind", x.NS_BIND, "", el("jid", x.NS_BIND, f"{self._me}/{self._resource}"))
            return el("iq", x.NS_CLIENT, "", bind, type_="result", id=self._bind_id).to_bytes()
        if isinstance(payload, f.Sent) and payload.ref is not None:
            sent = self._refs.pop(payload.ref, None)
            if sent is not None and payload.conversation_id.startswith("g:"):
                stanza, index = sent
                self._done_in(index)
                return self._counted(self._reflection(stanza, payload))
            if sent is not None:
                stanza, index = sent
                key = (payload.conversation_id, payload.seq)
                self._mine[key] = self._unread[key] = stanza.get("id") or payload.client_msg_id
                for tracked in (self._mine, self._unread):
                    while len(tracked) > self._config.max_sent_tracked:
                        tracked.popitem(last=False)
                self._done_in(index)
            return b""
        if isinstance(payload, f.Ping):
            ping = el("iq", x.NS_CLIENT, "", el("ping", x.NS_PING), type_="get", id="ping-" + secrets.token_hex(4),
                      to=self._config.domain)
            return self._counted(ping.to_bytes())
        return b""

    def _reflection(self, stanza: Element, sent: f.Sent) -> bytes:
        """A room message is sent back to its sender once stored (XEP-0045 reflection), with the sender's id: the
        client's confirmation that the room has it."""
        body = stanza.child("body")
        msg = f.Msg(conversation_id=sent.conversation_id, seq=sent.seq, sender=self.user_id,
                    client_msg_id=sent.client_msg_id, ts=sent.ts, body={"text": body.text if body else ""})
        group_id = int(sent.conversation_id[2:])
        out = stanzas.room_message(msg, group_id, self._names.get(self.user_id, ""), self._config.domain,
                                   f"{self._me}/{self._resource}", stanza.get("id") or None)
        return out.to_bytes() if out is not None else b""

    def send_error(self, error: PicaError, ref: int | None = None) -> None:
        self.services.metrics.error(error, self.transport_name)
        sent = self._refs.pop(ref, None) if ref is not None else None
        if sent is not None:
            self._reply_error(sent[0], error)
            self._done_in(sent[1])
            return
        if self.state is not State.READY:
            self._stream_error("not-authorized" if error.code in ("auth_failed", "unauthenticated") else
                               "policy-violation", error.message)
        elif error.code == "rate_limited":
            return  # reading pauses (Connection._throttle): the client slows down
        else:
            log.info("xmpp request failed: %s", error.message, extra={"user_id": self.user_id, "code": error.code})

    def _reply_error(self, stanza: Element, error: PicaError) -> None:
        kind, condition = _condition(error)
        self._write(x.stanza_error(stanza, kind, condition, error.message[:200]))

    def _stream_error(self, condition: str, text: str) -> None:
        if self.closed:
            return
        log.info("closing xmpp stream: %s", text, extra={"user_id": self.user_id, "code": condition})
        if not self._opened:
            self.queue_bytes(x.stream_header(secrets.token_hex(8), self._config.domain))
            self._opened = True
        self.queue_bytes(x.stream_error(condition, text[:200]))
        self.close(CloseCode.PROTOCOL_ERROR, text[:120])

    def _transport_close(self, code: CloseCode, reason: str) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if code is CloseCode.SLOW_CONSUMER:
            reset(transport)  # what it has not read is dropped
            return
        if self._opened:
            transport.write(x.STREAM_END)
        transport.close()

    def check_timers(self, now: float, now_s: float) -> None:
        if self.state in (State.AWAIT_AUTH, State.AUTHENTICATING) and \
                now - self.opened_at > self.services.limits.auth_timeout:
            self._stream_error("connection-timeout", "authentication and binding timed out")
            return
        super().check_timers(now, now_s)

    def _store_call(self, work: Coroutine[Any, Any, None]) -> None:
        async def guarded() -> None:
            try:
                await work
            except PicaError as exc:
                log.warning("xmpp store call failed", extra={"user_id": self.user_id, "code": exc.code})

        self.services.track(asyncio.get_running_loop().create_task(guarded()))


def resumptions(services: GatewayServices, config: XmppConfig) -> Resumptions:
    """The node's registry of lost streams, shared by its XMPP listeners; a state that expires ends its login."""
    def expired(state: Detached) -> None:
        if state.login_session:
            task = asyncio.get_running_loop().create_task(
                services.accounts.sessions.end(state.user_id, state.login_session, "xmpp"))
            services.track(task)

    return Resumptions(config.resume_window, expired)


async def start_xmpp_server(services: GatewayServices, config: XmppConfig, sock: socket.socket,
                            tls: ServerTls | None = None, direct_tls: bool = False,
                            registry: Resumptions | None = None, scram: ScramService | None = None
                            ) -> asyncio.Server:
    """Listen on an already bound socket: STARTTLS offered when ``tls`` is set; ``direct_tls``: TLS from the first
    byte (XEP-0368). ``registry``: lost streams, shared with the node's other XMPP listener."""
    shared = registry if registry is not None else resumptions(services, config)
    return await asyncio.get_running_loop().create_server(
        lambda: XmppConnection(services, config, tls, direct_tls, shared, scram), sock=sock, backlog=4096,
        ssl=tls.tcp if tls is not None and direct_tls else None,
        ssl_handshake_timeout=tls.handshake_timeout if tls is not None and direct_tls else None,
    )
