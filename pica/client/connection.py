"""One authenticated socket to a Pica server, over WebSocket (JSON or MessagePack) or the framed TCP protocol.

Requests carry an ``id``; replies (``ref``) resolve the matching future. Pushed frames (``msg``, ``receipt``,
server ``ping`` is answered here) go to ``events``. Messages are ordered through a CursorTracker: ``next_message``
yields each message once, in seq order per conversation, filling gaps by sync. A ``resync`` frame (the server's
cluster bus was interrupted, live pushes may have been missed) starts the same sync in the background.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import uuid
from ssl import SSLContext, create_default_context
from types import TracebackType
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp

from pica.client.cursors import CursorTracker, GapBuffer, Verdict
from pica.errors import FrameTooLarge, InvalidFrame, UnknownFrame
from pica.protocol import frames as f
from pica.protocol.codec import Encoding, decode_server_frame, encode
from pica.protocol.framing import FrameReader, frame_bytes

Transport = Literal["ws", "ws-msgpack", "tcp"]

_SYNC_RETRIES = 5

GAP_WAIT = 0.2
"""Seconds a live message that skips ahead is held for the missing ones before syncing (protocol 8.6). Pushes of
one conversation committed on different nodes swap places by a few milliseconds; a lost push is rarer, and then
costs this much extra delay."""
"""Background syncs (gap, resync) that failed with a retryable error are tried again this many times."""


class ServerClosed(Exception):
    """The connection ended; ``code`` is the close code (None when it dropped without one)."""

    def __init__(self, code: int | None, reason: str = "") -> None:
        super().__init__(f"connection closed ({code}: {reason})")
        self.code = code
        self.reason = reason


class RequestFailed(Exception):
    def __init__(self, error: f.Error) -> None:
        super().__init__(f"{error.code}: {error.message}")
        self.code = error.code
        self.message = error.message
        self.retryable = error.retryable
        self.retry_after = error.retry_after
        """With ``rate_limited``: seconds after which the same request will be accepted."""


class _Wire:
    async def write(self, frame: Any) -> None:
        raise NotImplementedError

    async def read(self) -> f.ServerFrame:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class _TcpWire(_Wire):
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, max_frame: int) -> None:
        self._reader = reader
        self._writer = writer
        self._frames = FrameReader(max_frame)
        self._ready: list[bytes] = []

    async def write(self, frame: Any) -> None:
        await self.write_raw(frame_bytes(encode(frame, Encoding.MSGPACK)))

    async def write_raw(self, data: bytes) -> None:
        try:
            self._writer.write(data)
            await self._writer.drain()
        except RuntimeError as exc:  # uvloop: "unable to perform operation on <TCPTransport closed=True>"
            raise ConnectionResetError(str(exc)) from exc

    async def read(self) -> f.ServerFrame:
        while not self._ready:
            data = await self._reader.read(65_536)
            if not data:
                raise ServerClosed(None, "eof")
            self._ready.extend(self._frames.feed(data))
        return decode_server_frame(self._ready.pop(0), Encoding.MSGPACK)

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()


class _WsWire(_Wire):
    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse, encoding: Encoding):
        self._session = session
        self._ws = ws
        self.encoding = encoding

    async def write(self, frame: Any) -> None:
        data = encode(frame, self.encoding)
        await self.write_raw(data.decode() if self.encoding is Encoding.JSON else data)

    async def write_raw(self, data: bytes | str) -> None:
        try:
            if isinstance(data, str):
                await self._ws.send_str(data)
            else:
                await self._ws.send_bytes(data)
        except RuntimeError as exc:  # a transport closed under the WebSocket
            raise ConnectionResetError(str(exc)) from exc

    async def read(self) -> f.ServerFrame:
        msg = await self._ws.receive()
        if msg.type is aiohttp.WSMsgType.TEXT:
            return decode_server_frame(msg.data, Encoding.JSON)
        if msg.type is aiohttp.WSMsgType.BINARY:
            return decode_server_frame(msg.data, Encoding.MSGPACK)
        code = self._ws.close_code
        raise ServerClosed(code, str(msg.extra or ""))

    async def close(self) -> None:
        await self._ws.close()
        await self._session.close()


class PicaConnection:
    def __init__(self, wire: _Wire, ready: f.Ready, cursors: CursorTracker | None = None,
                 gap_wait: float = GAP_WAIT) -> None:
        self._wire = wire
        self.ready = ready
        self.user_id = ready.user_id
        self.device = ready.device
        self.events: asyncio.Queue[Any] = asyncio.Queue()
        self.cursors = cursors if cursors is not None else CursorTracker()
        self.closed: ServerClosed | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._messages: asyncio.Queue[f.Msg] = asyncio.Queue()
        # Messages this device sent are never handed out as received. A sync reply can carry one before its ack
        # arrives (the server commits, then answers the sync and the send in either order), so a send counts as
        # this device's from the moment it is written: _sending holds the client ids in flight, by request id.
        # _own holds acked ones the cursor has not reached yet (a gap before them), to skip when sync brings them.
        self._sending: dict[int, str] = {}
        self._sending_ids: collections.Counter[str] = collections.Counter()
        self._own: set[str] = set()
        # A live message that skips ahead waits up to gap_wait seconds for the missing ones before a sync is asked.
        self._gap_wait = gap_wait
        self._held = GapBuffer(self.cursors)
        self._gap_timers: dict[str, asyncio.TimerHandle] = {}
        self.gap_stats = {"filled_live": 0, "synced": 0}
        """Gaps closed by a late push while waiting, and sync rounds that gaps asked for (after the wait, or at
        once); gaps found while a round is already waiting to run share it."""
        # One sync at a time (a gap, a resync and the client's own sync may overlap); requests that arrive while one
        # runs are folded into one more round after it.
        self._sync_lock = asyncio.Lock()
        self._sync_wanted = False
        self._sync_task: asyncio.Task[None] | None = None
        self._reader_task = asyncio.get_running_loop().create_task(self._read_loop())

    # ------------------------------------------------------------------------------------------ opening

    @classmethod
    async def open(
        cls,
        url: str,
        token: str,
        *,
        transport: Transport = "ws",
        tcp_port: int | None = None,
        device: str | None = None,
        max_frame: int = 1 << 24,
        cursors: CursorTracker | None = None,
        ws_url: str | None = None,
        tcp_host: str | None = None,
        gap_wait: float = GAP_WAIT,
        ssl: SSLContext | None = None,
    ) -> PicaConnection:
        """``url`` is the server's HTTP base URL; for ``tcp`` give ``tcp_port`` (host taken from the URL unless
        ``tcp_host`` is given). ``ws_url`` overrides the WebSocket URL derived from ``url`` (``GET /v1/gateway``
        gives it). ``cursors`` carries per-conversation positions over from an earlier connection. ``gap_wait``: how
        long a live message that skips ahead waits for the missing ones before a sync (0: sync at once).

        An ``https://`` URL means TLS on both transports (``wss://``, and TLS on the TCP gateway), with the server's
        certificate verified: against ``ssl``'s CAs if given, else the system's (``SSL_CERT_FILE`` adds one)."""
        wire = await cls.dial(url, transport=transport, tcp_port=tcp_port, max_frame=max_frame, ws_url=ws_url,
                              tcp_host=tcp_host, ssl=ssl)
        try:
            await wire.write(f.Auth(token=token, device=device))
            first = await wire.read()
        except BaseException:
            await wire.close()
            raise
        if isinstance(first, f.Ready):
            return cls(wire, first, cursors, gap_wait)
        code = None
        reason = ""
        if isinstance(first, f.Error):
            reason = f"{first.code}: {first.message}"
            try:
                nxt = await wire.read()
                if isinstance(nxt, f.Close):
                    code = nxt.code
            except ServerClosed as closed:
                code = closed.code
            except (InvalidFrame, UnknownFrame, ConnectionError):
                pass
        await wire.close()
        raise ServerClosed(code, reason or f"unexpected first frame {first!r}")

    @staticmethod
    async def dial(
        url: str, *, transport: Transport = "ws", tcp_port: int | None = None, max_frame: int = 1 << 24,
        ws_url: str | None = None, tcp_host: str | None = None, ssl: SSLContext | None = None,
    ) -> Any:
        """An unauthenticated wire (tests use it to speak raw frames)."""
        parts = urlsplit(url)
        host = tcp_host or parts.hostname or "127.0.0.1"
        secure = parts.scheme == "https"
        if transport == "tcp":
            if tcp_port is None:
                raise ValueError("tcp transport needs tcp_port")
            tls: SSLContext | None = (ssl or create_default_context()) if secure else None
            reader, writer = await asyncio.open_connection(host, tcp_port, ssl=tls,
                                                           server_hostname=host if tls else None)
            return _TcpWire(reader, writer, max_frame)
        encoding = Encoding.MSGPACK if transport == "ws-msgpack" else Encoding.JSON
        session = aiohttp.ClientSession()
        scheme = "wss" if secure else "ws"
        target = ws_url or f"{scheme}://{parts.netloc}/v1/ws"
        try:
            ws = await session.ws_connect(target, max_msg_size=max_frame, autoping=True,
                                          ssl=ssl if ssl is not None else True)
        except BaseException:
            await session.close()
            raise
        return _WsWire(session, ws, encoding)

    async def __aenter__(self) -> PicaConnection:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        for timer in self._gap_timers.values():
            timer.cancel()
        self._gap_timers.clear()
        self._reader_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader_task
        if self._sync_task is not None:
            self._sync_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._sync_task
        with contextlib.suppress(Exception):
            await self._wire.close()

    # ------------------------------------------------------------------------------------------ reading

    async def _read_loop(self) -> None:
        try:
            while True:
                try:
                    frame = await self._wire.read()
                except UnknownFrame:
                    continue  # a frame type newer than this client: ignore it, as the protocol asks
                ref = getattr(frame, "ref", None)
                if isinstance(frame, f.Ping):
                    await self._wire.write(f.Pong(ref=frame.id))
                elif ref is not None and ref in self._pending and not isinstance(frame, f.Msg):
                    future = self._pending.pop(ref)
                    self._send_answered(ref, frame)
                    if not future.done():
                        if isinstance(frame, f.Error):
                            future.set_exception(RequestFailed(frame))
                        else:
                            future.set_result(frame)
                elif isinstance(frame, f.Msg):
                    await self._on_live_message(frame)
                elif isinstance(frame, f.Resync):
                    self.request_sync()
                    self.events.put_nowait(frame)
                elif isinstance(frame, f.Close):
                    raise ServerClosed(frame.code, frame.reason)
                else:
                    self.events.put_nowait(frame)
        except ServerClosed as exc:
            self._fail_all(exc)
        except (ConnectionError, InvalidFrame, UnknownFrame, FrameTooLarge) as exc:
            self._fail_all(ServerClosed(None, str(exc)))

    def _fail_all(self, exc: ServerClosed) -> None:
        self.closed = exc
        for future in self._pending.values():
            if not future.done():
                future.set_exception(exc)
        self._pending.clear()
        self.events.put_nowait(exc)

    async def _on_live_message(self, msg: f.Msg) -> None:
        self.events.put_nowait(msg)
        verdict = self.cursors.accept(msg)
        if verdict is Verdict.NEW:
            self._hand_out(msg)
            self._release(msg.conversation_id)
        elif verdict is Verdict.GAP:
            self._hold_or_sync(msg)

    def _hold_or_sync(self, msg: f.Msg) -> None:
        if not self._hold(msg) and self.request_sync():
            self.gap_stats["synced"] += 1

    def _hold(self, msg: f.Msg) -> bool:
        """Hold a message that skips ahead, and start the conversation's wait unless it runs already."""
        if self._gap_wait <= 0 or not self._held.hold(msg):
            return False
        self._start_gap_timer(msg.conversation_id)
        return True

    def _start_gap_timer(self, conversation_id: str) -> None:
        if conversation_id not in self._gap_timers:
            self._gap_timers[conversation_id] = asyncio.get_running_loop().call_later(
                self._gap_wait, self._gap_expired, conversation_id)

    def _release(self, conversation_id: str, by_sync: bool = False) -> list[f.Msg]:
        """Hand out the held messages that are now next. Nothing left held: stop waiting; a gap still open after
        a sync (messages newer than the sync saw): wait again."""
        if not self._held.waiting(conversation_id):
            return []
        released = self._held.release(conversation_id)
        for msg in released:
            self._hand_out(msg)
        if not self._held.waiting(conversation_id):
            if self._stop_waiting(conversation_id) and not by_sync:
                self.gap_stats["filled_live"] += 1
        else:
            self._start_gap_timer(conversation_id)
        return released

    def _stop_waiting(self, conversation_id: str) -> bool:
        timer = self._gap_timers.pop(conversation_id, None)
        if timer is None:
            return False
        timer.cancel()
        return True

    def _gap_expired(self, conversation_id: str) -> None:
        self._gap_timers.pop(conversation_id, None)
        if self._held.waiting(conversation_id) and self.request_sync():
            self.gap_stats["synced"] += 1

    def _hand_out(self, msg: f.Msg) -> None:
        if msg.sender == self.user_id:
            if msg.client_msg_id in self._own:
                self._own.discard(msg.client_msg_id)
                return
            if self._sending_ids[msg.client_msg_id] > 0:
                return  # synced before its ack: still this device's own message
        self._messages.put_nowait(msg)

    def _send_started(self, request_id: int, frame: Any) -> None:
        if isinstance(frame, f.Send):
            self._sending[request_id] = frame.client_msg_id
            self._sending_ids[frame.client_msg_id] += 1

    def _send_answered(self, request_id: int, reply: Any) -> None:
        """Runs in the reader as the reply arrives, before any later frame is looked at, so no sync reply
        can slip in between the ack and the cursor learning about the message."""
        cmid = self._sending.pop(request_id, None)
        if cmid is None:
            return
        self._sending_ids[cmid] -= 1
        if self._sending_ids[cmid] <= 0:
            del self._sending_ids[cmid]
        if isinstance(reply, f.Sent):
            self._note_acked(reply)

    def request_sync(self) -> bool:
        """Sync every conversation from the cursors in the background (a gap, a ``resync`` frame); what it finds
        goes to next_message() in order. Calls while a sync runs add one more round after it (one, however many
        calls). True when this call added a round, False when it was folded into one already waiting."""
        added = not self._sync_wanted
        self._sync_wanted = True
        if self._sync_task is None or self._sync_task.done():
            self._sync_task = asyncio.get_running_loop().create_task(self._background_sync())
        return added

    async def _background_sync(self) -> None:
        failures = 0
        while self._sync_wanted and self.closed is None:
            self._sync_wanted = False
            try:
                await self.sync_all()
                failures = 0
            except ServerClosed:
                return  # the connection is gone; whoever reconnects syncs
            except (RequestFailed, TimeoutError) as exc:
                if isinstance(exc, RequestFailed) and not exc.retryable:
                    return
                failures += 1
                if failures > _SYNC_RETRIES:
                    return  # the next gap or resync tries again
                self._sync_wanted = True
                await asyncio.sleep(min(2.0, 0.1 * 2**failures))

    # ------------------------------------------------------------------------------------------ requests

    async def request(self, frame: Any, timeout: float = 30.0) -> Any:
        if self.closed is not None:
            raise self.closed
        request_id = next(self._ids)
        frame.id = request_id
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        self._send_started(request_id, frame)
        try:
            await self._wire.write(frame)
            async with asyncio.timeout(timeout):  # not wait_for: see next_message
                return await future
        finally:
            self._pending.pop(request_id, None)
            self._send_answered(request_id, None)  # no reply (cut, timed out): no longer in flight
            # Leaving early (the write failed, or was cut): nobody waits for this reply any more.
            if not future.done():
                future.cancel()
            elif not future.cancelled():
                future.exception()  # seen: the connection's failure is reported by the write instead

    async def send(self, to: int, body: dict[str, Any], client_msg_id: str | None = None) -> f.Sent:
        frame = f.Send(to=to, client_msg_id=client_msg_id or uuid.uuid4().hex, body=body)
        result: f.Sent = await self.request(frame)
        return result

    def note_own(self, sent: f.Sent) -> None:
        """A message this device sent was acked. Acks of sends made through this connection are noted as they
        arrive; call this for one that was acked on an earlier connection (the send was retried across a
        reconnect). Noting the same ack twice changes nothing."""
        self._note_acked(sent)

    def _note_acked(self, sent: f.Sent) -> None:
        """Advance the cursor past the acked message or, when messages before it are still missing, remember it
        so that the sync filling the gap does not hand it out. Already past it: nothing to do."""
        own = f.Msg(conversation_id=sent.conversation_id, seq=sent.seq, sender=self.user_id,
                    client_msg_id=sent.client_msg_id, ts=sent.ts, body={})
        verdict = self.cursors.accept(own)
        if verdict is Verdict.NEW:
            self._release(sent.conversation_id)
        elif verdict is Verdict.GAP:
            self._own.add(sent.client_msg_id)
            self._hold(own)  # like a live push: once the messages before it arrive, the cursor moves past it

    async def write_frame(self, frame: Any) -> None:
        """Send a frame that has no reply (typing, recv)."""
        await self._wire.write(frame)

    async def sync(self, cursors: dict[str, int] | None = None, limit: int | None = None) -> f.Synced:
        result: f.Synced = await self.request(f.Sync(cursors=cursors if cursors is not None else {}, limit=limit))
        return result

    async def sync_all(self, limit: int | None = None) -> list[f.Msg]:
        """Sync from this connection's cursors until nothing is left; new messages also go to next_message()."""
        fresh: list[f.Msg] = []
        async with self._sync_lock:
            held_before = self._held.mark()
            while True:
                page = await self.sync(self.cursors.snapshot(), limit)
                for msg in page.msgs:
                    if self.cursors.accept_synced(msg) is Verdict.NEW:
                        fresh.append(msg)
                        self._hand_out(msg)
                for conversation_id in self._held.conversations():
                    fresh.extend(self._release(conversation_id, by_sync=True))
                if not page.more:
                    self._held.forget(held_before)
                    for conversation_id in held_before:
                        if not self._held.waiting(conversation_id):
                            self._stop_waiting(conversation_id)
                    return fresh

    async def history(self, conversation_id: str, *, before: int | None = None, after: int | None = None,
                      limit: int | None = None) -> f.Page:
        result: f.Page = await self.request(
            f.History(conversation_id=conversation_id, before=before, after=after, limit=limit)
        )
        return result

    async def ack_received(self, conversation_id: str, seq: int) -> None:
        await self._wire.write(f.Recv(conversation_id=conversation_id, seq=seq))

    async def ping(self) -> None:
        await self.request(f.Ping())

    async def next_message(self, timeout: float = 10.0) -> f.Msg:
        """The next message in order (live or synced), once each."""
        if self.closed is not None and self._messages.empty():
            raise self.closed
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for returns the result and drops a cancellation that
        # arrives as the message does, so a loop around this call (the SDK's pump) outlived its close and hung it.
        async with asyncio.timeout(timeout):
            return await self._messages.get()

    async def next_event(self, kind: type[Any], timeout: float = 10.0) -> Any:
        """The next pushed frame of a type (msg, receipt, ...), skipping others."""
        async with asyncio.timeout(timeout):
            while True:
                event = await self.events.get()
                if isinstance(event, ServerClosed):
                    raise event
                if isinstance(event, kind):
                    return event

    async def write_raw(self, data: bytes | str) -> None:
        """Send bytes as they are (tests of malformed input)."""
        await self._wire.write_raw(data)  # type: ignore[attr-defined]
