"""HTTP: sending, conversations, history, receipts, recall/edit/delete and search."""

from __future__ import annotations

import time
from typing import Any

import msgspec
from aiohttp import web

from pica.api.bodies import Ack, Cursor, Message, Ok, PositiveId
from pica.api.common import STARTED_KEY, body_of, caller, json_response, path_int, services
from pica.api.pins import Settings, settings_of
from pica.api.spec import route, struct_query
from pica.core.chat import SendAck
from pica.store.base import ConversationSummary

UNSET: Any = msgspec.UNSET


class Send(msgspec.Struct):
    """Exactly one of ``to`` and ``group_id``. Any sender or time the client gives is ignored."""

    client_msg_id: str
    """1-64 characters, not starting with '~'; a retry sends the same one (protocol section 8.2)."""
    body: dict[str, Any]
    """The message's content (protocol section 7)."""
    to: PositiveId | msgspec.UnsetType = msgspec.UNSET
    group_id: PositiveId | msgspec.UnsetType = msgspec.UNSET


class Conversation(msgspec.Struct, omit_defaults=True):
    """One line of the conversation list. ``peer_*``: direct conversations only; ``group_id``: groups only."""

    conversation_id: str
    kind: str
    """``direct`` or ``group``."""
    name: str
    last_seq: int
    last_ts: int
    unread: int
    unread_mentions: int
    """Of the unread messages, those that mention the caller (by id or @all; protocol section 28)."""
    delivered_seq: int
    read_seq: int
    last_message: Message | None
    peer_id: int | msgspec.UnsetType = msgspec.UNSET
    peer_delivered_seq: int | msgspec.UnsetType = msgspec.UNSET
    peer_read_seq: int | msgspec.UnsetType = msgspec.UNSET
    group_id: int | msgspec.UnsetType = msgspec.UNSET
    settings: Settings | msgspec.UnsetType = msgspec.UNSET
    """My own state of it: draft, pin to top, archive, mark unread, mute (section 29.3); absent: none set."""

    @classmethod
    def of(cls, c: ConversationSummary, settings: Settings | None = None) -> Conversation:
        direct, group = c.kind == "direct", c.kind == "group"
        return cls(c.conversation_id, c.kind, c.name, c.last_seq, c.last_ts, c.unread, c.unread_mentions,
                   c.delivered_seq, c.read_seq,
                   Message.of(c.last_message) if c.last_message else None,
                   peer_id=c.peer_id if direct else UNSET,
                   peer_delivered_seq=c.peer_delivered_seq if direct else UNSET,
                   peer_read_seq=c.peer_read_seq if direct else UNSET,
                   group_id=c.group_id if group else UNSET, settings=settings or UNSET)


class ConversationsQuery(msgspec.Struct):
    limit: PositiveId | None = None
    """Capped at ``history_page_size``."""
    before_ts: Cursor | None = None
    """With ``before_id``: the ``last_ts`` and ``conversation_id`` of the previous page's last item."""
    before_id: str = ""


class Conversations(msgspec.Struct):
    conversations: list[Conversation]


class HistoryQuery(msgspec.Struct):
    after_seq: Cursor | None = None
    before_seq: Cursor | None = None
    limit: PositiveId | None = None


class History(msgspec.Struct):
    """Messages ascending by seq; ``more``: older (or, with ``after_seq``, newer) ones exist."""

    conversation_id: str
    messages: list[Message]
    more: bool


class Receipt(msgspec.Struct):
    user_id: int
    delivered_seq: int
    read_seq: int


class Receipts(msgspec.Struct):
    members: list[Receipt]


class Read(msgspec.Struct):
    seq: PositiveId


class Recall(msgspec.Struct):
    client_msg_id: str


class Edit(msgspec.Struct):
    client_msg_id: str
    text: str


class SearchQuery(msgspec.Struct):
    q: str
    """1-12 words, at most 200 characters (protocol section 15)."""
    conversation_id: str | None = None
    limit: PositiveId | None = None
    offset: Cursor = 0
    """``offset + limit`` at most 200."""
    sender: PositiveId | None = None
    since: Cursor | None = None
    until: Cursor | None = None
    kind: str | None = None
    """``file`` or ``link``."""


class Highlight(msgspec.Struct):
    """Matched spans, [start, end) in code points, of the message's ``body.text`` and of its file's ``name``."""

    text: list[tuple[int, int]]
    name: list[tuple[int, int]]


class SearchResults(msgspec.Struct):
    """``messages`` ranked, ``highlights`` beside them in the same order; ``next_offset`` null on the last page."""

    messages: list[Message]
    highlights: list[Highlight]
    next_offset: int | None


def _ack(ack: SendAck) -> Ack:
    return Ack(ack.conversation_id, ack.seq, ack.ts, ack.client_msg_id, ack.duplicate)


async def send_message(request: web.Request) -> web.Response:
    user_id = await caller(request)
    body = await body_of(request, Send)
    node = services(request)
    ack = await node.chat.send(user_id, body.client_msg_id, body.body,
                               to=None if body.to is msgspec.UNSET else body.to,
                               group_id=None if body.group_id is msgspec.UNSET else body.group_id)
    node.metrics.messages_acked += 1
    node.metrics.send_ack_for("http").observe(time.monotonic() - request[STARTED_KEY])
    return json_response(_ack(ack))


