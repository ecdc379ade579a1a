"""Store records as protocol frames, and conversation ids."""

from __future__ import annotations

from pica.errors import BadRequest
from pica.protocol import frames as f
from pica.store.base import MessageRecord


def direct_conversation_id(a: int, b: int) -> str:
    """The one conversation of two users (or of a user with themself): ``d:<lower id>:<higher id>``."""
    low, high = (a, b) if a <= b else (b, a)
    return f"d:{low}:{high}"


def group_conversation_id(group_id: int) -> str:
    return f"g:{group_id}"


def group_id_of(conversation_id: str) -> int | None:
    """The group id of a ``g:<id>`` conversation, else None."""
    if conversation_id.startswith("g:"):
        try:
            return int(conversation_id[2:])
        except ValueError:
            raise BadRequest("malformed conversation id") from None
    return None


def message_frame(record: MessageRecord) -> f.Msg:
    return f.Msg(
        conversation_id=record.conversation_id,
        seq=record.seq,
        sender=record.sender,
        client_msg_id=record.client_msg_id,
        ts=record.ts,
        body=record.body,
    )
