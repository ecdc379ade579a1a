"""Forwarding: copies of messages the caller can see, sent to conversations the caller may send to (docs/protocol.md
section 29.1).

A copy is an ordinary send (:meth:`ChatService.submit`): every send rule applies to it (the rate, blocks,
only-contacts, group membership and mutes, the before-send hook), its file is referenced, not copied (the store
writes the file reference as for any send), and it is acked after its own commit. What a forward adds is reading the
sources as the caller sees them (their membership and joining, their deletions), refusing what is not content, and the
server's ``forwarded`` mark, which clients cannot forge. Copies are submitted in order (destination by destination,
messages by seq within each), so they are committed in that order.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from pica.config import ConversationsConfig
from pica.core.chat import ChatService, SendAck, resolving
from pica.core.validation import check_client_msg_id
from pica.errors import BadRequest, Forbidden, MessageNotFound, PicaError
from pica.protocol.forwards import forwarded_body, refusal_of
from pica.protocol.ids import names_nothing
from pica.store.base import MessageRecord, Store

__all__ = ["Copy", "Destination", "ForwardService", "copy_id"]


@dataclass(frozen=True, slots=True)
class Destination:
    """A user (``to``) or a group (``group_id``): exactly one is set."""

    to: int | None = None
    group_id: int | None = None


@dataclass(frozen=True, slots=True)
class Copy:
    """One copy's outcome: its ack once committed, or why it was refused."""

    destination: Destination
    source_seq: int
    client_msg_id: str
    ack: SendAck | None = None
    error: PicaError | None = None


def copy_id(client_msg_id: str, index: int) -> str:
    """The idempotency key of copy ``index`` of a forward: a retry of the forward makes the same keys, so every copy
    already stored is answered with its original ack."""
    return f"{client_msg_id}/{index}"


class ForwardService:
    def __init__(self, store: Store, chat: ChatService, config: ConversationsConfig) -> None:
        self._store = store
        self._chat = chat
        self._config = config

    async def forward(self, user_id: int, conversation_id: str, seqs: list[int], destinations: list[Destination],
                      client_msg_id: str) -> list[Copy]:
        """Forward messages ``seqs`` of ``conversation_id`` to every destination. Refusals of the request as a whole
        (its shape, a source that cannot be forwarded) raise before anything is sent; a copy's own refusal (a
        block, a group the caller is not in, the rate) is that copy's ``error``, the others go on."""
        seqs = list(dict.fromkeys(seqs))
        destinations = list(dict.fromkeys(destinations))
        self._check_shape(seqs, destinations, client_msg_id)
        sources = [await self._source(user_id, conversation_id, seq) for seq in sorted(seqs)]
        pending: list[tuple[Copy, asyncio.Future[SendAck]]] = []
        copies: list[Copy] = []
        loop = asyncio.get_running_loop()
        for destination in destinations:
            for source in sources:
                content, mark = forwarded_body(source.body, source.sender, source.ts)
                copy = Copy(destination, source.seq, copy_id(client_msg_id, len(copies)))
                copies.append(copy)
                acked: asyncio.Future[SendAck] = loop.create_future()
                try:
                    self._chat.submit(user_id, copy.client_msg_id, content, resolving(acked), to=destination.to,
                                      group_id=destination.group_id, forwarded=mark)
                except PicaError as exc:
                    acked.set_exception(exc)
                pending.append((copy, acked))
        await asyncio.wait([future for _, future in pending])
        return [_outcome(copy, future) for copy, future in pending]

    def _check_shape(self, seqs: list[int], destinations: list[Destination], client_msg_id: str) -> None:
        config = self._config
        if not seqs or not destinations:
            raise BadRequest("name at least one message (seqs) and one destination (to or group_ids)")
        if len(seqs) > config.max_forward_messages:
            raise BadRequest(f"at most {config.max_forward_messages} messages per forward")
        if len(seqs) * len(destinations) > config.max_forward_copies:
            raise BadRequest(f"at most {config.max_forward_copies} copies (messages x destinations) per forward")
        check_client_msg_id(client_msg_id)
        check_client_msg_id(copy_id(client_msg_id, len(seqs) * len(destinations) - 1))

    async def _source(self, user_id: int, conversation_id: str, seq: int) -> MessageRecord:
        """Message ``seq`` as the caller sees it: ConversationNotFound unless they are a member, MessageNotFound
        unless it is after their joining (the timeline rule of protocol 12.2)."""
        if names_nothing(conversation_id):
            raise BadRequest("conversation_id names no conversation")
        page = await self._store.history(user_id, conversation_id, after=seq - 1, before=None, limit=1)
        if not page.messages or page.messages[0].seq != seq:
            raise MessageNotFound(f"no message {seq} in {conversation_id} that you can see")
        message = page.messages[0]
        reason = refusal_of(message.body)
        if reason is not None:
            raise Forbidden(f"message {seq}: {reason}")
        return message


def _outcome(copy: Copy, future: asyncio.Future[SendAck]) -> Copy:
    error = future.exception()
    if error is None:
        return Copy(copy.destination, copy.source_seq, copy.client_msg_id, ack=future.result())
    if isinstance(error, PicaError):
        return Copy(copy.destination, copy.source_seq, copy.client_msg_id, error=error)
    raise error