async def conversations(request: web.Request) -> web.Response:
    """Most recently active first, with unread counts; ties in last_ts are ordered by conversation_id."""
    user_id = await caller(request)
    query = struct_query(request, ConversationsQuery)
    items = await services(request).chat.conversations(user_id, limit=query.limit, before_ts=query.before_ts,
                                                       before_id=query.before_id)
    found = await settings_of(request, user_id, [c.conversation_id for c in items])
    return json_response(Conversations([Conversation.of(c, found.get(c.conversation_id)) for c in items]))


async def conversation_messages(request: web.Request) -> web.Response:
    user_id = await caller(request)
    conversation_id = request.match_info["conversation_id"]
    query = struct_query(request, HistoryQuery)
    page = await services(request).chat.history(user_id, conversation_id, after=query.after_seq,
                                                 before=query.before_seq, limit=query.limit)
    return json_response(History(conversation_id, [Message.of(m) for m in page.messages], page.more))


async def receipts(request: web.Request) -> web.Response:
    user_id = await caller(request)
    members = await services(request).chat.receipts(user_id, request.match_info["conversation_id"])
    return json_response(Receipts([Receipt(m.user_id, m.delivered_seq, m.read_seq) for m in members]))


async def mark_read(request: web.Request) -> web.Response:
    user_id = await caller(request)
    body = await body_of(request, Read)
    await services(request).chat.mark_read(user_id, request.match_info["conversation_id"], body.seq)
    return json_response(Ok(True))


async def recall(request: web.Request) -> web.Response:
    user_id = await caller(request)
    body = await body_of(request, Recall)
    return await _event(request, "recall", user_id, body.client_msg_id, "")


async def unpreview(request: web.Request) -> web.Response:
    user_id = await caller(request)
    body = await body_of(request, Recall)  # the same body: a client_msg_id
    return await _event(request, "unpreview", user_id, body.client_msg_id, "")


async def edit(request: web.Request) -> web.Response:
    user_id = await caller(request)
    body = await body_of(request, Edit)
    return await _event(request, "edit", user_id, body.client_msg_id, body.text)


async def _event(request: web.Request, kind: str, user_id: int, client_msg_id: str, text: str) -> web.Response:
    seq = path_int(request, "seq")
    ack = await services(request).chat.event(kind, user_id, request.match_info["conversation_id"], seq,
                                             client_msg_id, text)
    return json_response(_ack(ack))


async def delete_for_me(request: web.Request) -> web.Response:
    user_id = await caller(request)
    seq = path_int(request, "seq")
    await services(request).chat.delete_for_me(user_id, request.match_info["conversation_id"], seq)
    return json_response(Ok(True))


async def search(request: web.Request) -> web.Response:
    """In the caller's current conversations only (protocol section 15)."""
    user_id = await caller(request)
    query = struct_query(request, SearchQuery)
    page = await services(request).chat.search(
        user_id, query.q, conversation_id=query.conversation_id, limit=query.limit, offset=query.offset,
        sender=query.sender, since=query.since, until=query.until, kind=query.kind)
    return json_response(SearchResults([Message.of(hit.message) for hit in page.hits],
                                       [Highlight(hit.text, hit.name) for hit in page.hits], page.next_offset))


def add_routes(app: web.Application) -> None:
    conversation = "/v1/conversations/{conversation_id}"
    tag = "messages"
    route(app, "POST", "/v1/messages", send_message, summary="Send a message (like the send frame)",
          request=Send, response=Ack, tag=tag)
    route(app, "GET", "/v1/conversations", conversations, summary="The caller's conversations, most recent first",
          query=ConversationsQuery, response=Conversations, tag=tag)
    route(app, "GET", conversation + "/messages", conversation_messages, summary="A page of history",
          query=HistoryQuery, response=History, tag=tag)
    route(app, "GET", conversation + "/receipts", receipts, summary="Every member's delivered and read cursors",
          response=Receipts, tag=tag)
    route(app, "POST", conversation + "/read", mark_read, summary="Move the caller's read cursor", request=Read,
          response=Ok, tag=tag)
    route(app, "POST", conversation + "/messages/{seq}/recall", recall, summary="Recall a message of mine",
          request=Recall, response=Ack, tag=tag)
    route(app, "POST", conversation + "/messages/{seq}/unpreview", unpreview,
          summary="Remove the link preview of a message of mine (protocol section 30)", request=Recall, response=Ack,
          tag=tag)
    route(app, "POST", conversation + "/messages/{seq}/edit", edit, summary="Edit a message of mine", request=Edit,
          response=Ack, tag=tag)
    route(app, "DELETE", conversation + "/messages/{seq}", delete_for_me, summary="Delete a message for me only",
          response=Ok, tag=tag)
    route(app, "GET", "/v1/search", search, summary="Search the caller's conversations", query=SearchQuery,
          response=SearchResults, tag=tag)
