"""HTTP: finding users, contacts, blocks, settings and presence."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from pica.api.common import body_bool, body_int, caller, id_list_param, json_body, json_response, path_int, services
from pica.core.validation import normalize_username
from pica.errors import BadRequest, UserNotFound
from pica.store.base import PRIVACY_LEVELS, UserRecord


def user_json(user: UserRecord) -> dict[str, Any]:
    """A user as look-ups show them: a deleted account keeps its id, with no name and ``deleted: true``."""
    return {"user_id": user.user_id, "username": user.username, "deleted": user.deleted}


async def find_user(request: web.Request) -> web.Response:
    """GET /v1/users?username=NAME -> {"user_id", "username"} (404 user_not_found)."""
    viewer = await caller(request)
    name = normalize_username(request.query.get("username", ""))
    user = await services(request).accounts.look_up(viewer, username=name)
    if user is None:
        raise UserNotFound()
    return json_response(user_json(user))


async def user_by_id(request: web.Request) -> web.Response:
    """GET /v1/users/{user_id} -> {"user_id", "username"}: usernames are public handles, so any signed-in user may
    turn an id (a group member, a message's sender) into a name."""
    viewer = await caller(request)
    user = await services(request).accounts.look_up(viewer, user_id=path_int(request, "user_id"))
    if user is None:
        raise UserNotFound()
    return json_response(user_json(user))


async def me(request: web.Request) -> web.Response:
    user_id = await caller(request)
    node = services(request)
    user = await node.accounts.get(user_id)
    settings = await node.social.settings(user_id)
    return json_response({"user_id": user_id, "username": user.username if user else "",
                          "only_contacts": settings.only_contacts, "group_add": settings.group_add,
                          "presence": settings.presence})


async def update_settings(request: web.Request) -> web.Response:
    """PATCH /v1/me {"only_contacts"?: bool, "group_add"?: level, "presence"?: level}, at least one. Nothing is
    changed unless every field is valid: ``only_contacts`` is type-checked here, the levels by the store before it
    writes, and they are written first."""
    user_id = await caller(request)
    body = await json_body(request)
    if not {"only_contacts", "group_add", "presence"} & body.keys():
        raise BadRequest("nothing to change: give 'only_contacts', 'group_add' and/or 'presence'")
    only_contacts = body_bool(body, "only_contacts") if "only_contacts" in body else None
    for name in ("group_add", "presence"):
        if name in body and not isinstance(body[name], str):
            raise BadRequest(f"'{name}' must be one of {', '.join(PRIVACY_LEVELS)}")
    group_add, presence = body.get("group_add"), body.get("presence")
    social = services(request).social
    if group_add is not None or presence is not None:
        await social.set_privacy(user_id, group_add=group_add, presence=presence)
    if only_contacts is not None:
        await social.set_only_contacts(user_id, only_contacts)
    return await me(request)


async def contacts(request: web.Request) -> web.Response:
    user_id = await caller(request)
    listed = await services(request).social.contacts(user_id)
    return json_response({"contacts": [{"user_id": c.user_id, "username": c.username, "state": c.state}
                                       for c in listed]})


async def request_contact(request: web.Request) -> web.Response:
    """POST /v1/contacts/requests {"user_id"} -> {"state": "outgoing" | "accepted"}."""
    user_id = await caller(request)
    body = await json_body(request)
    state = await services(request).social.request(user_id, body_int(body, "user_id"))
    return json_response({"state": state})


async def accept(request: web.Request) -> web.Response:
    user_id = await caller(request)
    state = await services(request).social.respond(user_id, path_int(request, "user_id"), True)
    return json_response({"state": state})


async def decline(request: web.Request) -> web.Response:
    user_id = await caller(request)
    state = await services(request).social.respond(user_id, path_int(request, "user_id"), False)
    return json_response({"state": state})


async def remove_contact(request: web.Request) -> web.Response:
    user_id = await caller(request)
    await services(request).social.remove(user_id, path_int(request, "user_id"))
    return json_response({"state": "none"})


async def blocks(request: web.Request) -> web.Response:
    user_id = await caller(request)
    return json_response({"blocked": await services(request).social.blocked(user_id)})


async def block(request: web.Request) -> web.Response:
    """PUT /v1/blocks/{user_id}: they can no longer message you, request you, or see your presence."""
    user_id = await caller(request)
    await services(request).social.set_blocked(user_id, path_int(request, "user_id"), True)
    return json_response({"blocked": True})


async def unblock(request: web.Request) -> web.Response:
    user_id = await caller(request)
    await services(request).social.set_blocked(user_id, path_int(request, "user_id"), False)
    return json_response({"blocked": False})


async def presence(request: web.Request) -> web.Response:
    """GET /v1/presence?user_ids=1,2,3: those the caller may see (contacts, 1:1 peers, not blocking them)."""
    user_id = await caller(request)
    wanted = id_list_param(request, "user_ids")
    if not 0 < len(wanted) <= 500:
        raise BadRequest("ask for 1-500 user_ids")
    found = await services(request).social.presence(user_id, wanted)
    return json_response({"presence": [{"user_id": p.user_id, "online": p.online, "last_seen": p.last_seen}
                                       for p in found]})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/users", find_user)
    app.router.add_get("/v1/users/{user_id}", user_by_id)
    app.router.add_get("/v1/me", me)
    app.router.add_patch("/v1/me", update_settings)
    app.router.add_get("/v1/contacts", contacts)
    app.router.add_post("/v1/contacts/requests", request_contact)
    app.router.add_post("/v1/contacts/requests/{user_id}/accept", accept)
    app.router.add_post("/v1/contacts/requests/{user_id}/decline", decline)
    app.router.add_delete("/v1/contacts/{user_id}", remove_contact)
    app.router.add_get("/v1/blocks", blocks)
    app.router.add_put("/v1/blocks/{user_id}", block)
    app.router.add_delete("/v1/blocks/{user_id}", unblock)
    app.router.add_get("/v1/presence", presence)
