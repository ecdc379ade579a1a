"""What a message is to the person reading it, from its body alone: the rules every client and the server's
conversation list share (the web page's ``model.js`` mirrors them; the two change together)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

_NOT_SHOWN: Final = ("recall", "edit", "reaction", "preview", "recalled", "deleted")
"""Recall, edit, reaction and link preview events (their target shows the change), and the bodies of recalled
messages and of messages deleted for the reader (docs/protocol.md sections 13, 28 and 30)."""


def stands_for_conversation(body: Mapping[str, Any]) -> bool:
    """Whether a message, as its reader sees it, may stand for its conversation (the list's ``last_message``, a
    preview): the newest such message says what the timeline's last bubble says."""
    return not any(key in body for key in _NOT_SHOWN)


def counts_as_unread(body: Mapping[str, Any], sender: int, reader: int) -> bool:
    """Whether a message after the reader's read cursor is something new for them to read: one that may stand for
    its conversation, from someone else (an edit or a recall changes a message; it is not a new one)."""
    return sender != reader and stands_for_conversation(body)
