"""Conversation ids (docs/protocol.md, "Conversation ids"): ``d:<low user id>:<high user id>`` for a 1:1,
``g:<group id>`` for a group, ``u:<user id>`` for a user's own timeline of personal events."""

from __future__ import annotations

from pica.errors import BadRequest
from pica.protocol.text import has_control_chars


def direct_conversation_id(a: int, b: int) -> str:
    """The one conversation of two users (or of a user with themself): ``d:<lower id>:<higher id>``."""
    low, high = (a, b) if a <= b else (b, a)
    return f"d:{low}:{high}"


def direct_members(conversation_id: str) -> tuple[int, int] | None:
    """The two users of a ``d:<a>:<b>`` conversation, else None (also for a malformed id)."""
    parts = conversation_id.split(":")
    if len(parts) != 3 or parts[0] != "d":
        return None
    try:
        return int(parts[1]), int(parts[2])
    except ValueError:
        return None


def direct_peer(conversation_id: str, user_id: int) -> int | None:
    """The other user of a 1:1 conversation that ``user_id`` is in, else None."""
    pair = direct_members(conversation_id)
    if pair is None or user_id not in pair:
        return None
    return pair[1] if pair[0] == user_id else pair[0]


def group_conversation_id(group_id: int) -> str:
    return f"g:{group_id}"


def own_conversation_id(user_id: int) -> str:
    """A user's own timeline of personal events (delete-for-me, removal from a group): ``u:<user id>``."""
    return f"u:{user_id}"


def group_id_of(conversation_id: str) -> int | None:
    """The group id of a ``g:<id>`` conversation, else None."""
    if conversation_id.startswith("g:"):
        try:
            return int(conversation_id[2:])
        except ValueError:
            raise BadRequest("malformed conversation id") from None
    return None


def names_nothing(conversation_id: str) -> bool:
    """True for an id that cannot name any conversation because it holds a control character (a NUL, say, which
    PostgreSQL cannot even compare against). Such an id is answered like one that does not exist, before it
    reaches a store."""
    return has_control_chars(conversation_id)
