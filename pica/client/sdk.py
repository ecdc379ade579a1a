"""The Pica SDK: a client that stays connected.

:class:`PicaClient` logs in, connects over WebSocket or TCP, and keeps the connection up: after a drop it
reconnects with exponential backoff and full jitter, then syncs from its per-conversation cursors (optionally kept
in a file), so the application sees every message once and in order. ``send()`` resolves on the server's ack; a send
in flight when the connection drops is retried with the same client message id after the reconnect, so it is stored
exactly once. Events arrive through ``async for event in client`` and/or callbacks registered with ``on()``.

With ``dispatch=True`` the client asks ``GET /v1/gateway`` before every (re)connect which node to use, trying the
last node, ``url`` and then ``seeds`` until one answers, and connects to the first reachable node of the list; its
HTTP helpers then talk to that node too. A node that dies is left out of the list within the cluster's node TTL.

    async with PicaClient("http://127.0.0.1:8080", username="alice", password="...") as alice:
        await alice.send(to=bob_id, text="hi")
        async for event in alice:
            if isinstance(event, MessageEvent):
                print(event.message.body)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from ssl import SSLContext
from types import TracebackType
from typing import Any, Final, Literal, TypeVar

import aiohttp

from pica.client.connection import GAP_WAIT, PicaConnection, RequestFailed, ServerClosed, Transport
from pica.client.cursors import CursorTracker
from pica.client.http import GatewayNode, Login, PicaHttp, PicaHttpError
from pica.protocol import frames as f
from pica.protocol.close_codes import CloseCode
from pica.protocol.ids import direct_peer, group_id_of

log = logging.getLogger(__name__)

E = TypeVar("E")

RETRY_CAP: Final = 2.0
"""Longest pause (s) between two tries of a request that failed with a retryable error (``store_unavailable``)."""
MAX_NODES_TRIED: Final = 3
"""Dispatch: nodes of one gateway list tried in turn when the first cannot be reached, before backing off."""

_UNREACHABLE = (OSError, TimeoutError, aiohttp.ClientError, ValueError)
"""A node that cannot answer: refused, reset, timed out, or an answer that is not the JSON we expect."""


# ---------------------------------------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class Connected:
    user_id: int
    device: str
    reconnect: bool
    node_id: str = ""
    """With dispatch: the node connected to (as ``GET /v1/gateway`` names it)."""


@dataclass(frozen=True, slots=True)
class Disconnected:
    code: int | None
    reason: str
    will_retry: bool


@dataclass(frozen=True, slots=True)
class MessageEvent:
    """A message (or an event message: recall, edit, system notice), once each, in seq order per conversation."""

    message: f.Msg


@dataclass(frozen=True, slots=True)
class ReceiptEvent:
    receipt: f.Receipt


@dataclass(frozen=True, slots=True)
class PresenceEvent:
    presence: f.Presence


@dataclass(frozen=True, slots=True)
class TypingEvent:
    typing: f.Typing


@dataclass(frozen=True, slots=True)
class ContactEvent:
    contact: f.Contact


@dataclass(frozen=True, slots=True)
class InvitationEvent:
    """An invitation to a group (``state`` "pending"), or one answered on another device."""

    invitation: f.Invitation


@dataclass(frozen=True, slots=True)
class CallEvent:
    """Call signalling for this device (docs/protocol.md, "Calls"): ``call_incoming``, ``call_ringing``,
    ``call_accepted``, ``call_candidate`` or ``call_ended``."""

    frame: f.CallIncoming | f.CallRinging | f.CallAccepted | f.CallCandidate | f.CallEnded


@dataclass(frozen=True, slots=True)
class ConversationStateEvent:
    """My own state of a conversation (draft, pin to top, archive, unread mark, mute) changed on one of my devices
    (docs/protocol.md section 29.4): all of it."""

    state: f.ConversationState


Event = (Connected | Disconnected | MessageEvent | ReceiptEvent | PresenceEvent | TypingEvent | ContactEvent
         | InvitationEvent | CallEvent | ConversationStateEvent)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter: attempt n waits uniform(0, min(cap, base * 2**n)) seconds."""

    base: float = 0.25
    cap: float = 30.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        return rng.uniform(0, min(self.cap, self.base * (2 ** min(attempt, 30))))


