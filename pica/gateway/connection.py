"""A client connection, independent of its transport.

Transports (TCP in :mod:`pica.gateway.tcp`, WebSocket in :mod:`pica.gateway.ws`) feed it whole frame payloads and
implement four small hooks: write bytes, close, pause and resume reading. Everything else, the connection state
machine (awaiting auth → ready → closed), request dispatch, in-flight limits, heartbeat bookkeeping and error
mapping, lives here once for both transports.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
from collections.abc import Callable, Coroutine
from functools import partial
from typing import TYPE_CHECKING, Any

from pica.core.chat import Reply, SendAck
from pica.core.ratelimit import Bucket, refused
from pica.core.sessions import Identity
from pica.core.wire import message_frame
from pica.errors import (
    BadRequest,
    FrameTooLarge,
    InternalError,
    InvalidFrame,
    NotConfigured,
    PicaError,
    RateLimited,
    SessionEnded,
    TokenExpired,
    TooManySessions,
    Unauthenticated,
    UnknownFrame,
    UnsupportedVersion,
)
from pica.metrics import Histogram
from pica.protocol import frames as f
from pica.protocol.close_codes import CloseCode
from pica.protocol.codec import Encoding, decode_client_frame, encode
from pica.protocol.outbound import OutboundFrame

if TYPE_CHECKING:
    from pica.gateway.services import GatewayServices

log = logging.getLogger(__name__)

_PING = OutboundFrame(f.Ping())
"""The heartbeat, encoded once per wire form for every connection of the process (not once per ping)."""
_PONGS = frozenset({encode(f.Pong(), Encoding.JSON), encode(f.Pong(), Encoding.MSGPACK)})
"""A heartbeat's answer as clients send it (``{"t":"pong"}``, the SDK's and the web page's): known by its bytes."""
_PONG_MAX = max(len(pong) for pong in _PONGS)


def error_frame(error: PicaError, ref: int | None = None) -> f.Error:
    """The ``error`` frame telling a client of ``error`` (with ``retry_after`` for ``rate_limited``)."""
    retry_after = error.retry_after if isinstance(error, RateLimited) else None
    return f.Error(code=error.code, message=error.message, ref=ref, retryable=error.retryable, retry_after=retry_after)

class State(enum.Enum):
    AWAIT_AUTH = "await_auth"
    AUTHENTICATING = "authenticating"
    READY = "ready"
    CLOSED = "closed"


