"""Chat logic: send, receipts, sync and history, written against the Store and Delivery interfaces.

The order of operations on the send path is the durability contract: validate, commit (the store assigns the seq),
and only then ack the sender and ring the recipients' doorbells. Delivery after the commit can fail or be lost
without taking the ack back; receivers fill any gap by sync.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pica.config import LimitsConfig
from pica.core.ports import Clock, Delivery
from pica.core.validation import validate_body
from pica.errors import BadRequest
from pica.protocol import frames as f
from pica.protocol.outbound import OutboundFrame
from pica.store.base import AppendResult, ConversationSummary, DirectAppend, MessageRecord, Page, Store

log = logging.getLogger(__name__)


def direct_conversation_id(a: int, b: int) -> str:
    """The one conversation of two users (or of a user with themself): ``d:<lower id>:<higher id>``."""
    low, high = (a, b) if a <= b else (b, a)
    return f"d:{low}:{high}"


def message_frame(record: MessageRecord) -> f.Msg:
    return f.Msg(
        conversation_id=record.conversation_id,
        seq=record.seq,
        sender=record.sender,
        client_msg_id=record.client_msg_id,
        ts=record.ts,
        body=record.body,
    )


@dataclass(frozen=True, slots=True)
class SendAck:
    client_msg_id: str
    conversation_id: str
    seq: int
    ts: int
    duplicate: bool


class ChatService:
    def __init__(self, store: Store, delivery: Delivery, clock: Clock, limits: LimitsConfig) -> None:
        self._store = store
        self._delivery = delivery
        self._clock = clock
        self._limits = limits

    async def send_direct(
        self, sender: int, recipient: int, client_msg_id: str, body: Any, *, origin: object | None = None
    ) -> SendAck:
        return await self.submit_direct(sender, recipient, client_msg_id, body, origin=origin)

    def submit_direct(
        self, sender: int, recipient: int, client_msg_id: str, body: Any, *, origin: object | None = None
    ) -> asyncio.Future[SendAck]:
        """Store and route a 1:1 message; the future resolves to the ack after the durable commit. ``origin`` is
        the sending connection: it gets the ack, not a copy. Validation errors raise here, synchronously.

        No task and no await before the store call: sends submitted in one order are committed, delivered and
        acked in that order."""
        checked, body_json = validate_body(body, self._limits)
        if not client_msg_id or len(client_msg_id) > 64:
            raise BadRequest("client_msg_id must be 1-64 characters")
        conversation_id = direct_conversation_id(sender, recipient)
        stored = self._store.append_direct(
            DirectAppend(conversation_id, sender, recipient, client_msg_id, body_json, self._clock.now_ms())
        )
        ack: asyncio.Future[SendAck] = stored.get_loop().create_future()

        def committed(done: asyncio.Future[AppendResult]) -> None:
            if done.cancelled():
                ack.cancel()
                return
            error = done.exception()
            if error is not None:
                if not ack.done():
                    ack.set_exception(error)
                return
            result = done.result()
            if not result.duplicate:
                # Recipient's devices and the sender's other devices; a duplicate was delivered the first time.
                frame = f.Msg(
                    conversation_id=conversation_id,
                    seq=result.seq,
                    sender=sender,
                    client_msg_id=client_msg_id,
                    ts=result.ts,
                    body=checked,
                )
                targets = (recipient, sender) if recipient != sender else (sender,)
                try:
                    self._delivery.deliver(targets, OutboundFrame(frame), exclude=origin)
                except Exception:  # the message is committed: delivery trouble must never take the ack back
                    log.exception("delivery failed", extra={"conversation_id": conversation_id, "seq": result.seq})
            if not ack.done():
                ack.set_result(SendAck(client_msg_id, result.conversation_id, result.seq, result.ts, result.duplicate))

        stored.add_done_callback(committed)
        return ack

    async def mark_received(self, user_id: int, conversation_id: str, seq: int) -> None:
        """A device holds everything up to ``seq``: advance the delivered cursor and tell the other members."""
        delivered = await self._store.mark_delivered(user_id, conversation_id, seq)
        if delivered is None:
            return
        members = await self._store.conversation_members(conversation_id)
        others = [m for m in members if m != user_id]
        if others:
            receipt = f.Receipt(conversation_id=conversation_id, user_id=user_id, delivered=delivered)
            self._delivery.deliver(others, OutboundFrame(receipt))

    async def sync(self, user_id: int, cursors: Mapping[str, int], limit: int | None) -> Page:
        page_size = self._limits.sync_page_size
        return await self._store.sync(user_id, cursors, min(limit or page_size, page_size))

    async def history(
        self, user_id: int, conversation_id: str, *, after: int | None, before: int | None, limit: int | None
    ) -> Page:
        page_size = self._limits.history_page_size
        return await self._store.history(
            user_id, conversation_id, after=after, before=before, limit=min(limit or page_size, page_size)
        )

    async def conversations(self, user_id: int) -> list[ConversationSummary]:
        return await self._store.list_conversations(user_id)
