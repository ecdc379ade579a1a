"""HTTP: my account's lifecycle (delete, export) and my group invitations (protocol §23.5)."""

from __future__ import annotations

from typing import Final

import msgspec
from aiohttp import web

from pica.api.common import caller, client_address, json_body, json_response, path_int, services
from pica.api.groups import group_json
from pica.gateway.http_headers import headers_for

_encode: Final = msgspec.json.Encoder().encode


async def delete_me(request: web.Request) -> web.Response:
    """DELETE /v1/me {"password"} -> 204: the account is deleted (protocol §14.5); wrong or missing password 401
    ``invalid_credentials``, counted as a failed login. The body is read first: a malformed one is 400 whoever
    sends it."""
    body = await json_body(request)
    user_id = await caller(request)
    await services(request).lifecycle.delete_account(user_id, body.get("password"), client_address(request))
    return web.Response(status=204)


async def export_me(request: web.Request) -> web.StreamResponse:
    """GET /v1/me/export -> one JSON object, streamed: what the export holds at once is one page of messages.

    The status is sent before the messages are read: if the store fails half-way the connection is cut, and the
    client sees a truncated (invalid) JSON document rather than an error body."""
    user_id = await caller(request)
    export = await services(request).lifecycle.export(user_id)
    response = web.StreamResponse(headers={
        "Content-Type": "application/json",
        "Content-Disposition": 'attachment; filename="pica-export.json"',
    })
    # Prepared here, so the security-headers middleware would find it sent already: the handler adds them.
    response.headers.update(headers_for(request.path))
    await response.prepare(request)
    head = _encode(export.head)
    await response.write(head[:-1] + b',"messages":[')  # the head is an object: reopen it for the messages
    first = True
    async for page in export.messages:
        chunk = b",".join(_encode({"conversation_id": m.conversation_id, "seq": m.seq, "ts": m.ts,
                                   "client_msg_id": m.client_msg_id, "body": m.body}) for m in page)
        await response.write(chunk if first else b"," + chunk)
        first = False
    await response.write(b"]}\n")
    await response.write_eof()
    return response


async def invitations(request: web.Request) -> web.Response:
    """GET /v1/invitations -> {"invitations": [...]}: my pending, still valid invitations."""
    user_id = await caller(request)
    listed = await services(request).groups.invitations(user_id)
    return json_response({"invitations": [{"group_id": i.group_id, "name": i.name, "inviter_id": i.inviter_id,
                                           "created_at": i.created_at} for i in listed]})


async def accept_invitation(request: web.Request) -> web.Response:
    """POST /v1/invitations/{group_id}/accept -> the group, which I joined."""
    user_id = await caller(request)
    group = await services(request).groups.answer(user_id, path_int(request, "group_id"), True)
    assert group is not None
    return json_response(group_json(group))


async def decline_invitation(request: web.Request) -> web.Response:
    """POST /v1/invitations/{group_id}/decline -> {"state": "declined"}."""
    user_id = await caller(request)
    await services(request).groups.answer(user_id, path_int(request, "group_id"), False)
    return json_response({"state": "declined"})


def add_routes(app: web.Application) -> None:
    app.router.add_delete("/v1/me", delete_me)
    app.router.add_get("/v1/me/export", export_me)
    app.router.add_get("/v1/invitations", invitations)
    app.router.add_post("/v1/invitations/{group_id}/accept", accept_invitation)
    app.router.add_post("/v1/invitations/{group_id}/decline", decline_invitation)
