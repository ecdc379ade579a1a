"""``pica chat``'s commands for forwarding, pins, drafts and list settings (docs/protocol.md section 29), mixed into
:class:`pica.cli.chat.ChatApp`, and how the list and the ``conversation`` frame show them."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from pica.cli.directory import Directory, Opened
from pica.cli.render import clock
from pica.client import PicaClient
from pica.protocol import frames as f

Command = Callable[[str], Awaitable[None]]
_STATE = ("draft", "pinned_at", "archived", "marked_unread", "muted_until", "level")


def flags(settings: dict[str, Any] | None, now_ms: int) -> str:
    """The list's marks of my own state of a conversation: ↑ pinned to the top, ✉ marked unread, ✎ a draft,
    ⊘ muted, ▣ archived."""
    if not settings:
        return ""
    muted = settings.get("muted_until")
    marks = [("↑", bool(settings.get("pinned_at"))), ("✉", bool(settings.get("marked_unread"))),
             ("✎", bool(settings.get("draft"))), ("⊘", isinstance(muted, int) and muted > now_ms),
             ("▣", bool(settings.get("archived")))]
    return "".join(mark for mark, on in marks if on)


def list_order(conversations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pinned to the top first (the latest pin first), then the rest as the server ordered them (by activity);
    archived ones last."""
    def key(item: tuple[int, dict[str, Any]]) -> tuple[int, int, int]:
        index, c = item
        settings = c.get("settings") or {}
        return (1 if settings.get("archived") else 0, -int(settings.get("pinned_at") or 0), index)
    return [c for _, c in sorted(enumerate(conversations), key=key)]


def _seqs(text: str) -> list[int]:
    parts = [p.strip().lstrip("#") for p in text.split(",")]
    if not parts or not all(p.isdigit() for p in parts):
        raise ValueError(text)
    return [int(p) for p in parts]


