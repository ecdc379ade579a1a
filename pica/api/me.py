"""HTTP: my account's lifecycle (delete, export) and my group invitations (protocol §23.5)."""

from __future__ import annotations

from typing import Any, ClassVar, Final

import msgspec
from aiohttp import web

from pica.api.bodies import ContactState, Group
from pica.api.common import body_of, caller, client_address, json_response, path_int, services
from pica.api.spec import route
from pica.errors import InvalidCredentials, PicaError
from pica.gateway.http_headers import headers_for

_encode: Final = msgspec.json.Encoder().encode


class DeleteAccount(msgspec.Struct):
    password: str

    FIELD_ERRORS: ClassVar[dict[str, type[PicaError]]] = {"password": InvalidCredentials}


class ExportSettings(msgspec.Struct):
    only_contacts: bool
    group_add: str
    presence: str


class ExportProfile(msgspec.Struct):
    user_id: int
    username: str
    created_at: int
    settings: ExportSettings


class ExportContact(msgspec.Struct):
    user_id: int
    username: str
    state: str
    updated_at: int


class ExportGroup(msgspec.Struct):
    group_id: int
    conversation_id: str
    name: str
    owner_id: int
    dissolved: bool
    created_at: int


class Invitation(msgspec.Struct):
    group_id: int
    name: str
    inviter_id: int
    created_at: int


class SentMessage(msgspec.Struct):
    conversation_id: str
    seq: int
    ts: int
    client_msg_id: str
    body: dict[str, Any]


class Export(msgspec.Struct):
    """My data (protocol section 14.6): streamed, the messages I sent last, ordered by ``client_msg_id``."""

    format: str
    exported_at: int
    profile: ExportProfile
    contacts: list[ExportContact]
    blocked: list[int]
    groups: list[ExportGroup]
    invitations: list[Invitation]
    messages: list[SentMessage]


class Invitations(msgspec.Struct):
    """My pending, still valid invitations, by ``group_id``."""

    invitations: list[Invitation]


async def delete_me(request: web.Request) -> web.Response:
    """-> 204: the account is deleted (protocol §14.5); wrong or missing password 401 ``invalid_credentials``,
    counted as a failed login. The body is read first: a malformed one is 400 whoever sends it."""
    body = await body_of(request, DeleteAccount)
    user_id = await caller(request)
    await services(request).lifecycle.delete_account(user_id, body.password, client_address(request))
    return web.Response(status=204)


async def export_me(request: web.Request) -> web.StreamResponse:
    """One JSON object, streamed: what the export holds at once is one page of messages.

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
        chunk = b",".join(_encode(SentMessage(m.conversation_id, m.seq, m.ts, m.client_msg_id, m.body))
                          for m in page)
        await response.write(chunk if first else b"," + chunk)
        first = False
    await response.write(b"]}\n")
    await response.write_eof()
    return response


async def invitations(request: web.Request) -> web.Response:
    user_id = await caller(request)
    listed = await services(request).groups.invitations(user_id)
    return json_response(Invitations([Invitation(i.group_id, i.name, i.inviter_id, i.created_at) for i in listed]))


async def accept_invitation(request: web.Request) -> web.Response:
    """-> the group, which I joined."""
    user_id = await caller(request)
    group = await services(request).groups.answer(user_id, path_int(request, "group_id"), True)
    assert group is not None
    return json_response(Group.of(group))


async def decline_invitation(request: web.Request) -> web.Response:
    user_id = await caller(request)
    await services(request).groups.answer(user_id, path_int(request, "group_id"), False)
    return json_response(ContactState("declined"))


def add_routes(app: web.Application) -> None:
    route(app, "DELETE", "/v1/me", delete_me, summary="Delete my account", request=DeleteAccount, status=204,
          tag="me")
    # Streamed: the response check (pica.api.checks) cannot see it; tests/api/test_openapi.py decodes one.
    route(app, "GET", "/v1/me/export", export_me, summary="Export my data", response=Export, tag="me")
    route(app, "GET", "/v1/invitations", invitations, summary="My pending group invitations",
          response=Invitations, tag="groups")
    route(app, "POST", "/v1/invitations/{group_id}/accept", accept_invitation, summary="Join a group I was invited to",
          response=Group, tag="groups")
    route(app, "POST", "/v1/invitations/{group_id}/decline", decline_invitation,
          summary="Decline a group invitation", response=ContactState, tag="groups")
