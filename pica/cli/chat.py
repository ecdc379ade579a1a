"""``pica chat``: a line-oriented terminal chat built on the SDK (:class:`pica.client.PicaClient`).

The SDK keeps the connection up (reconnect with backoff, sync from cursors, sends retried with their client message
id), so this module only turns events into lines and lines into requests. Four tasks run side by side: one prints
server events, one runs the user's commands, one sends messages one at a time (so they are stored in the order they
were typed, even when they wait out a reconnection), one batches delivery receipts. Input and the prompt are
:mod:`pica.cli.terminal`'s, names :mod:`pica.cli.directory`'s, message text :mod:`pica.cli.render`'s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import os
import signal
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

import aiohttp

from pica.cli.directory import Conv, Directory, Opened, UnknownUser, direct_id
from pica.cli.organize import OrganizeCommands, flags, list_order
from pica.cli.render import CONTACT_STATES, HELP, clock, content, links, notice, table
from pica.cli.terminal import EOF, INTERRUPT, Terminal
from pica.client import (
    Backoff,
    Connected,
    ContactEvent,
    ConversationStateEvent,
    CursorTracker,
    Disconnected,
    Event,
    GaveUp,
    MessageEvent,
    PicaClient,
    PicaHttpError,
    PresenceEvent,
    ReceiptEvent,
    RequestFailed,
    TypingEvent,
)
from pica.protocol import frames as f
from pica.protocol.bodies import counts_as_unread

PAGE: Final = 20
"""Messages shown by /open and each /more."""
TYPING_EVERY: Final = 1.0
"""Least seconds between two typing notices we send (the server drops faster ones anyway)."""
TYPING_QUIET: Final = 5.0
"""Seconds during which a peer's further typing notices in one conversation are not shown again."""
SEND_TIMEOUT: Final = 24 * 3600.0
"""A message typed while disconnected waits for the reconnection, however long it takes."""

