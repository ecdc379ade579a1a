"""Client-side ordering, sans-I/O: one cursor per conversation, so that messages reach the application once each
and in seq order, whether they came live or by sync."""

from __future__ import annotations

import enum
from collections.abc import Mapping

from pica.protocol.frames import Msg


class Verdict(enum.Enum):
    NEW = "new"
    """The next message of its conversation: hand it to the application."""
    DUPLICATE = "duplicate"
    """Already seen (a live push that a sync page also carried): drop it."""
    GAP = "gap"
    """Messages are missing before it: drop it and sync from the cursor."""


class CursorTracker:
    def __init__(self, cursors: Mapping[str, int] | None = None) -> None:
        self._cursors: dict[str, int] = dict(cursors or {})

    def cursor(self, conversation_id: str) -> int:
        return self._cursors.get(conversation_id, 0)

    def snapshot(self) -> dict[str, int]:
        return dict(self._cursors)

    def knows(self, conversation_id: str) -> bool:
        return conversation_id in self._cursors

    def accept(self, msg: Msg) -> Verdict:
        """Classify a message and, when it is NEW, advance the cursor past it."""
        current = self._cursors.get(msg.conversation_id)
        if current is None:
            # A conversation this client has never seen: sync decides where it starts, a live message is taken as
            # the start only when it is seq 1.
            if msg.seq != 1:
                return Verdict.GAP
            current = 0
        if msg.seq <= current:
            return Verdict.DUPLICATE
        if msg.seq != current + 1:
            return Verdict.GAP
        self._cursors[msg.conversation_id] = msg.seq
        return Verdict.NEW

    def accept_synced(self, msg: Msg) -> Verdict:
        """A message from a sync page: pages start right after the cursor we sent (or at the user's first
        visible message of a conversation new to us), so the first one of an unknown conversation is NEW."""
        if msg.conversation_id not in self._cursors:
            self._cursors[msg.conversation_id] = msg.seq - 1
        return self.accept(msg)


class GapBuffer:
    """Live messages that arrived ahead of their turn, held back for a moment in case the missing ones are only
    late rather than lost.

    In a cluster each node pushes after its own commit, so two messages of one conversation committed through
    different nodes can swap places on the way (protocol 8.5). Syncing at every such swap costs a round trip and a
    store read; holding the early one briefly lets the late one arrive and both go out in order. The connection
    decides how long to wait; this class only keeps the messages and says which ones are next.
    """

    def __init__(self, cursors: CursorTracker, limit: int = 1_000) -> None:
        self._cursors = cursors
        self._limit = limit
        self._held: dict[str, dict[int, Msg]] = {}

    def hold(self, msg: Msg) -> bool:
        """Keep a message the cursor said GAP to. False when waiting cannot help (a conversation with no cursor yet:
        only a sync says where it starts) or the conversation already holds ``limit`` messages: sync now."""
        if not self._cursors.knows(msg.conversation_id):
            return False
        held = self._held.setdefault(msg.conversation_id, {})
        if len(held) >= self._limit and msg.seq not in held:
            return False
        held[msg.seq] = msg
        return True

    def release(self, conversation_id: str) -> list[Msg]:
        """The held messages that are now next in line, in order (the cursor advanced past them); those the cursor
        already passed are dropped."""
        held = self._held.get(conversation_id)
        if not held:
            return []
        out: list[Msg] = []
        cursor = self._cursors.cursor(conversation_id)
        for seq in [s for s in held if s <= cursor]:
            del held[seq]
        while (nxt := held.pop(cursor + 1, None)) is not None:
            if self._cursors.accept(nxt) is Verdict.NEW:
                out.append(nxt)
            cursor = self._cursors.cursor(conversation_id)
        if not held:
            del self._held[conversation_id]
        return out

    def waiting(self, conversation_id: str) -> bool:
        """Whether messages of this conversation are still held (a gap before them is not filled)."""
        return conversation_id in self._held

    def conversations(self) -> list[str]:
        return list(self._held)

    def mark(self) -> dict[str, set[int]]:
        """What is held now; give it to ``forget`` once a sync that started after this has completed."""
        return {conversation_id: set(held) for conversation_id, held in self._held.items()}

    def forget(self, marked: dict[str, set[int]]) -> None:
        """Drop what was held before a complete sync and is still not next: the sync returned neither it nor what
        is missing before it, so this user cannot see them (the notice of their own removal from a group is pushed
        once and never synced). Waiting longer would only mean syncing again and again."""
        for conversation_id, seqs in marked.items():
            held = self._held.get(conversation_id)
            if held is None:
                continue
            for seq in seqs:
                held.pop(seq, None)
            if not held:
                del self._held[conversation_id]

    def held_seqs(self, conversation_id: str) -> list[int]:
        return sorted(self._held.get(conversation_id, ()))
