"""Which MQTT topics mean what (docs/protocol.md, MQTT, "Topics"): pure rules, no I/O.

Sends go to ``send/u/<user_id>`` or ``send/g/<group_id>``; messages come from ``msg/<conversation_id>``. A client
may subscribe only within its own ``msg/`` tree: ``msg/#``, ``msg/+`` (the same thing, conversation ids holding no
``/``) or ``msg/<conversation_id>`` of a conversation it can be in.
"""

from __future__ import annotations

from typing import Final, Literal

from pica.errors import BadRequest
from pica.protocol.ids import direct_members, group_id_of, names_nothing

ALL: Final = "*"
"""The scope of ``msg/#`` and ``msg/+``: every conversation of the user."""

SEND_PREFIX: Final = "send/"
MSG_PREFIX: Final = "msg/"


def _positive(text: str) -> int | None:
    if not text.isascii() or not text.isdigit() or len(text) > 18 or text.startswith("0"):
        return None
    return int(text)


def send_target(topic: str) -> tuple[Literal["user", "group"], int] | None:
    """(``user`` | ``group``, id) of a send topic, else None."""
    parts = topic.split("/")
    if len(parts) != 3 or parts[0] != "send" or parts[1] not in ("u", "g"):
        return None
    ident = _positive(parts[2])
    if ident is None:
        return None
    return ("user" if parts[1] == "u" else "group"), ident


def filter_scope(topic_filter: str, user_id: int) -> str | None:
    """``ALL``, or the one conversation id a filter covers; None for a filter outside the user's own tree.

    A ``d:`` id must name the user as one of its two members and ``u:`` must be the user's own timeline. A ``g:``
    id is accepted without asking the store whether the user is a member: only the user's own conversations are
    ever pushed to them, so the filter of a group they are not in simply matches nothing."""
    if topic_filter in ("msg/#", "msg/+"):
        return ALL
    if not topic_filter.startswith(MSG_PREFIX):
        return None
    cid = topic_filter[len(MSG_PREFIX):]
    if not cid or "/" in cid or "+" in cid or "#" in cid or names_nothing(cid):
        return None
    members = direct_members(cid)
    if members is not None:
        return cid if user_id in members and cid == f"d:{min(members)}:{max(members)}" else None
    if cid.startswith("u:"):
        return cid if cid == f"u:{user_id}" else None
    try:
        group_id = group_id_of(cid)
    except BadRequest:
        return None
    return cid if group_id is not None and cid == f"g:{group_id}" and group_id > 0 else None


def message_topic(conversation_id: str) -> str:
    return MSG_PREFIX + conversation_id
