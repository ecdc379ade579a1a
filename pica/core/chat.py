"""Chat logic: sends, recall/edit/delete, receipts, sync, history, search and the conversation list, written
against the Store and Delivery interfaces.

The order of operations on every write path is the durability contract: validate, commit (the store assigns the
seq), and only then ack the sender and ring the recipients' doorbells. Delivery after the commit can fail or be lost
without taking the ack back; receivers fill any gap by sync. The hot paths chain callbacks on the store's commit
future instead of running a task per message, which also keeps commit order = delivery order.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec

from pica.config import AnnotationsConfig, LimitsConfig
from pica.core.fanout import GroupFanout
from pica.core.files import referenced_file, with_truth
from pica.core.ports import BeforeSend, Clock, Delivery, GroupRouter
from pica.core.ratelimit import RateLimits
from pica.core.reactions import Links, check_emoji, linked_body, links_of
from pica.core.search import WINDOW, SearchPage, phrases_of, rank_page
from pica.core.validation import check_client_msg_id, validate_body
from pica.core.wire import message_frame
from pica.errors import BadRequest, ConversationNotFound, FileNotFound
from pica.protocol import frames as f
from pica.protocol.forwards import FORWARDED
from pica.protocol.ids import (
    direct_conversation_id,
    direct_peer,
    group_conversation_id,
    group_id_of,
    names_nothing,
)
from pica.protocol.outbound import OutboundFrame
from pica.protocol.tokens import document
from pica.store.base import (
    AppendResult,
    ConversationSummary,
    DirectAppend,
    EventAppend,
    GroupAppend,
    LinkedAppend,
    MemberRecord,
    MessageRecord,
    Page,
    ReactionAppend,
    Store,
    SyncPage,
    ThreadSummary,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

__all__ = ["ChatService", "Reply", "SendAck", "resolving"]


@dataclass(frozen=True, slots=True)
class SendAck:
    client_msg_id: str
    conversation_id: str
    seq: int
    ts: int
    duplicate: bool


Reply = Callable[[SendAck | None, BaseException | None], None]
"""Called once with the ack, or with the error, when a submitted write has committed (or failed)."""


def _then(source: asyncio.Future[T], on_result: Callable[[T], SendAck], reply: Reply) -> None:
    """Run ``on_result`` on the store's result as a callback (no task, no second future), then ``reply``."""

    def done(finished: asyncio.Future[T]) -> None:
        if finished.cancelled():
            reply(None, asyncio.CancelledError())
            return
        error = finished.exception()
        if error is not None:
            reply(None, error)
            return
        try:
            ack = on_result(finished.result())
        except Exception as exc:  # pragma: no cover - defensive: on_result guards its own delivery
            log.exception("post-commit step failed")
            reply(None, exc)
            return
        reply(ack, None)

    source.add_done_callback(done)


