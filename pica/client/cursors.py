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
