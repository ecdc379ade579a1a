"""Store records as protocol frames."""

from __future__ import annotations

from pica.protocol import frames as f
from pica.store.base import MessageRecord


def message_frame(record: MessageRecord) -> f.Msg:
    return f.Msg(
        conversation_id=record.conversation_id,
        seq=record.seq,
        sender=record.sender,
        client_msg_id=record.client_msg_id,
        ts=record.ts,
        body=record.body,
    )
