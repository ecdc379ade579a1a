"""HTTP: finding users, contacts, blocks, settings and presence."""

from __future__ import annotations

from typing import Annotated, ClassVar

import msgspec
from aiohttp import web

from pica.api.bodies import ContactState, PositiveId
from pica.api.common import body_of, caller, json_response, path_int, services
from pica.api.spec import route, struct_query
from pica.core.validation import normalize_username
from pica.errors import BadRequest, InvalidUsername, PicaError, UserNotFound
from pica.store.base import PRIVACY_LEVELS, UserRecord

Level = Annotated[str, msgspec.Meta(description="one of " + ", ".join(PRIVACY_LEVELS))]
"""A privacy level: who may add me to groups (``group_add``), who sees my presence (``presence``). The store checks
it, so that the socket and HTTP refuse the same values."""


class User(msgspec.Struct):
    """A user as look-ups show them: a deleted account keeps its id, with no name and ``deleted: true``."""

    user_id: int
    username: str
    deleted: bool

    @classmethod
    def of(cls, user: UserRecord) -> User:
        return cls(user.user_id, user.username, user.deleted)


class UserQuery(msgspec.Struct):
    username: str
    """Case-insensitive; a deleted account's name is free, so it is never found by name."""

    FIELD_ERRORS: ClassVar[dict[str, type[PicaError]]] = {"username": InvalidUsername}


class Me(msgspec.Struct):
    """The caller's account and settings."""

    user_id: int
    username: str
    only_contacts: bool
    group_add: Level
    presence: Level


class Settings(msgspec.Struct):
    """At least one field; nothing changes unless every field is valid (protocol sections 12.6, 14.3)."""

    only_contacts: bool | msgspec.UnsetType = msgspec.UNSET
    group_add: Level | msgspec.UnsetType = msgspec.UNSET
    presence: Level | msgspec.UnsetType = msgspec.UNSET


class Contact(msgspec.Struct):
    user_id: int
    username: str
    state: str
    """``outgoing``, ``incoming`` or ``accepted``."""


class Contacts(msgspec.Struct):
    contacts: list[Contact]


class ContactRequest(msgspec.Struct):
    user_id: PositiveId


class Blocked(msgspec.Struct):
    blocked: list[int]


class BlockState(msgspec.Struct):
    blocked: bool


class PresenceQuery(msgspec.Struct):
    user_ids: Annotated[list[PositiveId], msgspec.Meta(min_length=1, max_length=500)]
    """Comma-separated: ``1,2,3``."""


class UserPresence(msgspec.Struct):
    user_id: int
    online: bool
    last_seen: int
    """ms since the epoch; 0 while online."""


class Presence(msgspec.Struct):
    """The visible ones among those asked, in the order asked, duplicates removed."""

    presence: list[UserPresence]


async def find_user(request: web.Request) -> web.Response:
    viewer = await caller(request)
    name = normalize_username(struct_query(request, UserQuery).username)
    user = await services(request).accounts.look_up(viewer, username=name)
    if user is None:
        raise UserNotFound()
    return json_response(User.of(user))


async def user_by_id(request: web.Request) -> web.Response:
    """Usernames are public handles, so any signed-in user may turn an id (a group member, a message's sender) into
    a name."""
    viewer = await caller(request)
    user = await services(request).accounts.look_up(viewer, user_id=path_int(request, "user_id"))
    if user is None:
        raise UserNotFound()
    return json_response(User.of(user))


async def me(request: web.Request) -> web.Response:
    user_id = await caller(request)
    node = services(request)
    user = await node.accounts.get(user_id)
    settings = await node.social.settings(user_id)
    return json_response(Me(user_id, user.username if user else "", settings.only_contacts, settings.group_add,
                            settings.presence))


async def update_settings(request: web.Request) -> web.Response:
    """The levels are checked by the store before it writes, and written first, so that a refused level leaves
    ``only_contacts`` unchanged too."""
    user_id = await caller(request)
    body = await body_of(request, Settings)
    if body.only_contacts is msgspec.UNSET and body.group_add is msgspec.UNSET and body.presence is msgspec.UNSET:
        raise BadRequest("nothing to change: give 'only_contacts', 'group_add' and/or 'presence'")
    group_add = None if body.group_add is msgspec.UNSET else body.group_add
    presence = None if body.presence is msgspec.UNSET else body.presence
    social = services(request).social
    if group_add is not None or presence is not None:
        await social.set_privacy(user_id, group_add=group_add, presence=presence)
    if body.only_contacts is not msgspec.UNSET:
        await social.set_only_contacts(user_id, body.only_contacts)
    return await me(request)


