"""HTTP: groups. Every path answers 404 group_not_found alike for a group that does not exist and for one the
caller is not a member of."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from pica.api.bodies import Group, PositiveId
from pica.api.common import body_of, caller, json_response, path_int, services
from pica.api.spec import route
from pica.errors import BadRequest


class NewGroup(msgspec.Struct):
    name: str
    """1-100 characters."""
    members: list[PositiveId] = []
    """Users to add (or invite, where their ``group_add`` setting asks for consent); the caller is the owner."""


class CreatedGroup(Group):
    invited: list[int]
    """Those named who were invited rather than added (protocol section 12.6)."""


class Groups(msgspec.Struct):
    groups: list[Group]


class Member(msgspec.Struct):
    user_id: int
    username: str
    role: str
    """``owner``, ``admin`` or ``member``."""
    muted: bool
    joined_seq: int


class Members(msgspec.Struct):
    members: list[Member]


class AddMembers(msgspec.Struct):
    user_ids: list[PositiveId]


class MembersAdded(Group):
    added: list[int]
    invited: list[int]


class GroupChange(msgspec.Struct):
    """At least one field."""

    name: str | msgspec.UnsetType = msgspec.UNSET
    muted_all: bool | msgspec.UnsetType = msgspec.UNSET


class Role(msgspec.Struct):
    role: str
    """``admin`` or ``member``."""


class Mute(msgspec.Struct):
    muted: bool


class Transfer(msgspec.Struct):
    user_id: PositiveId


async def create_group(request: web.Request) -> web.Response:
    user_id = await caller(request)
    body = await body_of(request, NewGroup)
    change = await services(request).groups.create(user_id, body.name, body.members)
    return json_response(CreatedGroup(**Group.fields_of(change.group), invited=list(change.invited)), status=201)


async def my_groups(request: web.Request) -> web.Response:
    user_id = await caller(request)
    return json_response(Groups([Group.of(g) for g in await services(request).groups.of_user(user_id)]))


async def get_group(request: web.Request) -> web.Response:
    user_id = await caller(request)
    return json_response(Group.of(await services(request).groups.get(user_id, path_int(request, "group_id"))))


async def members(request: web.Request) -> web.Response:
    user_id = await caller(request)
    listed = await services(request).groups.members(user_id, path_int(request, "group_id"))
    return json_response(Members([Member(m.user_id, m.username, m.role, m.muted, m.joined_seq) for m in listed]))


async def _act(request: web.Request, kind: str, **kwargs: Any) -> web.Response:
    user_id = await caller(request)
    change = await services(request).groups.act(kind, user_id, path_int(request, "group_id"), **kwargs)
    return json_response(Group.of(change.group))


async def add_members(request: web.Request) -> web.Response:
    """Owner or admin. Says who was added and who was invited (their ``group_add`` setting asks for their
    consent)."""
    body = await body_of(request, AddMembers)
    user_id = await caller(request)
    change = await services(request).groups.act("add", user_id, path_int(request, "group_id"),
                                                user_ids=body.user_ids)
    return json_response(MembersAdded(**Group.fields_of(change.group), added=list(change.added),
                                      invited=list(change.invited)))


async def remove_member(request: web.Request) -> web.Response:
    """Owner or admin removes a lower-ranked member; yourself = leave."""
    target = path_int(request, "user_id")
    if target == await caller(request):
        return await _act(request, "leave")
    return await _act(request, "remove", user_ids=[target])


async def leave(request: web.Request) -> web.Response:
    return await _act(request, "leave")


async def update_group(request: web.Request) -> web.Response:
    # Both fields are checked (decoded) before either change is made: a 400 must not leave the rename done.
    body = await body_of(request, GroupChange)
    if body.name is msgspec.UNSET and body.muted_all is msgspec.UNSET:
        raise BadRequest("nothing to change: give 'name' and/or 'muted_all'")
    response = None
    if body.name is not msgspec.UNSET:
        response = await _act(request, "rename", name=body.name)
    if body.muted_all is not msgspec.UNSET:
        response = await _act(request, "mute_all", flag=body.muted_all)
    assert response is not None
    return response


async def set_role(request: web.Request) -> web.Response:
    """Owner only."""
    body = await body_of(request, Role)
    return await _act(request, "role", user_ids=[path_int(request, "user_id")], role=body.role)


async def mute_member(request: web.Request) -> web.Response:
    body = await body_of(request, Mute)
    return await _act(request, "mute", user_ids=[path_int(request, "user_id")], flag=body.muted)


async def transfer(request: web.Request) -> web.Response:
    """The owner hands over and becomes an admin."""
    body = await body_of(request, Transfer)
    return await _act(request, "transfer", user_ids=[body.user_id])


async def dissolve(request: web.Request) -> web.Response:
    """Owner only; the group turns read-only."""
    return await _act(request, "dissolve")


def add_routes(app: web.Application) -> None:
    group = "/v1/groups/{group_id}"
    tag = "groups"
    route(app, "POST", "/v1/groups", create_group, summary="Create a group", request=NewGroup,
          response=CreatedGroup, status=201, tag=tag)
    route(app, "GET", "/v1/groups", my_groups, summary="The caller's groups", response=Groups, tag=tag)
    route(app, "GET", group, get_group, summary="A group", response=Group, tag=tag)
    route(app, "PATCH", group, update_group, summary="Rename a group or mute all (owner or admin)",
          request=GroupChange, response=Group, tag=tag)
    route(app, "DELETE", group, dissolve, summary="Dissolve a group (owner)", response=Group, tag=tag)
    route(app, "GET", group + "/members", members, summary="A group's members", response=Members, tag=tag)
    route(app, "POST", group + "/members", add_members, summary="Add or invite members (owner or admin)",
          request=AddMembers, response=MembersAdded, tag=tag)
    route(app, "DELETE", group + "/members/{user_id}", remove_member,
          summary="Remove a member (owner or admin); the caller's own id leaves", response=Group, tag=tag)
    route(app, "POST", group + "/members/{user_id}/role", set_role, summary="Make a member admin or not (owner)",
          request=Role, response=Group, tag=tag)
    route(app, "POST", group + "/members/{user_id}/mute", mute_member, summary="Mute or unmute a member",
          request=Mute, response=Group, tag=tag)
    route(app, "POST", group + "/leave", leave, summary="Leave a group", response=Group, tag=tag)
    route(app, "POST", group + "/transfer", transfer, summary="Hand the group over (owner)", request=Transfer,
          response=Group, tag=tag)
