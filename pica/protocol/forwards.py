"""What may be forwarded or pinned, and the body a forwarded copy carries (docs/protocol.md section 29): pure rules
the core and the store share."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

FORWARDED: Final = "forwarded"
"""The key of a copy's mark: the server's alone (a client body with it is refused), so that it cannot be forged."""

CONTENT_KEYS: Final = ("text", "file", "image", "voice", "custom", "type")
"""The keys a copy keeps: the content and its kind. Everything else is metadata of the original's conversation (its
``mentions`` would notify people there, its ``reply_to`` names a seq there) or the original's state (``edited``)."""

_CONTENT_KINDS: Final = ("text", "file", "image", "voice", "custom")
_NOT_CONTENT: Final = ("system", "recall", "edit", "recalled", "deleted", "call")
"""Notices, recall and edit events, recalled messages, messages deleted for the reader, call records."""


def is_content(body: Mapping[str, Any]) -> bool:
    """Whether a message, as its reader sees it, is something a person wrote that still reads as written: what may be
    forwarded or pinned."""
    return not any(key in body for key in _NOT_CONTENT) and any(key in body for key in _CONTENT_KINDS)


def refusal_of(body: Mapping[str, Any]) -> str | None:
    """Why a message cannot be forwarded or pinned (None: it can), for the error's message."""
    if "recalled" in body:
        return "the message was recalled"
    if "deleted" in body:
        return "you deleted the message"
    if not is_content(body):
        return "notices, events and call records cannot be forwarded or pinned"
    return None


def forwarded_body(body: Mapping[str, Any], sender: int, ts: int) -> tuple[dict[str, Any], dict[str, int]]:
    """The content of a copy of message ``body`` (from ``sender`` at ``ts``) and its mark, which names the original's
    author and time. A copy of a copy names the first author, as the copy it was made from did."""
    content = {key: body[key] for key in CONTENT_KEYS if key in body}
    origin = body.get(FORWARDED)
    if isinstance(origin, dict) and isinstance(origin.get("sender"), int) and isinstance(origin.get("ts"), int):
        return content, {"sender": origin["sender"], "ts": origin["ts"]}
    return content, {"sender": sender, "ts": ts}