async def contacts(request: web.Request) -> web.Response:
    user_id = await caller(request)
    listed = await services(request).social.contacts(user_id)
    return json_response(Contacts([Contact(c.user_id, c.username, c.state) for c in listed]))


async def request_contact(request: web.Request) -> web.Response:
    """-> ``outgoing``, or ``accepted`` when they had asked you."""
    user_id = await caller(request)
    body = await body_of(request, ContactRequest)
    return json_response(ContactState(await services(request).social.request(user_id, body.user_id)))


async def accept(request: web.Request) -> web.Response:
    user_id = await caller(request)
    state = await services(request).social.respond(user_id, path_int(request, "user_id"), True)
    return json_response(ContactState(state))


async def decline(request: web.Request) -> web.Response:
    user_id = await caller(request)
    state = await services(request).social.respond(user_id, path_int(request, "user_id"), False)
    return json_response(ContactState(state))


async def remove_contact(request: web.Request) -> web.Response:
    user_id = await caller(request)
    await services(request).social.remove(user_id, path_int(request, "user_id"))
    return json_response(ContactState("none"))


async def blocks(request: web.Request) -> web.Response:
    user_id = await caller(request)
    return json_response(Blocked(await services(request).social.blocked(user_id)))


async def block(request: web.Request) -> web.Response:
    """They can no longer message you, request you, or see your presence."""
    user_id = await caller(request)
    await services(request).social.set_blocked(user_id, path_int(request, "user_id"), True)
    return json_response(BlockState(True))


async def unblock(request: web.Request) -> web.Response:
    user_id = await caller(request)
    await services(request).social.set_blocked(user_id, path_int(request, "user_id"), False)
    return json_response(BlockState(False))


async def presence(request: web.Request) -> web.Response:
    """Those the caller may see: contacts, 1:1 peers, not blocking them."""
    user_id = await caller(request)
    wanted = struct_query(request, PresenceQuery).user_ids
    found = await services(request).social.presence(user_id, wanted)
    return json_response(Presence([UserPresence(p.user_id, p.online, p.last_seen) for p in found]))


def add_routes(app: web.Application) -> None:
    users, contacts_tag, me_tag = "users", "contacts", "me"
    route(app, "GET", "/v1/users", find_user, summary="Find a user by username", query=UserQuery, response=User,
          tag=users)
    route(app, "GET", "/v1/users/{user_id}", user_by_id, summary="A user's name, by id", response=User, tag=users)
    route(app, "GET", "/v1/me", me, summary="My account and settings", response=Me, tag=me_tag)
    route(app, "PATCH", "/v1/me", update_settings, summary="Change my settings", request=Settings, response=Me,
          tag=me_tag)
    route(app, "GET", "/v1/contacts", contacts, summary="My contacts and pending requests", response=Contacts,
          tag=contacts_tag)
    route(app, "POST", "/v1/contacts/requests", request_contact, summary="Ask a user to be contacts",
          request=ContactRequest, response=ContactState, tag=contacts_tag)
    route(app, "POST", "/v1/contacts/requests/{user_id}/accept", accept, summary="Accept a contact request",
          response=ContactState, tag=contacts_tag)
    route(app, "POST", "/v1/contacts/requests/{user_id}/decline", decline, summary="Decline a contact request",
          response=ContactState, tag=contacts_tag)
    route(app, "DELETE", "/v1/contacts/{user_id}", remove_contact, summary="Remove a contact",
          response=ContactState, tag=contacts_tag)
    route(app, "GET", "/v1/blocks", blocks, summary="The users I block", response=Blocked, tag=contacts_tag)
    route(app, "PUT", "/v1/blocks/{user_id}", block, summary="Block a user", response=BlockState,
          tag=contacts_tag)
    route(app, "DELETE", "/v1/blocks/{user_id}", unblock, summary="Unblock a user", response=BlockState,
          tag=contacts_tag)
    route(app, "GET", "/v1/presence", presence, summary="Who of these users is online", query=PresenceQuery,
          response=Presence, tag=contacts_tag)