class Connection:
    """Base class; a transport subclass implements the ``_transport_*`` hooks."""

    transport_name = "?"

    # Slots: tens of thousands of these live per process; an instance dict would cost about 1 KiB each.
    __slots__ = (
        "__weakref__",
        "_outbox",
        "_paused",
        "_rate",
        "_throttled",
        "_timed",
        "_typing",
        "device",
        "encoding",
        "inflight",
        "last_recv",
        "last_send",
        "login_session",
        "opened_at",
        "services",
        "session_expires_at",
        "session_id",
        "state",
        "timers_due",
        "user_id",
    )

    def __init__(self, services: GatewayServices, encoding: Encoding) -> None:
        self.services = services
        self.encoding = encoding
        self.state = State.AWAIT_AUTH
        self.user_id = 0
        self.device = ""
        self.session_id = ""
        now = services.clock.monotonic()
        self.opened_at = now
        self.last_recv = now
        self.last_send = now
        self.login_session = ""
        """The session (a login) whose token authenticated this connection: revoking it closes the connection."""
        self.timers_due = 0.0
        """When the sweeper next has to look at this connection's timers (monotonic seconds; see check_timers)."""
        self.session_expires_at = 0
        self.inflight = 0
        self._paused = False
        self._outbox: list[bytes] | None = None
        self._timed: list[tuple[Histogram, float]] | None = None
        """Frames in ``_outbox`` whose latency is measured up to their write: the histogram and the start (a
        message's commit, a send's arrival), in monotonic seconds."""
        self._typing: dict[str, float] | None = None
        self._rate: Bucket | None = None
        """This socket's requests (``rates.requests_per_connection``), from its authentication on."""
        self._throttled = False
        """Not read until the debt of its refused requests is repaid (see ``_throttle``)."""

    # ------------------------------------------------------------------------------------------ transport hooks

    def _transport_bytes(self, frame: OutboundFrame) -> bytes:
        """The frame as this transport puts it on the wire."""
        raise NotImplementedError

    def _transport_writelines(self, chunks: list[bytes]) -> None:
        raise NotImplementedError

    def _transport_buffered(self) -> int:
        raise NotImplementedError

    def _transport_close(self, code: CloseCode, reason: str) -> None:
        """Send the close notice the transport uses, then close. Must be safe to call more than once."""
        raise NotImplementedError

    def _transport_pause(self) -> None:
        raise NotImplementedError

    def _transport_resume(self) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------------------------------ outbound

    @property
    def ready(self) -> bool:
        return self.state is State.READY

    def buffered(self) -> int:
        return 0 if self.state is State.CLOSED else self._transport_buffered()

    def push(self, frame: OutboundFrame) -> None:
        """Queue a frame without waiting. Frames queued in one turn of the event loop leave in one write (one
        system call for a whole group commit's worth of acks and messages)."""
        if self.state is State.CLOSED:
            return
        if frame.committed_at:
            self._time(self.services.metrics.delivery, frame.committed_at)
        self.queue_bytes(self._transport_bytes(frame))

    def queue_bytes(self, data: bytes) -> None:
        """Queue bytes already in the transport's wire form (what ``push`` does after encoding a frame; gateways
        whose protocol has writes of its own, MQTT and XMPP, call it directly)."""
        if self.state is State.CLOSED:
            return
        outbox = self._outbox
        if outbox is None:
            self._outbox = [data]
            self.services.loop().call_soon(self.flush)
        else:
            outbox.append(data)

    def _time(self, histogram: Histogram, start: float) -> None:
        """Observe, when the frame queued next is written, the seconds since ``start``."""
        if self._timed is None:
            self._timed = [(histogram, start)]
        else:
            self._timed.append((histogram, start))

    def flush(self) -> None:
        """Write what is queued. A connection whose unsent bytes pass the limit is cut (4002): it will reconnect
        and sync, rather than make the server buffer without bound."""
        outbox = self._outbox
        if outbox is None:
            return
        self._outbox = None
        timed, self._timed = self._timed, None
        if self.state is State.CLOSED:
            return
        # Judged before writing, so that one large reply (a full sync page) does not cut a healthy reader: a
        # client is slow when what it has not read yet is already over the limit and more is coming.
        if self._transport_buffered() > self.services.limits.max_outbound_bytes:
            log.info("cutting slow consumer", extra={"user_id": self.user_id, "conn": self.transport_name})
            self.services.metrics.slow_consumers += 1
            self.close(CloseCode.SLOW_CONSUMER, "slow consumer")
            return
        self._transport_writelines(outbox)
        self.last_send = now = self.services.clock.monotonic()
        if timed is not None:
            for histogram, start in timed:
                histogram.observe(now - start)

    def send(self, frame: Any) -> None:
        self.push(OutboundFrame(frame))

    def send_error(self, error: PicaError, ref: int | None = None) -> None:
        self.services.metrics.error(error, self.transport_name)
        self.send(error_frame(error, ref))

    def close(self, code: CloseCode, reason: str) -> None:
        if self.state is State.CLOSED:
            return
        if code is not CloseCode.SLOW_CONSUMER:
            self.flush()  # an error frame queued just before must leave before the close notice
        else:
            self._outbox = self._timed = None
        self.state = State.CLOSED
        self.services.hub.unregister(self)
        self._left_calls()
        self._transport_close(code, reason)

    def fail(self, error: PicaError, code: CloseCode) -> None:
        """Tell the client what went wrong, then close."""
        if self.state is State.CLOSED:
            return
        self.send_error(error)
        self.close(code, error.message[:120])

    def connection_lost(self) -> None:
        """The transport is gone (peer closed, reset, or our own close completed)."""
        if self.state is not State.CLOSED:
            self.state = State.CLOSED
            self.services.hub.unregister(self)
            self._left_calls()

    def _left_calls(self) -> None:
        if self.user_id and self.services.calls is not None:
            self.services.calls.disconnected(self.user_id, self)

    # ------------------------------------------------------------------------------------------ inbound

    def on_payload(self, payload: bytes | str, encoding: Encoding) -> None:
        """One complete frame payload arrived."""
        if self.state is State.CLOSED:
            return
        self.last_recv = self.services.clock.monotonic()
        self.services.metrics.frames_in += 1
        if len(payload) <= _PONG_MAX and payload in _PONGS and self.state is State.READY:
            # A heartbeat's answer, a third of a node's frames when it holds idle connections: its arrival (above)
            # is all it means, so it is neither decoded nor dispatched. It still counts against the rate.
            self.within_rate(None)
            return
        try:
            frame = decode_client_frame(payload, encoding)
        except (InvalidFrame, UnknownFrame) as exc:
            # The stream itself is intact: report and go on, so that a newer client's frame does not kill it.
            self.send_error(exc)
            return
        if self.state is State.READY:
            if self.within_rate(getattr(frame, "id", None)):
                self._dispatch(frame)
        elif self.state is State.AWAIT_AUTH:
            if isinstance(frame, f.Auth):
                self.encoding = encoding
                self._authenticate(frame)
            else:
                self.fail(Unauthenticated("the first frame must be 'auth'"), CloseCode.PROTOCOL_ERROR)
        else:  # AUTHENTICATING: the client must wait for 'ready'
            self.fail(Unauthenticated("wait for 'ready' before sending"), CloseCode.PROTOCOL_ERROR)

    def within_rate(self, ref: int | None) -> bool:
        """Spend one request of ``rates.requests_per_connection``; past it, refuse (``rate_limited``, with ``ref``)
        and stop reading for a while. Called for every request a READY connection reads, whatever its protocol."""
        rates = self.services.rates
        if self._rate is not None and rates is not None:
            wait = self._rate.spend(rates.connection_rate, self.last_recv, rates.cost_of(self.user_id))
            if wait > 0:  # refused, and the stream goes on once the client has slowed down
                self.send_error(refused(wait, "requests on this connection", "rates.requests_per_connection"), ref)
                self._throttle(wait)
                return False
        return True

    def on_oversized(self, error: FrameTooLarge) -> None:
        self.fail(error, CloseCode.FRAME_TOO_LARGE)

    def _dispatch(self, frame: f.ClientFrame) -> None:
        chat = self.services.chat
        if isinstance(frame, f.Send):
            self._submit(frame.id, lambda reply: chat.submit(
                self.user_id, frame.client_msg_id, frame.body, reply, to=frame.to, group_id=frame.group_id,
                origin=self))
        elif isinstance(frame, f.Recv):
            self._spawn(None, chat.mark_received(self.user_id, frame.conversation_id, frame.seq))
        elif isinstance(frame, f.Read):
            self._spawn(frame.id, self._done(frame.id, chat.mark_read(self.user_id, frame.conversation_id,
                                                                      frame.seq, origin=self)))
        elif isinstance(frame, f.Typing):
            if self._typing_allowed(frame.conversation_id):
                self._spawn(None, chat.typing(self.user_id, frame.conversation_id))
        elif isinstance(frame, f.Recall | f.Edit | f.Unpreview):
            kind, text = (("edit", frame.text) if isinstance(frame, f.Edit)
                          else ("recall" if isinstance(frame, f.Recall) else "unpreview", ""))
            self._submit(frame.id, lambda reply: chat.submit_event(
                kind, self.user_id, frame.conversation_id, frame.seq, frame.client_msg_id, reply, text,
                origin=self))
        elif isinstance(frame, f.Delete):
            self._spawn(frame.id, self._done(frame.id, chat.delete_for_me(self.user_id, frame.conversation_id,
                                                                          frame.seq, origin=self)))
        elif isinstance(frame, f.Sync):
            self._spawn(frame.id, self._do_sync(frame))
        elif isinstance(frame, f.History):
            self._spawn(frame.id, self._do_history(frame))
        elif isinstance(frame, f.Answer):
            self._spawn(frame.id, self._done(frame.id, self._answer(frame)))
        elif isinstance(frame, f.CallInvite | f.CallAccept | f.CallDecline | f.CallCancel | f.CallHangup
                        | f.CallRinging | f.CallCandidate):
            self._call(frame)  # calls (protocol "Calls"): pica/core/calls.py
        elif isinstance(frame, f.React):
            self._submit(frame.id, lambda reply: chat.submit_reaction(
                self.user_id, frame.conversation_id, frame.seq, frame.emoji, frame.client_msg_id, reply,
                remove=frame.remove, origin=self))
        elif isinstance(frame, f.Thread):
            self._spawn(frame.id, self._do_thread(frame))
        elif isinstance(frame, f.Ping):
            self.send(f.Pong(ref=frame.id))
        elif isinstance(frame, f.Pong):
            pass
        elif isinstance(frame, f.Auth):
            self.send_error(BadRequest("already authenticated"))

    def _call(self, frame: f.CallClientFrame) -> None:
        calls = self.services.calls
        if calls is None:
            self.send_error(NotConfigured("calls are not available on this server"), frame.id)
        elif isinstance(frame, f.CallInvite):
            self._spawn(frame.id, self._invite(frame))
        else:
            try:
                calls.handle(self.user_id, self, frame)
            except PicaError as exc:
                self.send_error(exc, frame.id)
                return
            if frame.id is not None:
                self.send(f.Done(ref=frame.id))

    async def _invite(self, frame: f.CallInvite) -> None:
        assert self.services.calls is not None
        self.send(await self.services.calls.invite(self.user_id, self, frame))

    def _typing_allowed(self, conversation_id: str) -> bool:
        """At most one typing notice per conversation per ``typing_interval``; the rest are dropped silently."""
        now = self.services.clock.monotonic()
        if self._typing is None:
            self._typing = {}
        last = self._typing.get(conversation_id)
        if last is not None and now - last < self.services.limits.typing_interval:
            return False
        if len(self._typing) > 64:
            self._typing.clear()
        self._typing[conversation_id] = now
        return True

    async def _done(self, ref: int | None, work: Coroutine[Any, Any, None]) -> None:
        await work
        if ref is not None:
            self.send(f.Done(ref=ref))

    def _begin_request(self) -> None:
        self.inflight += 1
        if self.inflight >= self.services.limits.max_inflight_requests and not self._paused:
            self._paused = True
            self._transport_pause()

    def _end_request(self) -> None:
        self.inflight -= 1
        if self._paused and self.inflight < self.services.limits.max_inflight_requests // 2 + 1:
            self._paused = False
            if self.state is not State.CLOSED and not self._throttled:
                self._transport_resume()

    def _throttle(self, wait: float) -> None:
        """Stop reading a socket that sends past its rate for ``wait`` seconds: answering each refused frame of a
        flood would cost as much as serving it, and every other client would wait for that work. Frames already
        read are still answered (with ``rate_limited``, deepening the debt, which is capped at one full bucket)."""
        if self._throttled or self.state is State.CLOSED:
            return
        self._throttled = True
        if not self._paused:
            self._transport_pause()
        asyncio.get_running_loop().call_later(wait, self._unthrottle)

    def _unthrottle(self) -> None:
        self._throttled = False
        if not self._paused and self.state is not State.CLOSED:
            self._transport_resume()

    def _spawn(self, ref: int | None, work: Coroutine[Any, Any, None]) -> None:
        self._begin_request()
        task = self.services.loop().create_task(self._guard(ref, work))
        self.services.track(task)

    async def _guard(self, ref: int | None, work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
        except PicaError as exc:
            self.send_error(exc, ref)
        except Exception:
            log.exception("request failed", extra={"user_id": self.user_id})
            self.send_error(InternalError("internal error"), ref)
        finally:
            self._end_request()

    # ------------------------------------------------------------------------------------------ requests

    def _authenticate(self, frame: f.Auth) -> None:
        if frame.v != f.PROTOCOL_VERSION:
            self.fail(
                UnsupportedVersion(f"protocol version {frame.v} is not supported; use {f.PROTOCOL_VERSION}"),
                CloseCode.UNSUPPORTED_VERSION,
            )
            return
        self.state = State.AUTHENTICATING
        task = self.services.loop().create_task(self._do_auth(frame.token, frame.device))
        self.services.track(task)

    async def _do_auth(self, token: str, device: str | None) -> None:
        try:
            await self.services.connect_turn()
            if self.closed:  # the client left while waiting for its turn
                return
            who = await self.services.accounts.authenticate(token)
        except TokenExpired as exc:
            self.fail(exc, CloseCode.TOKEN_EXPIRED)
            return
        except SessionEnded as exc:
            self.fail(exc, CloseCode.SESSION_ENDED)
            return
        except RateLimited as exc:
            self.fail(exc, CloseCode.SERVER_BUSY)
            return
        except Unauthenticated as exc:
            self.fail(exc, CloseCode.AUTH_FAILED)
            return
        except PicaError as exc:
            self.fail(exc, CloseCode.INTERNAL_ERROR)
            return
        if self.state is State.CLOSED:
            return
        if self.services.before_ready is not None:
            await self.services.before_ready(who.user_id)
            if self.closed:  # the client left, or the node began to drain, while we waited
                return
        self.accept(who, device)

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    def accept(self, who: Identity, device: str | None) -> None:
        """Authentication succeeded: register with the hub and tell the client (unless the user's sessions are at
        ``max_sessions_per_user`` and the policy is to refuse). The connection lasts as long as the session, not
        the access token that opened it (:mod:`pica.core.sessions`)."""
        services = self.services
        user_id = who.user_id
        cap = services.max_sessions_per_user
        if cap and services.limits.session_overflow == "refuse" and services.hub.devices(user_id) >= cap:
            services.metrics.sessions_over_limit += 1
            self.fail(TooManySessions(f"this user has {cap} sessions on this server already; close one first"),
                      CloseCode.TOO_MANY_SESSIONS)
            return
        self.user_id = user_id
        ids = os.urandom(12).hex()  # one system call for both ids
        self.device = device or "dev-" + ids[16:]
        self.session_id = ids[:16]
        self.login_session = who.session_id
        self.session_expires_at = who.session_expires_at
        self.state = State.READY
        self.timers_due = 0.0  # the READY deadlines (an MQTT keep-alive's may be short) replace the auth deadline
        rates = self.services.rates
        self._rate = rates.connection_bucket() if rates is not None else None
        self.services.hub.register(self)
        limits = self.services.limits
        self.send(
            f.Ready(
                v=f.PROTOCOL_VERSION,
                user_id=user_id,
                device=self.device,
                session=self.session_id,
                heartbeat=limits.heartbeat_interval,
                idle_timeout=limits.idle_timeout,
                max_frame=limits.max_frame_bytes,
                time=self.services.clock.now_ms(),
                recall_window=limits.recall_window,
                page_size=limits.history_page_size,
            )
        )
        if cap:
            self._evict_oldest_sessions(cap)

    def _evict_oldest_sessions(self, cap: int) -> None:
        """``session_overflow = "oldest"``: make room by closing the user's oldest sessions on this node. Done after
        the new one registered, so that a user at the cap never looks offline for a moment."""
        hub = self.services.hub
        for _ in range(hub.devices(self.user_id) - cap):
            oldest = hub.oldest(self.user_id)
            if oldest is None or oldest is self:
                return
            self.services.metrics.sessions_over_limit += 1
            log.info("closing the oldest session over the limit", extra={"user_id": self.user_id, "limit": cap})
            oldest.fail(TooManySessions(f"this user opened more than {cap} sessions on this server; this one, the "
                                        "oldest, was closed"), CloseCode.TOO_MANY_SESSIONS)

    def _submit(self, ref: int | None, submit: Callable[[Reply], None]) -> None:
        """The hot path: no task per message; the commit callback writes the ack (or the error)."""
        try:
            submit(partial(self._sent, ref, self.last_recv))
        except PicaError as exc:
            self.send_error(exc, ref)
            return
        self._begin_request()
        self.services.sends_started()

    def _sent(self, ref: int | None, received: float, ack: SendAck | None, error: BaseException | None) -> None:
        """The commit's answer to a send read at ``received`` (monotonic seconds): its ack, or its error."""
        self._end_request()
        self.services.sends_finished()
        if error is not None or ack is None:
            if not isinstance(error, PicaError):
                if not isinstance(error, asyncio.CancelledError):
                    log.error("send failed", exc_info=error, extra={"user_id": self.user_id})
                error = InternalError("internal error")
            self.send_error(error, ref)
            return
        metrics = self.services.metrics
        metrics.messages_acked += 1
        self._time(metrics.send_ack_for(self.transport_name), received)
        self.send(
            f.Sent(
                client_msg_id=ack.client_msg_id,
                conversation_id=ack.conversation_id,
                seq=ack.seq,
                ts=ack.ts,
                ref=ref,
                duplicate=ack.duplicate,
            )
        )

    async def _answer(self, frame: f.Answer) -> None:
        await self.services.groups.answer(self.user_id, frame.group_id, frame.accept)

    async def _do_sync(self, frame: f.Sync) -> None:
        if not frame.stream:
            page = await self.services.chat.sync(self.user_id, frame.cursors, frame.limit)
            self.send(f.Synced(msgs=page.messages, more=page.more, ref=frame.id))
            return
        async for page in self.services.chat.sync_stream(self.user_id, frame.cursors, frame.limit):
            self.send(f.Synced(msgs=page.messages, more=page.more, ref=frame.id))
            if page.more and not await self._taken():
                return

    async def _taken(self) -> bool:
        """Until the client has read most of what was written (a streamed sync's next page is read only then, so
        that neither the server nor the client holds more than about a page); False once the connection is closed.
        A client that stops reading stops the stream; its idle timeout ends it."""
        backlog = self.services.limits.max_outbound_bytes // 2
        pause = 0.001
        await asyncio.sleep(0)  # the page leaves in this loop turn's flush
        while not self.closed:
            if self._transport_buffered() <= backlog:
                return True
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.05)
        return False

    async def _do_history(self, frame: f.History) -> None:
        page = await self.services.chat.history(
            self.user_id, frame.conversation_id, after=frame.after, before=frame.before, limit=frame.limit
        )
        self.send(
            f.Page(
                conversation_id=frame.conversation_id,
                msgs=[message_frame(m) for m in page.messages],
                more=page.more,
                ref=frame.id,
            )
        )

    async def _do_thread(self, frame: f.Thread) -> None:
        page = await self.services.chat.thread_messages(self.user_id, frame.conversation_id, frame.root,
                                                        after=frame.after, limit=frame.limit)
        self.send(f.ThreadPage(conversation_id=frame.conversation_id, root=frame.root,
                               msgs=[message_frame(m) for m in page.messages], more=page.more, ref=frame.id))

    # ------------------------------------------------------------------------------------------ timers

    def idle_limit(self) -> float:
        """Seconds of silence from a READY client before it is closed (``limits.idle_timeout``; the MQTT gateway
        derives it from the client's keep-alive instead)."""
        return self.services.limits.idle_timeout

    def check_timers(self, now: float, now_s: float) -> None:
        """Called by the hub's sweeper once ``timers_due`` has come: auth deadline, idle timeout, heartbeat, session
        expiry; then ``timers_due`` is set to the earliest of them still ahead."""
        limits = self.services.limits
        if self.state in (State.AWAIT_AUTH, State.AUTHENTICATING):
            deadline = self.opened_at + limits.auth_timeout
            if now > deadline:
                self.fail(Unauthenticated("authentication timed out"), CloseCode.AUTH_TIMEOUT)
            self.timers_due = deadline
            return
        if self.state is not State.READY:
            return
        idle_at = self.last_recv + self.idle_limit()
        if now > idle_at:
            self.close(CloseCode.IDLE_TIMEOUT, "idle timeout")
            return
        expires = self.session_expires_at
        if expires and now_s >= expires:
            self.fail(SessionEnded("the session expired: log in again"), CloseCode.SESSION_ENDED)
            return
        if now - self.last_send >= limits.heartbeat_interval:
            self._heartbeat()
        # Every deadline only moves later (traffic refreshes last_recv and last_send), so a look at the earliest one
        # as computed now is never late; an idle connection is looked at about once per heartbeat, not every tick.
        due = min(idle_at, self.last_send + limits.heartbeat_interval)
        self.timers_due = min(due, now + expires - now_s) if expires else due

    def _heartbeat(self) -> None:
        """Write a ``ping`` now, from the sweeper's slice: through the outbox like any frame (the slow-consumer
        check included), but flushed at once rather than in a loop turn of its own, one callback per ping saved."""
        data = self._transport_bytes(_PING)
        if self._outbox is not None:
            self._outbox.append(data)  # a flush is already due this turn
            return
        self._outbox = [data]
        self.flush()