class GaveUp(Exception):
    """The server refused the connection for good (bad credentials, a protocol version it does not speak)."""


# ---------------------------------------------------------------------------------------------------------- client


class PicaClient:
    def __init__(
        self,
        url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        refresh_token: str | None = None,
        transport: Transport = "ws",
        tcp_port: int | None = None,
        device: str | None = None,
        cursor_file: str | Path | None = None,
        backoff: Backoff | None = None,
        seed: int | None = None,
        seeds: Sequence[str] = (),
        dispatch: bool = False,
        connect_timeout: float = 10.0,
        gap_wait: float = GAP_WAIT,
        ssl: SSLContext | None = None,
    ) -> None:
        """``seeds``: HTTP base URLs of other nodes, asked for the gateway list (and logins) when ``url`` does not
        answer. ``dispatch``: choose the node by ``GET /v1/gateway`` before each (re)connect. ``connect_timeout``:
        seconds one connect attempt (gateway request, socket, auth) may take. ``gap_wait``: seconds a live message
        that skips ahead waits for the missing ones before the client syncs (protocol 8.6; 0: sync at once)."""
        if token is None and (username is None or password is None):
            raise ValueError("give a token, or a username and password")
        self.url = url.rstrip("/")
        self.http = PicaHttp(self.url, token=token, refresh_token=refresh_token, ssl=ssl)
        self.ssl = ssl
        """For ``https://`` servers: the CAs their certificates are verified against (None: the system's)."""
        self.seeds = tuple(seed_url.rstrip("/") for seed_url in seeds)
        self.dispatch = dispatch
        self.connect_timeout = connect_timeout
        self.gap_wait = gap_wait
        self.node: GatewayNode | None = None
        """With dispatch: the node of the current (or last) connection."""
        self._known_nodes: list[str] = []
        self._username = username
        self._password = password
        self.transport: Transport = transport
        self.tcp_port = tcp_port
        self.device = device or "sdk-" + uuid.uuid4().hex[:8]
        self.user_id = 0
        self._cursor_file = Path(cursor_file) if cursor_file else None
        self.cursors = CursorTracker(self._load_cursors())
        self._backoff = backoff or Backoff()
        self._rng = random.Random(seed)
        self._conn: PicaConnection | None = None
        self._connected = asyncio.Event()
        self._events: asyncio.Queue[Event] = asyncio.Queue()
        self._callbacks: list[tuple[type[Any], Callable[[Any], Awaitable[None] | None]]] = []
        self._supervisor: asyncio.Task[None] | None = None
        self._stopped = False
        self.failure: BaseException | None = None

    # ------------------------------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> PicaClient:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self, timeout: float = 30.0) -> None:
        """Log in if needed, connect, sync, and keep the connection up in the background."""
        if self.http.token is None:
            await self._login()
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise())
        await self.wait_connected(timeout)

    async def close(self) -> None:
        self._stopped = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
        await self.http.close()
        self._save_cursors()

    async def logout(self) -> None:
        """End this session on the server (its tokens stop working), then close."""
        try:
            await self.http.logout()
        finally:
            await self.close()

    async def wait_connected(self, timeout: float = 30.0) -> None:
        async with asyncio.timeout(timeout):
            while not self._connected.is_set():
                if self.failure is not None:
                    raise self.failure
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.05):
                        await self._connected.wait()
        if self.failure is not None:
            raise self.failure

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def login(self) -> Login:
        """Log in now with the username and password given (with dispatch: at the first node that answers, which
        the HTTP helper then uses until a connection picks a node). Raises PicaHttpError when refused, OSError
        when no node answers."""
        return await self._login()

    async def _login(self) -> Login:
        """Log in (with dispatch: at the first node that answers). Raises PicaHttpError when refused, OSError or
        TimeoutError when no node answers."""
        assert self._username is not None and self._password is not None
        if not self.dispatch:
            direct = await self.http.login(self._username, self._password)
            self.user_id = direct.user_id
            return direct
        unreachable: BaseException = OSError("no node to log in at")
        for base in self._candidates():
            try:
                async with asyncio.timeout(self.connect_timeout):
                    login: Login = await self.http.login(self._username, self._password, base_url=base)
            except PicaHttpError as exc:
                if exc.status < 500:
                    raise
                unreachable = exc
            except _UNREACHABLE as exc:
                unreachable = exc
            else:
                self.user_id = login.user_id
                self.http.base_url = base
                return login
        raise OSError(f"no node answered the login: {unreachable}")

    # ------------------------------------------------------------------------------------------ dispatch

    def _candidates(self) -> list[str]:
        """Base URLs to ask, in order: the node in use, ``url``, the seeds, then nodes a gateway list named."""
        ordered = [self.node.http] if self.node is not None else []
        ordered += [self.url, *self.seeds, *self._known_nodes]
        return list(dict.fromkeys(ordered))

    async def _gateway(self) -> list[GatewayNode]:
        """The live nodes, preferred first, from the first candidate that answers."""
        if not self.dispatch:
            return [GatewayNode.direct(self.url, self.tcp_port)]
        failure: BaseException = OSError("no node to ask")
        for base in self._candidates():
            try:
                async with asyncio.timeout(self.connect_timeout):
                    nodes = await self.http.gateway(base_url=base)
            except PicaHttpError as exc:
                if exc.status == 404:
                    return [GatewayNode.direct(base, self.tcp_port)]  # a server without dispatch: use it as it is
                if exc.status in (401, 403):
                    code = CloseCode.TOKEN_EXPIRED if exc.code == "token_expired" else CloseCode.AUTH_FAILED
                    raise ServerClosed(code, f"{exc.code}: {exc.message}") from exc
                failure = exc
                continue
            except (*_UNREACHABLE, KeyError, TypeError) as exc:
                failure = exc
                continue
            if nodes:
                self._known_nodes = [node.http for node in nodes]
                return nodes
            failure = OSError(f"{base} lists no live node")
        raise OSError(f"dispatch failed: {failure}")

    async def _open(self) -> PicaConnection:
        """Connect (and authenticate) to the first reachable node the gateway names."""
        nodes = await self._gateway()
        failure: BaseException = OSError("no node")
        for node in nodes[:MAX_NODES_TRIED]:
            address = node.tcp_address
            if self.transport == "tcp" and address is None:
                failure = OSError(f"node {node.node_id} has no TCP gateway")
                continue
            try:
                async with asyncio.timeout(self.connect_timeout):
                    conn = await PicaConnection.open(
                        node.http, self.http.token or "", transport=self.transport,
                        tcp_port=address[1] if address else None, tcp_host=address[0] if address else None,
                        ws_url=node.ws, device=self.device, cursors=self.cursors, gap_wait=self.gap_wait,
                        ssl=self.ssl)
            except (OSError, TimeoutError, aiohttp.ClientError) as exc:
                log.info("connect to %s failed: %s", node.node_id or node.http, exc)
                failure = exc
                continue
            if self.dispatch:
                self.node = node
                self.http.base_url = node.http
            return conn
        raise failure

    async def _supervise(self) -> None:
        attempt = 0
        reconnect = False
        while not self._stopped:
            try:
                conn = await self._open()
            except ServerClosed as exc:
                if not await self._recoverable(exc):
                    return
                await self._pause(attempt)
                attempt += 1
                continue
            except (TimeoutError, OSError, aiohttp.ClientError) as exc:
                log.info("connect failed: %s", exc)
                await self._pause(attempt)
                attempt += 1
                continue
            self._conn = conn
            self.user_id = conn.user_id
            attempt = 0
            try:
                await self._first_sync(conn)
                self._connected.set()
                await self._emit(Connected(conn.user_id, conn.device, reconnect,
                                           self.node.node_id if self.node is not None else ""))
                await self._pump(conn)
            except (TimeoutError, ServerClosed, RequestFailed, OSError, aiohttp.ClientError):
                pass
            self._connected.clear()
            closed = conn.closed or ServerClosed(None, "connection lost")
            self._conn = None
            await conn.close()
            self._save_cursors()
            retry = await self._recoverable(closed)
            await self._emit(Disconnected(closed.code, closed.reason, retry))
            if not retry:
                return
            reconnect = True
            await self._pause(attempt)
            attempt += 1

    async def _first_sync(self, conn: PicaConnection) -> None:
        """Sync to completion on a new connection; a retryable failure (the database is briefly down) is tried again
        on the same connection rather than dropping it."""
        failures = 0
        while True:
            try:
                await conn.sync_all()
                return
            except RequestFailed as exc:
                if not exc.retryable:
                    raise
                await asyncio.sleep(min(RETRY_CAP, self._backoff.delay(failures, self._rng)))
                failures += 1

    async def _recoverable(self, closed: ServerClosed) -> bool:
        """Whether to reconnect after this close. An expired access token is renewed with the refresh token; when
        that fails, or the session ended, or the token was refused, we log in again if we can."""
        code = closed.code
        if code == CloseCode.TOKEN_EXPIRED and self.http.refresh_token:
            try:
                await self.http.refresh()
                return True
            except PicaHttpError as exc:
                if exc.status >= 500 or exc.status == 429:
                    return True
                log.info("refresh refused (%s), logging in again", exc.code)
            except (OSError, TimeoutError, aiohttp.ClientError) as exc:
                log.info("refresh failed, will retry: %s", exc)
                return True
        if code in (CloseCode.TOKEN_EXPIRED, CloseCode.AUTH_FAILED, CloseCode.SESSION_ENDED) \
                or "token" in closed.reason:
            if self._username is None:
                self.failure = GaveUp(f"authentication failed ({code}: {closed.reason})")
                return False
            try:
                await self._login()
            except PicaHttpError as exc:
                if exc.status >= 500:
                    return True  # the server is in trouble, not the password: try again later
                self.failure = GaveUp(f"login failed: {exc}")
                return False
            except (OSError, TimeoutError, aiohttp.ClientError) as exc:
                log.info("login failed, will retry: %s", exc)
            return True
        if code is not None and 4500 <= code < 5000:
            self.failure = GaveUp(f"server refused the connection ({code}: {closed.reason})")
            return False
        return True

    async def _pause(self, attempt: int) -> None:
        await asyncio.sleep(self._backoff.delay(attempt, self._rng))

    async def _pump(self, conn: PicaConnection) -> None:
        """Hand the connection's ordered messages and its other pushes to the application until it closes."""
        messages = asyncio.get_running_loop().create_task(self._pump_messages(conn))
        try:
            while True:
                event = await conn.events.get()
                if isinstance(event, ServerClosed):
                    return
                wrapped = _wrap(event)
                if wrapped is not None:
                    await self._emit(wrapped)
        finally:
            messages.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await messages

    async def _pump_messages(self, conn: PicaConnection) -> None:
        while True:
            msg = await conn.next_message(timeout=3600)
            await self._emit(MessageEvent(msg))

    async def _emit(self, event: Event) -> None:
        self._events.put_nowait(event)
        for kind, callback in self._callbacks:
            if isinstance(event, kind):
                try:
                    result = callback(event)
                    if result is not None:
                        await result
                except Exception:
                    log.exception("event callback failed")

    # ------------------------------------------------------------------------------------------ events

    def on(self, kind: type[E], callback: Callable[[E], Awaitable[None] | None]) -> None:
        """Call ``callback(event)`` for every event of this type (a class from this module)."""
        self._callbacks.append((kind, callback))

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Event]:
        while True:
            yield await self._events.get()

    async def next_event(self, kind: type[E], timeout: float = 10.0) -> E:
        """The next event of a type, skipping others (handy in scripts and tests)."""
        async with asyncio.timeout(timeout):
            while True:
                event = await self._events.get()
                if isinstance(event, kind):
                    return event

    # ------------------------------------------------------------------------------------------ socket requests

    async def _request(self, frame: Any, timeout: float = 60.0) -> Any:
        """Send a request, waiting out disconnects and retryable errors (``store_unavailable`` with backoff,
        ``rate_limited`` for the ``retry_after`` the server gave); the frame is re-sent unchanged, so a send keeps
        its client message id and is stored once."""
        failures = 0
        async with asyncio.timeout(timeout):
            while True:
                await self.wait_connected(timeout)
                conn = self._conn
                if conn is None:
                    continue
                try:
                    return await conn.request(frame)
                except RequestFailed as exc:
                    if not exc.retryable:
                        raise
                    if exc.retry_after is not None:  # rate_limited: the server said when; sooner is refused again
                        await asyncio.sleep(exc.retry_after)
                        continue
                    await asyncio.sleep(min(RETRY_CAP, self._backoff.delay(failures, self._rng)))
                    failures += 1
                except (TimeoutError, ServerClosed, OSError, aiohttp.ClientError):
                    await asyncio.sleep(0.01)  # the supervisor notices and reconnects

    async def send(self, *, to: int | None = None, group_id: int | None = None, text: str | None = None,
                   body: dict[str, Any] | None = None, client_msg_id: str | None = None,
                   timeout: float = 60.0) -> f.Sent:
        """Send a message; resolves on the server's ack (the message is durable). Retried across reconnects with
        the same client message id, so it is stored once whatever happens to the connection."""
        if body is None:
            if text is None:
                raise ValueError("give text or body")
            body = {"text": text}
        frame = f.Send(client_msg_id=client_msg_id or uuid.uuid4().hex, body=body, to=to, group_id=group_id)
        sent: f.Sent = await self._request(frame, timeout)
        conn = self._conn
        if conn is not None:
            conn.note_own(sent)  # acked on an earlier connection after a reconnect: this one learns of it here
        return sent

    async def mark_read(self, conversation_id: str, seq: int) -> None:
        await self._request(f.Read(conversation_id=conversation_id, seq=seq))

    async def mark_received(self, conversation_id: str, seq: int) -> None:
        conn = self._conn
        if conn is not None:
            with contextlib.suppress(ServerClosed, OSError):
                await conn.ack_received(conversation_id, seq)

    async def typing(self, conversation_id: str) -> None:
        conn = self._conn
        if conn is not None:
            with contextlib.suppress(ServerClosed, OSError):
                await conn.write_frame(f.Typing(conversation_id=conversation_id))

    async def recall(self, conversation_id: str, seq: int) -> f.Sent:
        sent: f.Sent = await self._request(
            f.Recall(conversation_id=conversation_id, seq=seq, client_msg_id=uuid.uuid4().hex))
        return sent

    async def edit(self, conversation_id: str, seq: int, text: str) -> f.Sent:
        sent: f.Sent = await self._request(
            f.Edit(conversation_id=conversation_id, seq=seq, text=text, client_msg_id=uuid.uuid4().hex))
        return sent

    async def remove_preview(self, conversation_id: str, seq: int) -> f.Sent:
        """Remove the link preview of one of my messages (docs/protocol.md section 30)."""
        sent: f.Sent = await self._request(
            f.Unpreview(conversation_id=conversation_id, seq=seq, client_msg_id=uuid.uuid4().hex))
        return sent

    async def delete_for_me(self, conversation_id: str, seq: int) -> None:
        await self._request(f.Delete(conversation_id=conversation_id, seq=seq))

    async def history(self, conversation_id: str, *, before: int | None = None, after: int | None = None,
                      limit: int | None = None) -> f.Page:
        page: f.Page = await self._request(
            f.History(conversation_id=conversation_id, before=before, after=after, limit=limit))
        return page

    # ------------------------------------------------------------------------------------------ reactions, threads
    # docs/protocol.md section 28

    async def react(self, conversation_id: str, seq: int, emoji: str, *, remove: bool = False) -> f.Sent:
        """Add (``remove``: take back) my reaction ``emoji`` to message ``seq``; the ack of the reaction event."""
        sent: f.Sent = await self._request(f.React(conversation_id=conversation_id, seq=seq, emoji=emoji,
                                                   remove=remove, client_msg_id=uuid.uuid4().hex))
        return sent

    async def send_to(self, conversation_id: str, body: dict[str, Any], *, client_msg_id: str | None = None,
                      timeout: float = 60.0) -> f.Sent:
        """Send ``body`` to a conversation by its id (``d:`` or ``g:``) rather than by user or group id."""
        group_id = group_id_of(conversation_id)
        to = None if group_id is not None else direct_peer(conversation_id, self.user_id)
        if group_id is None and to is None:
            raise ValueError(f"not a conversation of mine: {conversation_id!r}")
        return await self.send(to=to, group_id=group_id, body=body, client_msg_id=client_msg_id, timeout=timeout)

    async def reply(self, conversation_id: str, seq: int, text: str, *, mentions: Sequence[int] = ()) -> f.Sent:
        """Reply to message ``seq`` with a quote of it (the server writes the quote's truth)."""
        body: dict[str, Any] = {"text": text, "reply": {"seq": seq}}
        if mentions:
            body["mentions"] = list(mentions)
        return await self.send_to(conversation_id, body)

    async def send_in_thread(self, conversation_id: str, root: int, text: str, *,
                             mentions: Sequence[int] = ()) -> f.Sent:
        """Write in the thread under group message ``root``."""
        body: dict[str, Any] = {"text": text, "thread": {"root": root}}
        if mentions:
            body["mentions"] = list(mentions)
        return await self.send_to(conversation_id, body)

    async def thread(self, conversation_id: str, root: int, *, after: int = 0,
                     limit: int | None = None) -> f.ThreadPage:
        """A page of the thread under ``root``, oldest first, after seq ``after``."""
        page: f.ThreadPage = await self._request(f.Thread(conversation_id=conversation_id, root=root, after=after,
                                                          limit=limit))
        return page

    async def threads(self, conversation_id: str) -> list[dict[str, Any]]:
        """The threads I take part in, with my unread count in each (HTTP)."""
        data = await self.http.request("GET", f"/v1/conversations/{conversation_id}/threads")
        return list(data["threads"])

    async def mark_thread_read(self, conversation_id: str, root: int, seq: int) -> None:
        await self.http.request("POST", f"/v1/conversations/{conversation_id}/threads/{root}/read", json={"seq": seq})

    # ------------------------------------------------------------------------------------------ HTTP helpers

    async def conversations(self, limit: int | None = None) -> list[dict[str, Any]]:
        data = await self.http.request("GET", "/v1/conversations", params={"limit": limit})
        return list(data["conversations"])

    async def search(self, query: str, conversation_id: str | None = None) -> list[dict[str, Any]]:
        data = await self.http.request("GET", "/v1/search", params={"q": query, "conversation_id": conversation_id})
        return list(data["messages"])

    async def user(self, user_id: int) -> dict[str, Any]:
        """{"user_id", "username", "deleted"} of a user id (a deleted account: no name, "deleted" true)."""
        data: dict[str, Any] = await self.http.request("GET", f"/v1/users/{user_id}")
        return data

    async def find_user(self, username: str) -> int:
        data = await self.http.request("GET", "/v1/users", params={"username": username})
        return int(data["user_id"])

    async def create_group(self, name: str, members: list[int]) -> dict[str, Any]:
        data: dict[str, Any] = await self.http.request("POST", "/v1/groups", json={"name": name, "members": members})
        return data

    async def add_members(self, group_id: int, user_ids: list[int]) -> dict[str, Any]:
        data: dict[str, Any] = await self.http.request("POST", f"/v1/groups/{group_id}/members",
                                                       json={"user_ids": user_ids})
        return data

    async def remove_member(self, group_id: int, user_id: int) -> dict[str, Any]:
        data: dict[str, Any] = await self.http.request("DELETE", f"/v1/groups/{group_id}/members/{user_id}")
        return data

    async def groups(self) -> list[dict[str, Any]]:
        data = await self.http.request("GET", "/v1/groups")
        return list(data["groups"])

    async def group_members(self, group_id: int) -> list[dict[str, Any]]:
        data = await self.http.request("GET", f"/v1/groups/{group_id}/members")
        return list(data["members"])

    async def request_contact(self, user_id: int) -> str:
        data = await self.http.request("POST", "/v1/contacts/requests", json={"user_id": user_id})
        return str(data["state"])

    async def accept_contact(self, user_id: int) -> str:
        data = await self.http.request("POST", f"/v1/contacts/requests/{user_id}/accept")
        return str(data["state"])

    async def contacts(self) -> list[dict[str, Any]]:
        data = await self.http.request("GET", "/v1/contacts")
        return list(data["contacts"])

    async def block(self, user_id: int) -> None:
        await self.http.request("PUT", f"/v1/blocks/{user_id}")

    async def presence(self, user_ids: list[int]) -> list[dict[str, Any]]:
        data = await self.http.request("GET", "/v1/presence", params={"user_ids": ",".join(map(str, user_ids))})
        return list(data["presence"])

    # ------------------------------------------------------------------------------------------ forwarding, pins,
    # drafts and settings (docs/protocol.md section 29)

    async def forward(self, conversation_id: str, seqs: list[int], *, to: list[int] | None = None,
                      group_ids: list[int] | None = None, client_msg_id: str | None = None) -> list[dict[str, Any]]:
        """Forward messages to users and groups: one answer per copy, each with ``ack`` or ``error``. A retry with
        the same ``client_msg_id`` stores nothing twice."""
        data = await self.http.request("POST", "/v1/forward", json={
            "conversation_id": conversation_id, "seqs": seqs, "to": to or [], "group_ids": group_ids or [],
            "client_msg_id": client_msg_id or uuid.uuid4().hex})
        return list(data["copies"])

    async def pin(self, conversation_id: str, seq: int, pinned: bool = True) -> dict[str, Any] | None:
        """Pin (or unpin) a message; the timeline's notice of it, None when nothing changed."""
        data = await self.http.request("PUT" if pinned else "DELETE", f"/v1/conversations/{conversation_id}/pins/{seq}")
        notice: dict[str, Any] | None = data["notice"]
        return notice

    async def pins(self, conversation_id: str) -> list[dict[str, Any]]:
        data = await self.http.request("GET", f"/v1/conversations/{conversation_id}/pins")
        return list(data["pins"])

    async def save_draft(self, conversation_id: str, text: str) -> dict[str, Any]:
        """Save my draft of a conversation (an empty ``text`` clears it); my other devices get a ``conversation``
        frame (:class:`ConversationStateEvent`)."""
        path = f"/v1/conversations/{conversation_id}/draft"
        state: dict[str, Any] = await (self.http.request("PUT", path, json={"text": text}) if text
                                       else self.http.request("DELETE", path))
        return state

    async def conversation_settings(self, conversation_id: str, *, pinned: bool | None = None,
                                    archived: bool | None = None, marked_unread: bool | None = None,
                                    muted_until: int | None = None) -> dict[str, Any]:
        """Change my list settings of a conversation (None: unchanged; ``muted_until`` a time already past
        unmutes)."""
        changes = {"pinned": pinned, "archived": archived, "marked_unread": marked_unread, "muted_until": muted_until}
        state: dict[str, Any] = await self.http.request(
            "PATCH", f"/v1/conversations/{conversation_id}/settings",
            json={key: value for key, value in changes.items() if value is not None})
        return state

    # ------------------------------------------------------------------------------------------ calls

    async def _on_this_socket(self, frame: Any, timeout: float = 10.0) -> Any:
        """A call frame goes on the current connection only: a call belongs to the device (the socket) that
        placed or answered it, so it is never re-sent on a new connection after a reconnect."""
        conn = self._conn
        if conn is None:
            raise ServerClosed(None, "not connected")
        return await conn.request(frame, timeout)

    async def call(self, to: int, sdp: str, media: Literal["audio", "video"] = "audio") -> f.CallPlaced:
        """Ring every device of user ``to`` with a WebRTC offer; then wait for ``CallEvent``s."""
        placed: f.CallPlaced = await self._on_this_socket(f.CallInvite(to=to, sdp=sdp, media=media))
        return placed

    async def accept_call(self, call_id: str, sdp: str) -> None:
        await self._on_this_socket(f.CallAccept(call_id=call_id, sdp=sdp))

    async def ringing(self, call_id: str) -> None:
        await self._on_this_socket(f.CallRinging(call_id=call_id))

    async def decline_call(self, call_id: str) -> None:
        await self._on_this_socket(f.CallDecline(call_id=call_id))

    async def cancel_call(self, call_id: str) -> None:
        await self._on_this_socket(f.CallCancel(call_id=call_id))

    async def hang_up(self, call_id: str) -> None:
        await self._on_this_socket(f.CallHangup(call_id=call_id))

    async def send_candidate(self, call_id: str, candidate: str, sdp_mid: str | None = None,
                             sdp_mline_index: int | None = None) -> None:
        await self._on_this_socket(f.CallCandidate(call_id=call_id, candidate=candidate, sdp_mid=sdp_mid,
                                                   sdp_mline_index=sdp_mline_index))

    async def turn(self) -> dict[str, Any]:
        """``{"urls", "username", "credential", "ttl"}`` for an ``RTCIceServer`` (``GET /v1/turn``)."""
        data: dict[str, Any] = await self.http.request("GET", "/v1/turn")
        return data

    # ------------------------------------------------------------------------------------------ privacy, account

    async def settings(self) -> dict[str, Any]:
        """``{"user_id", "username", "only_contacts", "group_add", "presence"}``."""
        data: dict[str, Any] = await self.http.request("GET", "/v1/me")
        return data

    async def update_settings(self, *, only_contacts: bool | None = None, group_add: str | None = None,
                              presence: str | None = None) -> dict[str, Any]:
        """Change the given settings; ``group_add`` and ``presence`` are "everyone", "contacts" or "nobody"."""
        wanted = {"only_contacts": only_contacts, "group_add": group_add, "presence": presence}
        data: dict[str, Any] = await self.http.request(
            "PATCH", "/v1/me", json={k: v for k, v in wanted.items() if v is not None})
        return data

    async def invitations(self) -> list[dict[str, Any]]:
        """My pending group invitations."""
        data = await self.http.request("GET", "/v1/invitations")
        return list(data["invitations"])

    async def answer_invitation(self, group_id: int, accept: bool) -> None:
        """Accept (join the group) or decline an invitation, over the socket."""
        await self._request(f.Answer(group_id=group_id, accept=accept))

    async def export(self) -> dict[str, Any]:
        """My data (profile, contacts, blocks, groups, invitations, every message I sent), as one JSON object."""
        return await self.http.export()

    async def delete_account(self, password: str) -> None:
        """Delete my account for good, then close this client (the server closes its sockets anyway)."""
        await self.http.delete_account(password)
        await self.close()

    # ------------------------------------------------------------------------------------------ cursors

    def _load_cursors(self) -> dict[str, int]:
        if self._cursor_file is None or not self._cursor_file.exists():
            return {}
        try:
            data = json.loads(self._cursor_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            log.warning("ignoring unreadable cursor file %s", self._cursor_file)
            return {}
        return {str(k): int(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def _save_cursors(self) -> None:
        if self._cursor_file is None:
            return
        tmp = self._cursor_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.cursors.snapshot()), encoding="utf-8")
        tmp.replace(self._cursor_file)


def _wrap(frame: Any) -> Event | None:
    if isinstance(frame, f.Receipt):
        return ReceiptEvent(frame)
    if isinstance(frame, f.Presence):
        return PresenceEvent(frame)
    if isinstance(frame, f.Typing):
        return TypingEvent(frame)
    if isinstance(frame, f.Contact):
        return ContactEvent(frame)
    if isinstance(frame, f.Invitation):
        return InvitationEvent(frame)
    if isinstance(frame, f.CallIncoming | f.CallRinging | f.CallAccepted | f.CallCandidate | f.CallEnded):
        return CallEvent(frame)
    if isinstance(frame, f.ConversationState):
        return ConversationStateEvent(frame)
    return None  # msg frames come ordered through next_message; others are not events