class OrganizeCommands:
    """``/forward``, ``/pin``, ``/unpin``, ``/pins``, ``/draft``, ``/top``, ``/archive``, ``/unread``, ``/mute`` and
    their opposites, on the open conversation."""

    client: PicaClient
    dir: Directory
    opened: Opened | None

    def say(self, text: str) -> None:  # pragma: no cover - ChatApp's
        raise NotImplementedError

    _mine: dict[str, tuple[Any, ...]]
    """Per conversation, the state this device set last: the frame that echoes it is not shown again."""

    def organize_commands(self) -> dict[str, Command]:
        return {"forward": self.cmd_forward, "pin": self.cmd_pin, "unpin": self.cmd_unpin, "pins": self.cmd_pins,
                "draft": self.cmd_draft, "top": self._setting("pinned", True),
                "untop": self._setting("pinned", False), "archive": self._setting("archived", True),
                "unarchive": self._setting("archived", False), "unread": self._setting("marked_unread", True),
                "mute": self.cmd_mute, "unmute": self.cmd_unmute}

    def _open_id(self) -> str | None:
        if self.opened is None:
            self.say("! no conversation is open: /open NAME first (/help for more)")
            return None
        return self.opened.conv.conversation_id

    async def cmd_forward(self, arg: str) -> None:
        """/forward N[,M...] TO[,TO...]: TO is a user name or #GROUP_ID."""
        cid = self._open_id()
        seqs_text, _, targets = arg.partition(" ")
        try:
            seqs = _seqs(seqs_text)
        except ValueError:
            seqs = []
        if cid is None or not seqs or not targets.strip():
            if cid is not None:
                self.say("! usage: /forward N[,M...] USER|#GROUP_ID[,...]")
            return
        names = [t.strip() for t in targets.replace(" ", ",").split(",") if t.strip()]
        group_ids = [int(t[1:]) for t in names if t.startswith("#") and t[1:].isdigit()]
        users = [t for t in names if not t.startswith("#")]
        to = await self.dir.user_ids(",".join(users)) if users else []
        copies = await self.client.forward(cid, seqs, to=to, group_ids=group_ids)
        sent = sum("ack" in c for c in copies)
        self.say(f"forwarded {sent} of {len(copies)} copies")
        for c in copies:
            if "error" in c:
                where = f"#{c['group_id']}" if "group_id" in c else self.dir.name_of(int(c["to"]))
                self.say(f"! #{c['source_seq']} to {where}: {c['error']['message']} ({c['error']['code']})")

    async def cmd_pin(self, arg: str) -> None:
        await self._pin(arg, True)

    async def cmd_unpin(self, arg: str) -> None:
        await self._pin(arg, False)

    async def _pin(self, arg: str, pinned: bool) -> None:
        cid = self._open_id()
        if cid is None:
            return
        if not arg.lstrip("#").isdigit():
            self.say(f"! usage: /{'pin' if pinned else 'unpin'} N (the #number of the message)")
            return
        notice = await self.client.pin(cid, int(arg.lstrip("#")), pinned)
        if notice is None:
            self.say(f"(message #{arg.lstrip('#')} was {'pinned' if pinned else 'not pinned'} already)")

    async def cmd_pins(self, _: str) -> None:
        cid = self._open_id()
        if cid is None:
            return
        pins = await self.client.pins(cid)
        if not pins:
            self.say("(no pinned messages)")
            return
        await self.dir.resolve([int(p["message"]["sender"]) for p in pins] + [int(p["pinned_by"]) for p in pins])
        for p in pins:
            m = p["message"]
            text = m["body"].get("text") or next((f"[{k}]" for k in ("file", "image", "voice", "custom")
                                                   if k in m["body"]), "")
            self.say(f"📌 #{m['seq']} {self.dir.name_of(int(m['sender']))}: {text} "
                     f"(pinned by {self.dir.name_of(int(p['pinned_by']))} {clock(int(p['ts']))})")

    async def cmd_draft(self, arg: str) -> None:
        """/draft TEXT saves my draft of the open conversation (my other devices see it); /draft alone clears it."""
        cid = self._open_id()
        if cid is None:
            return
        state = self._remember(await self.client.save_draft(cid, arg))
        self.say(f"draft saved: {state['draft']}" if state["draft"] else "draft cleared")

    def _setting(self, name: str, value: bool) -> Command:
        async def change(_: str) -> None:
            cid = self._open_id()
            if cid is not None:
                self._remember(await self.client.conversation_settings(cid, **{name: value}))
                self.say(f"{name.replace('_', ' ')}: {'yes' if value else 'no'}")
        return change

    async def cmd_mute(self, arg: str) -> None:
        """/mute [HOURS]: no push notifications for this conversation (default 8 hours)."""
        cid = self._open_id()
        if cid is None:
            return
        hours = float(arg) if arg.replace(".", "", 1).isdigit() else 8.0
        until = int(time.time() * 1000 + hours * 3_600_000)
        self._remember(await self.client.conversation_settings(cid, muted_until=until))
        self.say(f"muted until {clock(until)}")

    async def cmd_unmute(self, _: str) -> None:
        cid = self._open_id()
        if cid is not None:
            self._remember(await self.client.conversation_settings(cid, muted_until=1))
            self.say("unmuted")

    def _remember(self, state: dict[str, Any]) -> dict[str, Any]:
        self._own_changes()[str(state["conversation_id"])] = tuple(state.get(k) for k in _STATE)
        return state

    def _own_changes(self) -> dict[str, tuple[Any, ...]]:
        if not hasattr(self, "_mine"):
            self._mine = {}
        return self._mine

    async def on_state(self, state: f.ConversationState) -> None:
        """Another device of mine changed my state of a conversation: say what a reader would want to know."""
        if self._own_changes().get(state.conversation_id) == tuple(getattr(state, k) for k in _STATE):
            return  # the echo of this device's own change
        conv = await self.dir.conv(state.conversation_id)
        if state.draft:
            self.say(f"✎ [{conv.name}] draft: {state.draft}")
        marks = flags({"pinned_at": state.pinned_at, "marked_unread": state.marked_unread,
                       "muted_until": state.muted_until, "archived": state.archived},
                      int(time.time() * 1000))
        if marks:
            self.say(f"  [{conv.name}] {marks}")