def resolving(future: asyncio.Future[SendAck]) -> Reply:
    def reply(ack: SendAck | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            assert ack is not None
            future.set_result(ack)

    return reply


class ChatService:
    def __init__(self, store: Store, delivery: Delivery, clock: Clock, limits: LimitsConfig,
                 fanout: GroupRouter | None = None, rates: RateLimits | None = None,
                 before_send: BeforeSend | None = None, annotations: AnnotationsConfig | None = None) -> None:
        self._annotations = annotations or AnnotationsConfig()
        self._rates = rates
        self._before_send = before_send
        self._reviews: dict[int, asyncio.Task[None]] = {}
        """Per sender, the last send still with the before-send hook: the next one enters the store after it."""
        self._store = store
        self._delivery = delivery
        self._clock = clock
        self._limits = limits
        self.fanout: GroupRouter = fanout or GroupFanout(store, delivery)
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------------------------------ sends

    async def send(self, sender: int, client_msg_id: str, body: Any, *, to: int | None = None,
                   group_id: int | None = None, origin: object | None = None) -> SendAck:
        acked: asyncio.Future[SendAck] = asyncio.get_running_loop().create_future()
        self.submit(sender, client_msg_id, body, resolving(acked), to=to, group_id=group_id, origin=origin)
        return await acked

    def submit(self, sender: int, client_msg_id: str, body: Any, reply: Reply, *, to: int | None = None,
               group_id: int | None = None, origin: object | None = None,
               forwarded: dict[str, Any] | None = None) -> None:
        """Store and route a message to a user (``to``) or a group; ``reply`` gets the ack after the durable
        commit. ``origin`` is the sending connection: it gets the ack, not a copy. Validation errors raise here,
        synchronously. No task and no await before the store call: sends submitted in one order are committed,
        delivered and acked in that order. ``forwarded``: the server's mark of a forwarded copy
        (pica/core/forwarding.py), added to the checked body."""
        if (to is None) == (group_id is None):
            raise BadRequest("a message goes to exactly one of 'to' (a user) or 'group_id'")
        if self._rates is not None:
            self._rates.check(self._rates.sends, sender, "messages")
        client_msg_id = check_client_msg_id(client_msg_id)
        checked, body_json = self._validated(body, forwarded)
        links_of(checked)  # a malformed reply, thread or @all is refused now, before any review
        # A send behind one still under review waits for it too, so that a sender's messages keep their order.
        if self._before_send is not None or referenced_file(checked) is not None or sender in self._reviews:
            self._review(sender, client_msg_id, checked, body_json, reply, to, group_id, origin)
            return
        self._append(sender, client_msg_id, checked, body_json, reply, to, group_id, origin)

    async def append_server_body(self, sender: int, to: int, client_msg_id: str, body: dict[str, Any]) -> SendAck:
        """Store and route a 1:1 message the server writes on ``sender``'s behalf (a call record, protocol 7.3):
        the same append and delivery as a client's message, without the client's checks (rate, body kinds, the
        before-send hook). ``client_msg_id`` is a server id (``~``), so writing it twice stores it once."""
        acked: asyncio.Future[SendAck] = asyncio.get_running_loop().create_future()
        self._append(sender, client_msg_id, body, msgspec.json.encode(body), resolving(acked), to, None, None)
        return await acked

    def _review(self, sender: int, client_msg_id: str, checked: dict[str, Any], body_json: bytes, reply: Reply,
                to: int | None, group_id: int | None, origin: object | None) -> None:
        """Read the file the body references and ask the before-send hook, then append. Reviews of one sender's
        sends run concurrently, but each send enters the store only after the previous one did (or failed), so a
        sender's messages keep their order."""
        previous = self._reviews.get(sender)
        task = asyncio.get_running_loop().create_task(
            self._reviewed(previous, sender, client_msg_id, checked, body_json, reply, to, group_id, origin))
        self._reviews[sender] = task
        self._tasks.add(task)

        def done(finished: asyncio.Task[None]) -> None:
            self._tasks.discard(finished)
            if self._reviews.get(sender) is finished:
                del self._reviews[sender]

        task.add_done_callback(done)

    async def _reviewed(self, previous: asyncio.Task[None] | None, sender: int, client_msg_id: str,
                        checked: dict[str, Any], body_json: bytes, reply: Reply, to: int | None,
                        group_id: int | None, origin: object | None) -> None:
        conversation_id = direct_conversation_id(sender, to) if to is not None else group_conversation_id(
            group_id or 0)
        try:
            checked, body_json = await self._with_file(sender, checked, body_json)
            if self._before_send is not None:
                reviewed = await self._before_send.review(sender, conversation_id, client_msg_id, checked)
                if reviewed is not checked:  # rewritten: the hook's body obeys the same rules as the client's
                    checked, body_json = await self._with_file(
                        sender, *self._validated(_without_mark(reviewed), checked.get(FORWARDED)))
        except Exception as exc:
            if previous is not None:
                await asyncio.wait([previous])
            reply(None, exc)
            return
        if previous is not None:
            await asyncio.wait([previous])
        try:
            self._append(sender, client_msg_id, checked, body_json, reply, to, group_id, origin)
        except Exception as exc:
            reply(None, exc)

    async def _with_file(self, sender: int, checked: dict[str, Any], body_json: bytes) -> tuple[dict[str, Any], bytes]:
        """The body with the truth about the file it references (docs/protocol.md, "Files"): the sender must be
        able to read it (their upload, or a file of a message they can see: a forward copies no bytes)."""
        reference = referenced_file(checked)
        if reference is None:
            return checked, body_json
        kind, file_id = reference
        record = await self._store.readable_file(file_id, sender)
        if record is None:
            raise FileNotFound(f"no file {file_id!r} that you can send: upload it first (POST /v1/files)")
        return self._validated(with_truth(_without_mark(checked), kind, record), checked.get(FORWARDED))

    def _validated(self, body: Any, forwarded: Any = None) -> tuple[dict[str, Any], bytes]:
        """:func:`validate_body`, then the server's forwarded mark (a key clients may not send) when there is one."""
        checked, body_json = validate_body(body, self._limits)
        if forwarded is None:
            return checked, body_json
        checked = {**checked, FORWARDED: forwarded}
        return checked, msgspec.json.encode(checked)

    def _append(self, sender: int, client_msg_id: str, checked: dict[str, Any], body_json: bytes, reply: Reply,
                to: int | None, group_id: int | None, origin: object | None) -> None:
        words = document(checked)
        ts = self._clock.now_ms()
        reference = referenced_file(checked)
        file_ids = (reference[1],) if reference is not None else ()
        request: DirectAppend | GroupAppend
        if to is not None:
            conversation_id = direct_conversation_id(sender, to)
            request = DirectAppend(conversation_id, sender, to, client_msg_id, body_json, ts, words, file_ids)
        else:
            assert group_id is not None
            conversation_id = group_conversation_id(group_id)
            request = GroupAppend(conversation_id, sender, client_msg_id, body_json, ts, words, file_ids)
        links = links_of(checked)
        if links is not None:
            self._append_linked(request, checked, links, reply, origin)
            return
        stored = (self._store.append_direct(request) if isinstance(request, DirectAppend)
                  else self._store.append_group(request))

        def committed(result: AppendResult) -> SendAck:
            if not result.duplicate:
                frame = OutboundFrame(
                    f.Msg(conversation_id=conversation_id, seq=result.seq, sender=sender,
                          client_msg_id=client_msg_id, ts=result.ts, body=checked),
                    self._clock.monotonic(),
                )
                self._route(conversation_id, result, frame, sender, to, origin)
            else:
                self._push_again(result, sender, origin)
            return SendAck(client_msg_id, result.conversation_id, result.seq, result.ts, result.duplicate)

        _then(stored, committed, reply)

    def _push_again(self, result: AppendResult, sender: int, origin: object | None) -> None:
        """A re-sent id: push the stored message again (protocol 8.2). Usually the first push reached everyone and
        the clients drop this copy by (conversation, seq) (8.6); but when the first attempt committed and its node
        died, or lost its database connection, before answering, nothing was pushed, and without this the peers'
        open connections would see the message only at their next sync. The stored message is routed by its own
        conversation: the retry's ``to`` or ``group_id`` may differ from the original's (the first write wins)."""
        task = asyncio.get_running_loop().create_task(self._push_stored(result, sender, origin))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _push_stored(self, result: AppendResult, sender: int, origin: object | None) -> None:
        conversation_id = result.conversation_id
        try:
            page = await self._store.history(sender, conversation_id, after=result.seq - 1, before=None, limit=1)
        except Exception:
            log.warning("could not re-read a re-sent message", exc_info=True,
                        extra={"conversation_id": conversation_id, "seq": result.seq})
            return
        if page.messages and page.messages[0].seq == result.seq:
            frame = OutboundFrame(message_frame(page.messages[0]))
            self._route(conversation_id, result, frame, sender, direct_peer(conversation_id, sender), origin)

    def _route(self, conversation_id: str, result: AppendResult, frame: OutboundFrame, sender: int,
               to: int | None, origin: object | None) -> None:
        """Post-commit delivery; trouble here must never take the ack back."""
        try:
            if to is not None:
                targets = (to, sender) if to != sender else (sender,)
                self._delivery.deliver(targets, frame, exclude=origin)
            else:
                self.fanout.deliver(conversation_id, result.members_version, result.seq, frame, exclude=origin)
        except Exception:
            log.exception("delivery failed", extra={"conversation_id": conversation_id, "seq": result.seq})

    # ------------------------------------------------------------------------------------------ recall, edit, delete

    async def event(self, kind: str, user_id: int, conversation_id: str, seq: int, client_msg_id: str,
                    text: str = "") -> SendAck:
        acked: asyncio.Future[SendAck] = asyncio.get_running_loop().create_future()
        self.submit_event(kind, user_id, conversation_id, seq, client_msg_id, resolving(acked), text)
        return await acked

    def submit_event(self, kind: str, user_id: int, conversation_id: str, seq: int, client_msg_id: str,
                     reply: Reply, text: str = "", origin: object | None = None) -> None:
        """Recall, edit or remove the link preview of message ``seq``: an event message appended to the
        conversation, delivered like one."""
        if self._rates is not None:
            self._rates.check(self._rates.sends, user_id, "messages")
        client_msg_id = check_client_msg_id(client_msg_id)
        _must_name_one(conversation_id)
        if kind == "edit":
            validate_body({"text": text}, self._limits)
        elif kind not in ("recall", "unpreview"):  # unpreview: the author removes a link preview (protocol 30)
            raise BadRequest(f"unknown event {kind!r}")
        request = EventAppend(kind, conversation_id, user_id, seq, client_msg_id, self._clock.now_ms(), text,
                              int(self._limits.recall_window * 1000))
        self._then_route(self._store.append_event(request), user_id, client_msg_id, reply, origin)

    def _then_route(self, stored: asyncio.Future[tuple[AppendResult, MessageRecord]], sender: int,
                    client_msg_id: str, reply: Reply, origin: object | None) -> None:
        """After the commit of a message the store wrote (an event, a linked message): deliver it as stored."""

        def committed(outcome: tuple[AppendResult, MessageRecord]) -> SendAck:
            result, record = outcome
            if not result.duplicate:
                self._route_record(record, result, sender, origin)
            return SendAck(client_msg_id, result.conversation_id, result.seq, result.ts, result.duplicate)

        _then(stored, committed, reply)

    def deliver_event(self, record: MessageRecord, result: AppendResult) -> None:
        """Deliver an event message committed outside this service (a moderated recall) as the author's own."""
        self._route_record(record, result, record.sender, None)

    def _route_record(self, record: MessageRecord, result: AppendResult, sender: int, origin: object | None) -> None:
        frame = OutboundFrame(message_frame(record), self._clock.monotonic())
        peer = direct_peer(record.conversation_id, sender)
        self._route(record.conversation_id, result, frame, sender, peer, origin)

    async def delete_for_me(self, user_id: int, conversation_id: str, seq: int, origin: object | None = None) -> None:
        _must_name_one(conversation_id)
        notice = await self._store.hide_message(user_id, conversation_id, seq, self._clock.now_ms())
        self._delivery.deliver((user_id,), OutboundFrame(message_frame(notice)), exclude=origin)

    # ------------------------------------------------------------------------------------------ receipts

    async def mark_received(self, user_id: int, conversation_id: str, seq: int) -> None:
        """A device holds everything up to ``seq``: advance the delivered cursor and tell the peer of a 1:1."""
        if names_nothing(conversation_id):
            return  # like any conversation the user is not in: nothing to advance
        delivered = await self._store.mark_delivered(user_id, conversation_id, seq)
        if delivered is not None:
            self._announce(user_id, conversation_id, f.Receipt(conversation_id=conversation_id, user_id=user_id,
                                                               delivered=delivered))

    async def mark_read(self, user_id: int, conversation_id: str, seq: int, origin: object | None = None) -> None:
        """Read up to ``seq``: my other devices and the peer of a 1:1 learn it live; group cursors are pulled
        (GET /v1/conversations/{id}/receipts), since pushing every read to every member costs O(members²)."""
        _must_name_one(conversation_id)
        cursors = await self._store.mark_read(user_id, conversation_id, seq)
        if cursors is not None:
            # Reading moved the delivered cursor too (protocol 11): say both, so no client has to infer it.
            receipt = f.Receipt(conversation_id=conversation_id, user_id=user_id, delivered=cursors.delivered,
                                read=cursors.read)
            self._delivery.deliver((user_id,), OutboundFrame(receipt), exclude=origin)
            self._announce(user_id, conversation_id, receipt)

    def _announce(self, user_id: int, conversation_id: str, receipt: f.Receipt) -> None:
        peer = direct_peer(conversation_id, user_id)
        if peer is not None and peer != user_id:
            self._delivery.deliver((peer,), OutboundFrame(receipt))

    async def receipts(self, user_id: int, conversation_id: str) -> list[MemberRecord]:
        _must_name_one(conversation_id)
        return await self._store.member_cursors(user_id, conversation_id)

    # ------------------------------------------------------------------------------------------ reads

    async def sync(self, user_id: int, cursors: Mapping[str, int], limit: int | None) -> SyncPage:
        page_size = self._limits.sync_page_size
        return await self._store.sync(user_id, _known(cursors), min(limit or page_size, page_size))

    async def sync_stream(self, user_id: int, cursors: Mapping[str, int], limit: int | None) -> AsyncIterator[SyncPage]:
        """A sync's pages one after the other (protocol 9, ``stream``): the conversations to read are found once,
        then each page starts where the previous one stopped, with no membership read per page. The stream ends at
        what the user could see when it began (``Store.sync_plan``); newer messages come as live pushes."""
        page_size = self._limits.sync_page_size
        size = min(limit or page_size, page_size)
        pending = await self._store.sync_plan(user_id, _known(cursors))
        while True:
            page = await self._store.sync_after(user_id, pending, size)
            yield page
            if not page.more:
                return
            # Pages follow (conversation, seq): the ones before the page's last conversation are done.
            last = page.messages[-1]
            done = next(i for i, p in enumerate(pending) if p[0] == last.conversation_id)
            pending = [(last.conversation_id, last.seq, pending[done][2]), *pending[done + 1:]]

    async def history(
        self, user_id: int, conversation_id: str, *, after: int | None, before: int | None, limit: int | None
    ) -> Page:
        _must_name_one(conversation_id)
        page_size = self._limits.history_page_size
        return await self._store.history(
            user_id, conversation_id, after=after, before=before, limit=min(limit or page_size, page_size)
        )

    async def conversations(self, user_id: int, *, limit: int | None = None, before_ts: int | None = None,
                            before_id: str = "") -> list[ConversationSummary]:
        if names_nothing(before_id):
            raise BadRequest("malformed paging cursor")
        page_size = self._limits.history_page_size
        items = await self._store.list_conversations(user_id, limit=min(limit or page_size, page_size),
                                                     before_ts=before_ts, before_id=before_id)
        mentioned = await self._store.unread_mentions(user_id, [c.conversation_id for c in items if c.unread])
        return [dataclasses.replace(c, unread_mentions=mentioned[c.conversation_id])
                if c.conversation_id in mentioned else c for c in items]

    async def search(self, user_id: int, query: str, *, conversation_id: str | None = None,
                     limit: int | None = None, offset: int = 0, sender: int | None = None,
                     since: int | None = None, until: int | None = None, kind: str | None = None) -> SearchPage:
        """A page of ranked, highlighted matches (:mod:`pica.core.search`); ``offset + limit`` at most WINDOW."""
        if conversation_id is not None:
            _must_name_one(conversation_id)
        phrases = phrases_of(query)
        size = min(limit or self._limits.history_page_size, self._limits.history_page_size, WINDOW)
        if offset + size > WINDOW:
            raise BadRequest(f"offset + limit must be at most {WINDOW}: narrow the search (until) instead")
        found = await self._store.search(user_id, query, conversation_id=conversation_id, limit=WINDOW,
                                         sender=sender, since=since, until=until, kind=kind)
        return rank_page(found, phrases, offset, size)

    # ------------------------------------------------------------------------------------------ typing

    async def typing(self, user_id: int, conversation_id: str) -> None:
        """Tell the other members' devices that the user is typing. Ephemeral: nothing is stored."""
        _must_name_one(conversation_id)
        frame = OutboundFrame(f.Typing(conversation_id=conversation_id, user_id=user_id))
        if group_id_of(conversation_id) is None:
            peer = direct_peer(conversation_id, user_id)
            if peer is None:
                raise ConversationNotFound()
            # Only to a peer this user shares a conversation or contact with, and who has not blocked them.
            if peer != user_id and await self._store.presence_of(user_id, [peer]):
                self._delivery.deliver((peer,), frame)
            return
        cached = self.fanout.membership(conversation_id)
        if cached is None:
            version, joined = await self._store.group_fanout(conversation_id)
            cached = (version, joined.keys())
        version, members = cached
        if user_id not in members:
            raise ConversationNotFound()
        # Through the group router: in a cluster, one bus message per group rather than one per member. The version
        # the check saw travels with it, so that no node serves it from a member list older than that.
        self.fanout.deliver_ephemeral(conversation_id, frame, user_id, version)


    # ------------------------------------------------------------------------------------------ reactions, threads
    # docs/protocol.md section 28: the rules are pica/core/reactions.py and pica/store/reaction_rules.py.

    def _append_linked(self, request: DirectAppend | GroupAppend, body: dict[str, Any], links: Links, reply: Reply,
                       origin: object | None) -> None:
        config = self._annotations
        linked = LinkedAppend(request, linked_body(body, links), links.reply_seq, links.thread_root, links.mentions,
                              links.mention_all, config.quote_chars, config.mention_all_members)
        self._then_route(self._store.append_linked(linked), request.sender, request.client_msg_id, reply, origin)

    async def react(self, user_id: int, conversation_id: str, seq: int, emoji: str, client_msg_id: str, *,
                    remove: bool = False) -> SendAck:
        acked: asyncio.Future[SendAck] = asyncio.get_running_loop().create_future()
        self.submit_reaction(user_id, conversation_id, seq, emoji, client_msg_id, resolving(acked), remove=remove)
        return await acked

    def submit_reaction(self, user_id: int, conversation_id: str, seq: int, emoji: str, client_msg_id: str,
                        reply: Reply, *, remove: bool = False, origin: object | None = None) -> None:
        """Add (or take back) a reaction to message ``seq``: an event message appended and delivered like an edit."""
        if self._rates is not None:
            self._rates.check(self._rates.sends, user_id, "messages")
        client_msg_id = check_client_msg_id(client_msg_id)
        _must_name_one(conversation_id)
        config = self._annotations
        request = ReactionAppend(conversation_id, user_id, seq, check_emoji(emoji, config.emoji_chars), remove,
                                 client_msg_id, self._clock.now_ms(), config.reactions_per_message,
                                 config.reactions_per_user)
        self._then_route(self._store.append_reaction(request), user_id, client_msg_id, reply, origin)

    async def thread_messages(self, user_id: int, conversation_id: str, root_seq: int, *, after: int = 0,
                              limit: int | None = None) -> Page:
        """A page of the thread under ``root_seq``, oldest first, after ``after``."""
        _must_name_one(conversation_id)
        page_size = self._limits.history_page_size
        return await self._store.thread_messages(user_id, conversation_id, root_seq, after,
                                                 min(limit or page_size, page_size))

    async def threads(self, user_id: int, conversation_id: str) -> list[ThreadSummary]:
        _must_name_one(conversation_id)
        return await self._store.threads(user_id, conversation_id, self._limits.history_page_size)

    async def mark_thread_read(self, user_id: int, conversation_id: str, root_seq: int, seq: int) -> None:
        _must_name_one(conversation_id)
        await self._store.mark_thread_read(user_id, conversation_id, root_seq, seq)


def _without_mark(body: Any) -> Any:
    """A body without the server's forwarded mark, to be checked as a client's."""
    if isinstance(body, dict) and FORWARDED in body:
        return {key: value for key, value in body.items() if key != FORWARDED}
    return body


def _known(cursors: Mapping[str, int]) -> Mapping[str, int]:
    """A cursor for a conversation the user is not in contributes nothing (protocol 9); neither does one that names
    no conversation at all."""
    if any(names_nothing(conversation_id) for conversation_id in cursors):
        return {cid: seq for cid, seq in cursors.items() if not names_nothing(cid)}
    return cursors


def _must_name_one(conversation_id: str) -> None:
    """Refuse, as not found, an id no conversation can have, before a store sees it (protocol/ids.names_nothing)."""
    if names_nothing(conversation_id):
        raise ConversationNotFound()