class ChatApp(OrganizeCommands):
    def __init__(self, client: PicaClient, username: str, terminal: Terminal | None = None) -> None:
        self.client = client
        self.username = username.lower()
        self.term = terminal or Terminal(self._on_edit)
        self.dir = Directory(client)
        self.listed: list[str] = []
        self.opened: Opened | None = None
        self.exit_code = 0
        self._done = asyncio.Event()
        self._outbox: asyncio.Queue[tuple[Conv, dict[str, Any]]] = asyncio.Queue()
        self._received: dict[str, int] = {}
        self._read_sent: dict[str, int] = {}
        """Per conversation, the seq up to which this chat has marked it read (or the server did, for a send)."""
        self._presence: dict[int, bool] = {}
        self._typing_sent = 0.0
        self._typing_seen: dict[tuple[str, int], float] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sending = 0

    # ------------------------------------------------------------------------------------------ lifecycle

    async def run(self) -> int:
        self.term.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGHUP):  # leave cleanly: the terminal must not stay in raw mode
            with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):
                loop.add_signal_handler(sig, self._done.set)
        try:
            return await self._run()
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self.client.close()
            await self.term.stop()

    async def _run(self) -> int:
        try:
            login = await self.client.login()
            self.dir.me = login.user_id
            self.dir.names[self.dir.me] = self.username
            conversations = await self.dir.all_conversations()
            cursors = {c["conversation_id"]: int(c["last_seq"]) for c in conversations}
            cursors.update(await self._own_timeline())
        except PicaHttpError as exc:
            return self.fail(f"login failed: {exc.message} ({exc.code})")
        except (aiohttp.ClientError, OSError) as exc:
            return self.fail(f"cannot reach {self.client.url}: {exc}")
        # Start at the present: without cursors the SDK's first sync would hand over (and we would print) every
        # message ever received. Older messages are one /open or /more away.
        self.client.cursors = CursorTracker(cursors)
        try:
            await self.client.start()
        except (GaveUp, TimeoutError) as exc:
            return self.fail(f"cannot connect: {exc or 'timed out'}")
        self.say(f"connected to {self.client.url} as {self.username} (#{self.dir.me}); /help lists the commands")
        await self._show_list(conversations[:PAGE])
        for job in (self._events(), self._input(), self._sender(), self._flush_received()):
            self._spawn(job)
        await self._done.wait()
        await self._drain_outbox()
        return self.exit_code

    async def _own_timeline(self) -> dict[str, int]:
        """The cursor of my own timeline ``u:<id>`` (notices such as "deleted for me"), which the list leaves out."""
        try:
            page = await self.client.http.history(f"u:{self.dir.me}", limit=1)
        except PicaHttpError as exc:
            if exc.code == "conversation_not_found":
                return {}
            raise
        return {str(m["conversation_id"]): int(m["seq"]) for m in page["messages"]}

    def fail(self, message: str) -> int:
        self.term.error(f"pica: {message}")
        self.exit_code = 1
        self._done.set()
        return 1

    def say(self, text: str) -> None:
        self.term.print(text)

    def _spawn(self, job: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(job)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drain_outbox(self) -> None:
        """On /quit or end of input, give messages typed just before a little time to be stored."""
        if (self._outbox.empty() and not self._sending) or self.client.failure is not None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                await self._outbox.join()
                return
        self.say(f"! {self._outbox.qsize() + self._sending} message(s) not sent")

    # ------------------------------------------------------------------------------------------ server events

    async def _events(self) -> None:
        async for event in self.client:
            try:
                await self._on_event(event)
            except Exception as exc:  # one event that cannot be shown must not end the chat
                self.say(f"! could not show {type(event).__name__}: {exc}")

    async def _on_event(self, event: Event) -> None:
        if isinstance(event, MessageEvent):
            await self._on_message(event.message)
        elif isinstance(event, Connected):
            if event.reconnect:
                self.say("… connected")
        elif isinstance(event, Disconnected):
            if event.will_retry:
                self.say(f"… reconnecting ({event.reason or 'connection lost'})")
            else:
                self.fail(f"disconnected: {self.client.failure or event.reason}")
        elif isinstance(event, ReceiptEvent):
            self._on_receipt(event.receipt)
        elif isinstance(event, PresenceEvent):
            p = event.presence
            if self._presence.get(p.user_id) != p.online:
                self._presence[p.user_id] = p.online
                await self.dir.resolve([p.user_id])
                who = self.dir.name_of(p.user_id)
                self.say(f"● {who} online" if p.online else f"○ {who} offline")
        elif isinstance(event, TypingEvent):
            await self._on_typing(event.typing)
        elif isinstance(event, ConversationStateEvent):
            await self.on_state(event.state)
        elif isinstance(event, ContactEvent):
            await self.dir.resolve([event.contact.user_id])
            who, state = self.dir.name_of(event.contact.user_id), event.contact.state
            self.say(CONTACT_STATES.get(state, "* {who}: contact state {state}").format(who=who, state=state))

    async def _on_message(self, msg: f.Msg) -> None:
        cid = msg.conversation_id
        self._received[cid] = max(self._received.get(cid, 0), msg.seq)
        self._typing_seen.pop((cid, msg.sender), None)
        conv = await self.dir.conv(cid)
        system = msg.body.get("system")
        if isinstance(system, dict) and system.get("event") in ("created", "renamed") and conv.kind == "group":
            conv.name = f"#{conv.group_id} {system.get('name', '')}"
        await self._resolve([msg])
        opened = self.opened
        if opened is not None and opened.conv.conversation_id == cid:
            self.term.set_prompt(f"[{conv.name}]> ")  # a rename shows at once
            opened.last_seq = max(opened.last_seq, msg.seq)
            if msg.sender == self.dir.me:
                opened.mine.add(msg.seq)
                self._read_sent[cid] = max(self._read_sent.get(cid, 0), msg.seq)  # sending marks read
        # The time as history shows it: a line read later in the scrollback still says when it came.
        self.say(f"{clock(msg.ts)} [{conv.name}] {self._line(msg)}")

    async def _resolve(self, messages: list[f.Msg]) -> None:
        """Learn the names of everyone these messages name (senders, and the people of group notices), so that no
        line shows a ``user#ID`` the server could have named."""
        ids: list[int] = []
        for msg in messages:
            ids.append(msg.sender)
            event = msg.body.get("system")
            if isinstance(event, dict):
                named = [event.get("by"), event.get("user_id"), *(event.get("user_ids") or [])]
                ids.extend(i for i in named if isinstance(i, int) and not isinstance(i, bool))
            origin = msg.body.get("forwarded")
            if isinstance(origin, dict) and isinstance(origin.get("sender"), int):
                ids.append(origin["sender"])
        await self.dir.resolve(ids)

    def _line(self, msg: f.Msg) -> str:
        sender = self.dir.name_of(msg.sender)
        origin = msg.body.get("forwarded")
        if isinstance(origin, dict) and isinstance(origin.get("sender"), int):
            sender = f"{sender} ↪ {self.dir.name_of(origin['sender'])}"  # forwarded: the first author after the arrow
        before, after = links(msg.body, self.dir.name_of)
        return notice(sender, msg.body, self.dir.name_of) or f"{sender}: {before}{content(msg.body)}{after}"

    def _on_receipt(self, receipt: f.Receipt) -> None:
        opened = self.opened
        if receipt.user_id == self.dir.me or opened is None or opened.conv.conversation_id != receipt.conversation_id:
            return
        # Read first: a read receipt carries the delivered cursor too, and what is read needs no "delivered" line.
        if receipt.read is not None and receipt.read > opened.read:
            if any(opened.read < s <= receipt.read for s in opened.mine):
                self.say(f"✓✓ read up to #{receipt.read}")
            opened.read = receipt.read
            opened.delivered = max(opened.delivered, receipt.read)
        if receipt.delivered is not None and receipt.delivered > opened.delivered:
            if any(opened.delivered < s <= receipt.delivered for s in opened.mine) and receipt.delivered > opened.read:
                self.say(f"✓ delivered up to #{receipt.delivered}")
            opened.delivered = receipt.delivered

    async def _on_typing(self, typing: f.Typing) -> None:
        user_id = typing.user_id
        if user_id is None or user_id == self.dir.me:
            return
        key = (typing.conversation_id, user_id)
        now = time.monotonic()
        if now - self._typing_seen.get(key, -TYPING_QUIET) < TYPING_QUIET:
            return
        self._typing_seen[key] = now
        await self.dir.resolve([user_id])
        who, opened = self.dir.name_of(user_id), self.opened
        if opened is not None and opened.conv.conversation_id == typing.conversation_id:
            self.say(f"… {who} is typing")
        else:
            self.say(f"… {who} is typing in [{(await self.dir.conv(typing.conversation_id)).name}]")

    def _on_edit(self, buffer: str) -> None:
        """The user typed into the input line: tell the open conversation, at most once a second."""
        opened = self.opened
        now = time.monotonic()
        if opened is None or buffer.startswith("/") or now - self._typing_sent < TYPING_EVERY:
            return
        self._typing_sent = now
        self._spawn(self.client.typing(opened.conv.conversation_id))

    async def _flush_received(self) -> None:
        """Receipts, batched: one ``recv`` per conversation for what arrived in the last moment, and ``read`` for the
        open conversation, whose lines are on the screen the user is looking at."""
        while True:
            await asyncio.sleep(0.3)
            if not self.client.connected:
                continue  # kept for after the reconnection
            pending, self._received = self._received, {}
            for cid, seq in pending.items():
                await self.client.mark_received(cid, seq)
            await self._mark_open_read()

    async def _mark_open_read(self) -> None:
        opened = self.opened
        if opened is None:
            return
        cid, seq = opened.conv.conversation_id, opened.last_seq
        if seq <= self._read_sent.get(cid, 0):
            return
        try:
            async with asyncio.timeout(5):  # the delivery receipts wait for this loop
                await self.client.mark_read(cid, seq)
        except (RequestFailed, TimeoutError, GaveUp):
            return  # tried again at the next flush
        self._read_sent[cid] = max(self._read_sent.get(cid, 0), seq)

    # ------------------------------------------------------------------------------------------ sending

    async def _sender(self) -> None:
        while True:
            conv, body = await self._outbox.get()
            self._sending = 1
            try:
                sent = await self.client.send(to=conv.peer_id if conv.kind != "group" else None,
                                              group_id=conv.group_id if conv.kind == "group" else None,
                                              body=body, timeout=SEND_TIMEOUT)
            except RequestFailed as exc:
                self.say(f"✗ not sent to [{conv.name}]: {exc.message} ({exc.code})")
            except (TimeoutError, OSError, GaveUp) as exc:
                self.say(f"✗ not sent to [{conv.name}]: {exc or 'timed out'}")
            else:
                opened = self.opened
                here = opened is not None and opened.conv.conversation_id == conv.conversation_id
                if opened is not None and here:
                    opened.mine.add(sent.seq)
                    opened.last_seq = max(opened.last_seq, sent.seq)
                cid = conv.conversation_id
                self._read_sent[cid] = max(self._read_sent.get(cid, 0), sent.seq)  # sending marks read
                self.say(f"  ✓ sent #{sent.seq}" + ("" if here else f" to [{conv.name}]"))
            finally:
                self._sending = 0
                self._outbox.task_done()

    def _queue_send(self, text: str) -> None:
        self._queue_body({"text": text})

    def _queue_body(self, body: dict[str, Any]) -> None:
        opened = self.opened
        if opened is None:
            self.say("! no conversation is open: /open NAME first (/help for more)")
            return
        if not self.client.connected:
            self.say("… not connected: it will be sent after the reconnection")
        self._outbox.put_nowait((opened.conv, body))
        self._typing_sent = 0.0  # the message ends the peer's "is typing": the next key may announce a new one

    # ------------------------------------------------------------------------------------------ commands

    async def _input(self) -> None:
        while True:
            line = await self.term.lines.get()
            if line in (EOF, INTERRUPT):
                self.exit_code = 130 if line == INTERRUPT else 0
                self._done.set()
                return
            line = line.strip()
            if not line:
                continue
            if not line.startswith("/") or line.startswith("//"):
                self._queue_send(line[1:] if line.startswith("//") else line)
                continue
            name, _, rest = line[1:].partition(" ")
            if name in ("quit", "q", "exit"):
                self._done.set()
                return
            command = self._commands().get(name)
            if command is None:
                self.say(f"! unknown command /{name}; /help lists them")
                continue
            try:
                await command(rest.strip())
            except UnknownUser as exc:
                self.say(str(exc))
            except (PicaHttpError, RequestFailed) as exc:
                self.say(f"! {exc.message} ({exc.code})")
            except (aiohttp.ClientError, OSError, TimeoutError):
                self.say("! the server cannot be reached right now; try again in a moment")
            except Exception as exc:  # a failed command must not end the input loop (the chat would hang)
                self.say(f"! /{name} failed: {type(exc).__name__}: {exc}")

    def _commands(self) -> dict[str, Callable[[str], Awaitable[None]]]:
        return {"list": self.cmd_list, "open": self.cmd_open, "more": self.cmd_more, "who": self.cmd_who,
                "group": self.cmd_group, "add": self.cmd_add, "read": self.cmd_read, "send": self.cmd_send,
                "save": self.cmd_save, "help": self.cmd_help, "react": self.cmd_react, "unreact": self.cmd_unreact,
                "reply": self.cmd_reply, "thread": self.cmd_thread, "unpreview": self.cmd_unpreview,
                **self.organize_commands()}

    async def cmd_help(self, _: str) -> None:
        self.say(HELP)

    async def cmd_list(self, _: str) -> None:
        await self._show_list(list_order(await self.dir.all_conversations())[:50])

    async def _show_list(self, conversations: list[dict[str, Any]]) -> None:
        self.listed = [str(c["conversation_id"]) for c in conversations]
        if not conversations:
            self.say("no conversations yet: /open NAME starts one")
            return
        lasts = {str(c["conversation_id"]): _msg(c["last_message"]) for c in conversations if c.get("last_message")}
        await self._resolve(list(lasts.values()))
        rows = []
        for n, c in enumerate(conversations, 1):
            cid = str(c["conversation_id"])
            last = lasts.get(cid)
            text = ""
            if last is not None:
                text = f"{clock(last.ts)} {self._line(last)}"
                text = text if len(text) <= 60 else text[:59] + "…"
            rows.append((n, f"{self.dir.convs[cid].name} {flags(c.get('settings'), int(time.time() * 1000))}".strip(),
                         await self._unread(c), text))
        self.say(table(("#", "CONVERSATION", "UNREAD", "LAST MESSAGE"), rows))

    async def _unread(self, summary: dict[str, Any]) -> str:
        """What is new to read in a conversation: its messages after my read cursor that count
        (:func:`counts_as_unread`: not my own, not an edit or a recall). The server's ``unread`` counts every seq,
        so the messages after the cursor are read (one page; beyond it, "N+"); the open one is being read."""
        cid = str(summary["conversation_id"])
        opened = self.opened
        read = max(int(summary.get("read_seq") or 0), self._read_sent.get(cid, 0))
        if opened is not None and opened.conv.conversation_id == cid:
            read = max(read, opened.last_seq)
        if read >= int(summary["last_seq"]):
            return "0"
        try:
            page = await self.client.http.history(cid, after_seq=read, limit=100)
        except PicaHttpError:
            return str(max(0, int(summary["last_seq"]) - read))
        count = sum(counts_as_unread(m["body"], int(m["sender"]), self.dir.me) for m in page["messages"])
        return f"{count}+" if page.get("more") else str(count)

    async def cmd_open(self, arg: str) -> None:
        if not arg:
            self.say("! usage: /open NAME | /open #GROUP_ID | /open N")
            return
        if arg.startswith("#"):
            group_id = int(arg[1:]) if arg[1:].isdigit() else 0
            group = next((g for g in await self.client.groups() if g["group_id"] == group_id), None)
            if group is None:
                self.say(f"! no group {arg} among yours")
                return
            conv = await self.dir.conv(str(group["conversation_id"]))
            conv.name = f"#{group_id} {group['name']}"
        elif arg.isdigit() and 1 <= int(arg) <= len(self.listed):
            conv = await self.dir.conv(self.listed[int(arg) - 1])
        elif len(arg.split()) > 1 or "," in arg:
            self.say("! usage: /open NAME | /open #GROUP_ID | /open N")
            return
        else:
            (peer,) = await self.dir.user_ids(arg)
            conv = await self.dir.conv(direct_id(self.dir.me, peer))
            conv.name = self.dir.name_of(peer)
        await self._open(conv)

    async def _open(self, conv: Conv, *, history: bool = True) -> None:
        self.opened = opened = Opened(conv, delivered=conv.peer_delivered, read=conv.peer_read)
        self.term.set_prompt(f"[{conv.name}]> ")
        self.say(f"── {conv.name} ──")
        if not history:
            return
        if not self.client.connected:
            self.say("(not connected: /more shows the messages once the connection is back)")
            opened.more = True
            return
        try:
            page = await self.client.history(conv.conversation_id, limit=PAGE)
        except RequestFailed as exc:
            if exc.code != "conversation_not_found":
                raise
            self.say("(no messages yet)")
            return
        await self._show_page(opened, page)
        if not page.msgs:
            self.say("(no messages yet)")

    async def _show_page(self, opened: Opened, page: f.Page) -> None:
        await self._resolve(page.msgs)
        for msg in page.msgs:
            if msg.sender == self.dir.me:
                opened.mine.add(msg.seq)
            opened.last_seq = max(opened.last_seq, msg.seq)
            self.say(f"  #{msg.seq} {clock(msg.ts)} {self._line(msg)}")
        if page.msgs:
            opened.oldest = page.msgs[0].seq
        opened.more = page.more
        if page.more:
            self.say("  (older messages: /more)")

    async def cmd_more(self, _: str) -> None:
        opened = self.opened
        if opened is None:
            self.say("! no conversation is open")
            return
        if not opened.more:
            self.say("(no older messages)")
            return
        page = await self.client.history(opened.conv.conversation_id, before=opened.oldest or None, limit=PAGE)
        self.say(f"── older messages of [{opened.conv.name}] ──")
        await self._show_page(opened, page)
        if not page.more:
            self.say("  (beginning of the conversation)")

    async def cmd_who(self, _: str) -> None:
        opened = self.opened
        if opened is None:
            self.say("! no conversation is open")
            return
        conv = opened.conv
        if conv.kind == "group":
            ids = [int(m["user_id"]) for m in await self.client.group_members(conv.group_id)]
        else:
            ids = [conv.peer_id]
        ids = [i for i in ids if i != self.dir.me][:500]
        seen = {int(p["user_id"]): p for p in await self.client.presence(ids)} if ids else {}
        await self.dir.resolve(ids)
        for user_id in ids:
            p = seen.get(user_id)
            if p is None:
                self.say(f"? {self.dir.name_of(user_id)}: presence not shared with you")
            elif p["online"]:
                self.say(f"● {self.dir.name_of(user_id)} online")
            else:
                self.say(f"○ {self.dir.name_of(user_id)} offline, last seen {clock(int(p['last_seen']))}")

    async def cmd_group(self, arg: str) -> None:
        name, _, members = arg.rpartition(" ")
        if not name.strip() or not members:
            self.say("! usage: /group NAME user1,user2")
            return
        ids = await self.dir.user_ids(members)
        group = await self.client.create_group(name.strip(), ids)
        conv = Conv(str(group["conversation_id"]), f"#{group['group_id']} {group['name']}", "group",
                    group_id=int(group["group_id"]))
        self.dir.convs[conv.conversation_id] = conv
        self.say(f"created group #{group['group_id']} {group['name']} ({group['member_count']} members)")
        await self._open(conv, history=False)

    async def cmd_add(self, arg: str) -> None:
        opened = self.opened
        if opened is None or opened.conv.kind != "group":
            self.say("! open a group first: /open #GROUP_ID")
            return
        if not arg:
            self.say("! usage: /add USER...")
            return
        group = await self.client.add_members(opened.conv.group_id, await self.dir.user_ids(arg))
        self.say(f"added to [{opened.conv.name}]: now {group['member_count']} members")

    async def cmd_read(self, _: str) -> None:
        opened = self.opened
        if opened is None or opened.last_seq == 0:
            self.say("! nothing to mark read")
            return
        await self.client.mark_read(opened.conv.conversation_id, opened.last_seq)
        cid = opened.conv.conversation_id
        self._read_sent[cid] = max(self._read_sent.get(cid, 0), opened.last_seq)
        self.say(f"marked read up to #{opened.last_seq}")


    async def cmd_send(self, arg: str) -> None:
        """/send PATH [caption]: upload a file (streamed from disk) and send it to the open conversation."""
        if self.opened is None:
            self.say("! no conversation is open: /open NAME first (/help for more)")
            return
        name, _, caption = arg.partition(" ")
        path = Path(name)
        if not name or not await asyncio.to_thread(path.is_file):
            self.say("! usage: /send PATH [caption] (a file that exists)")
            return
        self.say(f"… uploading {path.name}")
        info = await self.client.http.upload(path)
        kind = "image" if str(info["content_type"]).startswith("image/") and info.get("width") else "file"
        body: dict[str, Any] = {kind: {"id": info["file_id"]}}
        if caption.strip():
            body["text"] = caption.strip()
        self._queue_body(body)

    async def cmd_save(self, arg: str) -> None:
        """/save SEQ [PATH]: save the file of message #SEQ of the open conversation (to its name, or PATH)."""
        opened = self.opened
        seq_text, _, target = arg.partition(" ")
        if opened is None or not seq_text.lstrip("#").isdigit():
            self.say("! usage: /save SEQ [PATH], in an open conversation (SEQ is the #number of the message)")
            return
        seq = int(seq_text.lstrip("#"))
        page = await self.client.http.history(opened.conv.conversation_id, after_seq=seq - 1, limit=1)
        found = [m for m in page["messages"] if int(m["seq"]) == seq]
        ref = next((found[0]["body"][k] for k in ("file", "image", "voice") if found and k in found[0]["body"]), None)
        if not isinstance(ref, dict):
            self.say(f"! message #{seq} has no file")
            return
        # The sender's name, never a path of theirs: a name like "../x" is cut to its last part by the server too.
        path = Path(target.strip() or Path(str(ref.get("name") or "file")).name)
        if await asyncio.to_thread(path.exists):
            self.say(f"! {path} exists already: /save {seq} OTHER_PATH")
            return
        data = await self.client.http.download(str(ref["id"]), path)
        self.say(f"saved {path} ({len(data)} bytes)")

    # ------------------------------------------------------------------------------------------ reactions, threads

    def _numbered(self, arg: str, usage: str) -> tuple[Opened, int, str] | None:
        """The open conversation, message number N and the rest of ``/command N REST``; None (said why) otherwise."""
        opened = self.opened
        number, _, rest = arg.partition(" ")
        if opened is None or not number.lstrip("#").isdigit():
            self.say(f"! usage: {usage}, in an open conversation (N is the #number of the message)")
            return None
        return opened, int(number.lstrip("#")), rest.strip()

    async def cmd_react(self, arg: str, *, remove: bool = False) -> None:
        """/react N EMOJI: react to message #N of the open conversation."""
        found = self._numbered(arg, "/unreact N EMOJI" if remove else "/react N EMOJI")
        if found is None or not found[2]:
            if found is not None:
                self.say("! which emoji? /react N EMOJI")
            return
        opened, seq, emoji = found
        await self.client.react(opened.conv.conversation_id, seq, emoji, remove=remove)

    async def cmd_unreact(self, arg: str) -> None:
        await self.cmd_react(arg, remove=True)

    async def cmd_reply(self, arg: str) -> None:
        """/reply N TEXT: send TEXT to the open conversation, quoting message #N."""
        found = self._numbered(arg, "/reply N TEXT")
        if found is not None and found[2]:
            self._queue_body({"text": found[2], "reply": {"seq": found[1]}})
        elif found is not None:
            self.say("! what to reply? /reply N TEXT")

    async def cmd_thread(self, arg: str) -> None:
        """/thread N: show the thread under group message #N; /thread N TEXT: write TEXT in it."""
        found = self._numbered(arg, "/thread N [TEXT]")
        if found is None:
            return
        opened, root, text = found
        if text:
            self._queue_body({"text": text, "thread": {"root": root}})
            return
        page = await self.client.thread(opened.conv.conversation_id, root, limit=PAGE)
        await self._resolve(page.msgs)
        self.say(f"── thread #{root} of [{opened.conv.name}] ──")
        for msg in page.msgs:
            self.say(f"  #{msg.seq} {clock(msg.ts)} {self._line(msg)}")
        if not page.msgs:
            self.say("(no messages in this thread yet: /thread N TEXT starts it)")
        else:
            await self.client.mark_thread_read(opened.conv.conversation_id, root, page.msgs[-1].seq)

    async def cmd_unpreview(self, arg: str) -> None:
        """/unpreview SEQ: remove the link preview of my message #SEQ of the open conversation."""
        opened = self.opened
        if opened is None or not arg.lstrip("#").isdigit():
            self.say("! usage: /unpreview N, in an open conversation (N is the #number of my message)")
            return
        await self.client.remove_preview(opened.conv.conversation_id, int(arg.lstrip("#")))


def _msg(data: dict[str, Any]) -> f.Msg:
    """A message as the HTTP API gives it (the conversation list's ``last_message``)."""
    return f.Msg(conversation_id=str(data["conversation_id"]), seq=int(data["seq"]), sender=int(data["sender"]),
                 client_msg_id=str(data["client_msg_id"]), ts=int(data["ts"]), body=dict(data["body"]))


# ---------------------------------------------------------------------------------------------------------- command


def add_parser(sub: Any) -> None:
    p = sub.add_parser("chat", help="terminal chat client")
    p.add_argument("--url", default="http://127.0.0.1:8080", help="server base URL (default http://127.0.0.1:8080)")
    p.add_argument("--username", required=True)
    p.add_argument("--password", help="default: env PICA_PASSWORD, else asked for")
    p.add_argument("--transport", choices=["ws", "ws-msgpack", "tcp"], default="ws")
    p.add_argument("--tcp-port", type=int, default=8081, help="server TCP port for --transport tcp (default 8081)")
    p.add_argument("--dispatch", action="store_true",
                   help="ask GET /v1/gateway which node to use before each (re)connect (cluster mode)")
    p.add_argument("--seeds", default="", metavar="URL,URL",
                   help="other nodes' base URLs, tried when --url does not answer (with --dispatch)")


def run(args: argparse.Namespace) -> int:
    password = args.password or os.environ.get("PICA_PASSWORD")
    if not password:
        try:
            password = getpass.getpass(f"password for {args.username}: ")
        except (EOFError, KeyboardInterrupt):
            print("pica: no password given", file=sys.stderr)
            return 1
    client = PicaClient(args.url, username=args.username, password=password, transport=args.transport,
                        tcp_port=args.tcp_port, device=f"chat-{uuid.uuid4().hex[:8]}",
                        backoff=Backoff(base=0.25, cap=5.0),  # someone is watching: retry at least every 5 s
                        dispatch=args.dispatch, seeds=[url for url in args.seeds.split(",") if url.strip()])
    try:
        return asyncio.run(ChatApp(client, args.username).run())
    except KeyboardInterrupt:  # Ctrl-C when stdin is not a terminal (on a terminal it arrives as a key)
        return 130
