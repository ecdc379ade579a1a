"""HTTP: reactions and threads (docs/protocol.md section 28). Replies and mentions are sends (POST /v1/messages)."""

from __future__ import annotations

import msgspec
from aiohttp import web

from pica.api.bodies import Ack, Cursor, Message, Ok, PositiveId
from pica.api.common import body_of, caller, json_response, path_int, services
from pica.api.spec import route, struct_query


class React(msgspec.Struct):
    client_msg_id: str
    """The reaction event's idempotency key (protocol section 8.2)."""
    emoji: str
    """1 to ``annotations.emoji_chars`` characters (default 16)."""
    remove: bool = False
    """Take back my reaction with this emoji instead of adding it."""


class ThreadQuery(msgspec.Struct):
    after_seq: Cursor = 0
    limit: PositiveId | None = None
    """Capped at ``history_page_size``."""


class ThreadMessages(msgspec.Struct):
    """A thread's messages ascending by seq after ``after_seq``; ``more``: newer ones exist."""

    conversation_id: str
    root: int
    messages: list[Message]
    more: bool


class Thread(msgspec.Struct):
    """A thread the caller takes part in: ``unread`` counts the others' messages after ``read_seq``."""

    root: int
    count: int
    last_seq: int
    read_seq: int
    unread: int


class Threads(msgspec.Struct):
    threads: list[Thread]


class ThreadRead(msgspec.Struct):
    seq: PositiveId


async def react(request: web.Request) -> web.Response:
    user_id = await caller(request)
    body = await body_of(request, React)
    ack = await services(request).chat.react(user_id, request.match_info["conversation_id"], path_int(request, "seq"),
                                             body.emoji, body.client_msg_id, remove=body.remove)
    return json_response(Ack(ack.conversation_id, ack.seq, ack.ts, ack.client_msg_id, ack.duplicate))


async def threads(request: web.Request) -> web.Response:
    user_id = await caller(request)
    found = await services(request).chat.threads(user_id, request.match_info["conversation_id"])
    return json_response(Threads([Thread(t.root_seq, t.count, t.last_seq, t.read_seq, t.unread) for t in found]))


async def thread_messages(request: web.Request) -> web.Response:
    user_id = await caller(request)
    conversation_id, root = request.match_info["conversation_id"], path_int(request, "seq")
    query = struct_query(request, ThreadQuery)
    page = await services(request).chat.thread_messages(user_id, conversation_id, root, after=query.after_seq,
                                                        limit=query.limit)
    return json_response(ThreadMessages(conversation_id, root, [Message.of(m) for m in page.messages], page.more))


async def thread_read(request: web.Request) -> web.Response:
    user_id = await caller(request)
    body = await body_of(request, ThreadRead)
    await services(request).chat.mark_thread_read(user_id, request.match_info["conversation_id"],
                                                  path_int(request, "seq"), body.seq)
    return json_response(Ok(True))


def add_routes(app: web.Application) -> None:
    conversation = "/v1/conversations/{conversation_id}"
    tag = "messages"
    route(app, "POST", conversation + "/messages/{seq}/reactions", react,
          summary="Add or take back a reaction to a message (like the react frame)", request=React, response=Ack,
          tag=tag)
    route(app, "GET", conversation + "/threads", threads, summary="The threads the caller takes part in",
          response=Threads, tag=tag)
    route(app, "GET", conversation + "/threads/{seq}", thread_messages,
          summary="A page of the thread under message seq (like the thread frame)", query=ThreadQuery,
          response=ThreadMessages, tag=tag)
    route(app, "POST", conversation + "/threads/{seq}/read", thread_read,
          summary="Move the caller's read cursor in a thread", request=ThreadRead, response=Ok, tag=tag)
