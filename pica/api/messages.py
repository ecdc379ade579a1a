"""HTTP: sending, conversations, history, receipts, recall/edit/delete and search."""

from __future__ import annotations

import time
from typing import Any

import msgspec
from aiohttp import web

from pica.api.common import STARTED_KEY, body_int, caller, int_param, json_body, json_response, path_int, services
from pica.core.wire import message_frame
from pica.errors import BadRequest
from pica.store.base import ConversationSummary, MessageRecord


def message_json(record: MessageRecord) -> dict[str, Any]:
    data = msgspec.structs.asdict(message_frame(record))
    data.pop("t", None)
    return data


def summary_json(c: ConversationSummary) -> dict[str, Any]:
    data: dict[str, Any] = {
        "conversation_id": c.conversation_id,
        "kind": c.kind,
        "name": c.name,
        "last_seq": c.last_seq,
        "last_ts": c.last_ts,
        "unread": c.unread,
        "delivered_seq": c.delivered_seq,
        "read_seq": c.read_seq,
        "last_message": message_json(c.last_message) if c.last_message else None,
    }
    if c.kind == "direct":
        data.update(peer_id=c.peer_id, peer_delivered_seq=c.peer_delivered_seq, peer_read_seq=c.peer_read_seq)
    if c.kind == "group":
        data["group_id"] = c.group_id
    return data


async def send_message(request: web.Request) -> web.Response:
    """POST /v1/messages {"to" | "group_id", "client_msg_id", "body"}. Any client-sent sender or time is ignored."""
    user_id = await caller(request)
    body = await json_body(request)
    to = body_int(body, "to") if "to" in body else None
    group_id = body_int(body, "group_id") if "group_id" in body else None
    client_msg_id = body.get("client_msg_id")
    if not isinstance(client_msg_id, str):
        raise BadRequest("'client_msg_id' must be a string of 1-64 characters")
    node = services(request)
    ack = await node.chat.send(user_id, client_msg_id, body.get("body"), to=to, group_id=group_id)
    node.metrics.messages_acked += 1
    node.metrics.send_ack_for("http").observe(time.monotonic() - request[STARTED_KEY])
    return json_response({"conversation_id": ack.conversation_id, "seq": ack.seq, "ts": ack.ts,
                          "client_msg_id": ack.client_msg_id, "duplicate": ack.duplicate})


async def conversations(request: web.Request) -> web.Response:
    """GET /v1/conversations?limit=&before_ts=&before_id= : most recently active first, with unread counts. The
    next page: before_ts and before_id of the last item (ties in last_ts are ordered by conversation_id)."""
    user_id = await caller(request)
    items = await services(request).chat.conversations(
        user_id, limit=int_param(request, "limit", minimum=1), before_ts=int_param(request, "before_ts"),
        before_id=request.query.get("before_id", ""))
    return json_response({"conversations": [summary_json(c) for c in items]})


async def conversation_messages(request: web.Request) -> web.Response:
    user_id = await caller(request)
    conversation_id = request.match_info["conversation_id"]
    page = await services(request).chat.history(
        user_id, conversation_id, after=int_param(request, "after_seq"), before=int_param(request, "before_seq"),
        limit=int_param(request, "limit", minimum=1))
    return json_response({"conversation_id": conversation_id, "messages": [message_json(m) for m in page.messages],
                          "more": page.more})


async def receipts(request: web.Request) -> web.Response:
    """GET /v1/conversations/{id}/receipts: every member's delivered and read cursor (members only)."""
    user_id = await caller(request)
    members = await services(request).chat.receipts(user_id, request.match_info["conversation_id"])
    return json_response({"members": [{"user_id": m.user_id, "delivered_seq": m.delivered_seq,
                                       "read_seq": m.read_seq} for m in members]})


async def mark_read(request: web.Request) -> web.Response:
    """POST /v1/conversations/{id}/read {"seq"}."""
    user_id = await caller(request)
    body = await json_body(request)
    await services(request).chat.mark_read(user_id, request.match_info["conversation_id"], body_int(body, "seq"))
    return json_response({"ok": True})


async def _event(request: web.Request, kind: str) -> web.Response:
    user_id = await caller(request)
    body = await json_body(request)
    seq = path_int(request, "seq")
    client_msg_id = body.get("client_msg_id")
    if not isinstance(client_msg_id, str):
        raise BadRequest("'client_msg_id' must be a string of 1-64 characters")
    text = body.get("text", "")
    if kind == "edit" and not isinstance(text, str):
        raise BadRequest("'text' must be a string")
    ack = await services(request).chat.event(kind, user_id, request.match_info["conversation_id"], seq,
                                             client_msg_id, text)
    return json_response({"conversation_id": ack.conversation_id, "seq": ack.seq, "ts": ack.ts,
                          "client_msg_id": ack.client_msg_id, "duplicate": ack.duplicate})


async def recall(request: web.Request) -> web.Response:
    """POST /v1/conversations/{id}/messages/{seq}/recall {"client_msg_id"}."""
    return await _event(request, "recall")


async def edit(request: web.Request) -> web.Response:
    """POST /v1/conversations/{id}/messages/{seq}/edit {"client_msg_id", "text"}."""
    return await _event(request, "edit")


async def delete_for_me(request: web.Request) -> web.Response:
    """DELETE /v1/conversations/{id}/messages/{seq}: hide it for the caller only."""
    user_id = await caller(request)
    seq = path_int(request, "seq")
    await services(request).chat.delete_for_me(user_id, request.match_info["conversation_id"], seq)
    return json_response({"ok": True})


async def search(request: web.Request) -> web.Response:
    """GET /v1/search?q=&conversation_id=&limit=&offset=&sender=&since=&until=&kind= : in the caller's current
    conversations only; ``messages`` ranked, ``highlights`` beside them in the same order (protocol section 15)."""
    user_id = await caller(request)
    query = request.query.get("q", "")
    page = await services(request).chat.search(
        user_id, query, conversation_id=request.query.get("conversation_id") or None,
        limit=int_param(request, "limit", minimum=1), offset=int_param(request, "offset") or 0,
        sender=int_param(request, "sender", minimum=1), since=int_param(request, "since"),
        until=int_param(request, "until"), kind=request.query.get("kind") or None)
    return json_response({
        "messages": [message_json(hit.message) for hit in page.hits],
        "highlights": [{"text": [list(span) for span in hit.text], "name": [list(span) for span in hit.name]}
                       for hit in page.hits],
        "next_offset": page.next_offset,
    })


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/messages", send_message)
    app.router.add_get("/v1/conversations", conversations)
    app.router.add_get("/v1/conversations/{conversation_id}/messages", conversation_messages)
    app.router.add_get("/v1/conversations/{conversation_id}/receipts", receipts)
    app.router.add_post("/v1/conversations/{conversation_id}/read", mark_read)
    app.router.add_post("/v1/conversations/{conversation_id}/messages/{seq}/recall", recall)
    app.router.add_post("/v1/conversations/{conversation_id}/messages/{seq}/edit", edit)
    app.router.add_delete("/v1/conversations/{conversation_id}/messages/{seq}", delete_for_me)
    app.router.add_get("/v1/search", search)
