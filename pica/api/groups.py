"""HTTP: groups. Every path answers 404 group_not_found alike for a group that does not exist and for one the
caller is not a member of."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from pica.api.common import body_bool, body_int, caller, json_body, json_response, path_int, services
from pica.errors import BadRequest
from pica.store.base import GroupRecord, MemberRecord


def group_json(g: GroupRecord) -> dict[str, Any]:
    return {"group_id": g.group_id, "conversation_id": g.conversation_id, "name": g.name, "owner_id": g.owner_id,
            "muted_all": g.muted_all, "dissolved": g.dissolved, "created_at": g.created_at,
            "member_count": g.member_count}


def member_json(m: MemberRecord) -> dict[str, Any]:
    return {"user_id": m.user_id, "username": m.username, "role": m.role, "muted": m.muted,
            "joined_seq": m.joined_seq}


async def create_group(request: web.Request) -> web.Response:
    """POST /v1/groups {"name", "members": [user_id, ...]} -> 201 group."""
    user_id = await caller(request)
    body = await json_body(request)
    change = await services(request).groups.create(user_id, body.get("name"), body.get("members", []))
    return json_response({**group_json(change.group), "invited": list(change.invited)}, status=201)


async def my_groups(request: web.Request) -> web.Response:
    user_id = await caller(request)
    return json_response({"groups": [group_json(g) for g in await services(request).groups.of_user(user_id)]})


async def get_group(request: web.Request) -> web.Response:
    user_id = await caller(request)
    return json_response(group_json(await services(request).groups.get(user_id, path_int(request, "group_id"))))


async def members(request: web.Request) -> web.Response:
    user_id = await caller(request)
    listed = await services(request).groups.members(user_id, path_int(request, "group_id"))
    return json_response({"members": [member_json(m) for m in listed]})


async def _act(request: web.Request, kind: str, **kwargs: Any) -> web.Response:
    user_id = await caller(request)
    change = await services(request).groups.act(kind, user_id, path_int(request, "group_id"), **kwargs)
    return json_response(group_json(change.group))


async def add_members(request: web.Request) -> web.Response:
    """POST /v1/groups/{id}/members {"user_ids": [...]}: owner or admin. Says who was added and who was invited
    (their ``group_add`` setting asks for their consent)."""
    body = await json_body(request)
    user_id = await caller(request)
    change = await services(request).groups.act("add", user_id, path_int(request, "group_id"),
                                                user_ids=body.get("user_ids"))
    return json_response({**group_json(change.group), "added": list(change.added), "invited": list(change.invited)})


async def remove_member(request: web.Request) -> web.Response:
    """DELETE /v1/groups/{id}/members/{user_id}: owner or admin removes a lower-ranked member; yourself = leave."""
    target = path_int(request, "user_id")
    if target == await caller(request):
        return await _act(request, "leave")
    return await _act(request, "remove", user_ids=[target])


async def leave(request: web.Request) -> web.Response:
    return await _act(request, "leave")


async def update_group(request: web.Request) -> web.Response:
    """PATCH /v1/groups/{id} {"name"?, "muted_all"?}."""
    body = await json_body(request)
    if not {"name", "muted_all"} & body.keys():
        raise BadRequest("nothing to change: give 'name' and/or 'muted_all'")
    # Both fields are checked before either change is made: a 400 must not leave the rename done.
    if "name" in body and not isinstance(body["name"], str):
        raise BadRequest("'name' must be a string")
    muted_all = body_bool(body, "muted_all") if "muted_all" in body else None
    response = None
    if "name" in body:
        response = await _act(request, "rename", name=body["name"])
    if muted_all is not None:
        response = await _act(request, "mute_all", flag=muted_all)
    assert response is not None
    return response


async def set_role(request: web.Request) -> web.Response:
    """POST /v1/groups/{id}/members/{user_id}/role {"role": "admin" | "member"}: owner only."""
    body = await json_body(request)
    role = body.get("role")
    if not isinstance(role, str):
        raise BadRequest("'role' must be 'admin' or 'member'")
    return await _act(request, "role", user_ids=[path_int(request, "user_id")], role=role)


async def mute_member(request: web.Request) -> web.Response:
    """POST /v1/groups/{id}/members/{user_id}/mute {"muted": bool}."""
    body = await json_body(request)
    return await _act(request, "mute", user_ids=[path_int(request, "user_id")], flag=body_bool(body, "muted"))


async def transfer(request: web.Request) -> web.Response:
    """POST /v1/groups/{id}/transfer {"user_id"}: the owner hands over and becomes an admin."""
    body = await json_body(request)
    return await _act(request, "transfer", user_ids=[body_int(body, "user_id")])


async def dissolve(request: web.Request) -> web.Response:
    """DELETE /v1/groups/{id}: owner only; the group turns read-only."""
    return await _act(request, "dissolve")


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/groups", create_group)
    app.router.add_get("/v1/groups", my_groups)
    app.router.add_get("/v1/groups/{group_id}", get_group)
    app.router.add_patch("/v1/groups/{group_id}", update_group)
    app.router.add_delete("/v1/groups/{group_id}", dissolve)
    app.router.add_get("/v1/groups/{group_id}/members", members)
    app.router.add_post("/v1/groups/{group_id}/members", add_members)
    app.router.add_delete("/v1/groups/{group_id}/members/{user_id}", remove_member)
    app.router.add_post("/v1/groups/{group_id}/members/{user_id}/role", set_role)
    app.router.add_post("/v1/groups/{group_id}/members/{user_id}/mute", mute_member)
    app.router.add_post("/v1/groups/{group_id}/leave", leave)
    app.router.add_post("/v1/groups/{group_id}/transfer", transfer)
