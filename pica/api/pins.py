"""HTTP: forwarding, pins, drafts and per-conversation settings (protocol section 29)."""

from __future__ import annotations

from typing import Annotated, TypeVar

import msgspec
from aiohttp import web

from pica.api.bodies import Ack, Error, Message, PositiveId
from pica.api.common import body_of, caller, json_response, path_int, services
from pica.api.spec import route
from pica.core.forwarding import Copy, Destination, ForwardService
from pica.core.pins import PinService, PrefsService
from pica.errors import BadRequest, Unavailable
from pica.protocol.frames import ConversationId
from pica.store.base import ConversationPrefs

UNSET = msgspec.UNSET
T = TypeVar("T")
_IdList = Annotated[list[PositiveId], msgspec.Meta(max_length=1000)]


class ForwardIn(msgspec.Struct, forbid_unknown_fields=True):
    """Messages ``seqs`` of ``conversation_id`` to every user of ``to`` and every group of ``group_ids``."""

    conversation_id: ConversationId
    seqs: _IdList
    client_msg_id: str
    """The forward's idempotency key: copy n (0, 1, ...) is sent with ``<client_msg_id>/<n>``."""
    to: _IdList = msgspec.field(default_factory=list)
    group_ids: _IdList = msgspec.field(default_factory=list)


class CopyOut(msgspec.Struct, omit_defaults=True):
    """One copy: ``ack`` once committed, or ``error`` (the others went on)."""

    source_seq: int
    client_msg_id: str
    to: int | msgspec.UnsetType = UNSET
    group_id: int | msgspec.UnsetType = UNSET
    ack: Ack | msgspec.UnsetType = UNSET
    error: Error | msgspec.UnsetType = UNSET

    @classmethod
    def of(cls, copy: Copy) -> CopyOut:
        ack, error = copy.ack, copy.error
        return cls(copy.source_seq, copy.client_msg_id,
                   to=copy.destination.to if copy.destination.to is not None else UNSET,
                   group_id=copy.destination.group_id if copy.destination.group_id is not None else UNSET,
                   ack=Ack(ack.conversation_id, ack.seq, ack.ts, ack.client_msg_id, ack.duplicate) if ack else UNSET,
                   error=Error(error.code, error.message, error.retryable) if error else UNSET)


class ForwardOut(msgspec.Struct):
    """Destination by destination, each message by seq, in the order they were committed."""

    copies: list[CopyOut]


class PinOut(msgspec.Struct):
    message: Message
    """As the caller sees it (``{"deleted": true}`` if they deleted it for themself)."""
    pinned_by: int
    ts: int


class PinsOut(msgspec.Struct):
    """Most recently pinned first."""

    pins: list[PinOut]


class PinChangeOut(msgspec.Struct):
    pinned: bool
    notice: Message | None
    """The timeline's notice of this change; null when nothing changed (it was so already)."""


class DraftIn(msgspec.Struct, forbid_unknown_fields=True):
    text: Annotated[str, msgspec.Meta(min_length=1)]
    """The draft (``DELETE`` clears it)."""


class SettingsIn(msgspec.Struct, forbid_unknown_fields=True):
    """Only the fields present change."""

    pinned: bool | msgspec.UnsetType = UNSET
    """Pinned to the top of my conversation list."""
    archived: bool | msgspec.UnsetType = UNSET
    marked_unread: bool | msgspec.UnsetType = UNSET
    muted_until: PositiveId | msgspec.UnsetType = UNSET
    """No push before this time (ms since the epoch); a time already past unmutes. The notification level stays."""


class Settings(msgspec.Struct):
    """My own state of a conversation (section 29.3); the ``conversation`` frame carries the same fields."""

    conversation_id: str
    draft: str
    draft_ts: int
    pinned_at: int
    """0: not pinned to the top; else when it was (ms)."""
    archived: bool
    marked_unread: bool
    muted_until: int | None
    level: str

    @classmethod
    def of(cls, p: ConversationPrefs) -> Settings:
        return cls(p.conversation_id, p.draft, p.draft_ts, p.pinned_at, p.archived, p.marked_unread, p.mute_until,
                   p.level)


def _forwarding(request: web.Request) -> ForwardService:
    found = services(request).forwarding
    if found is None:
        raise Unavailable("forwarding is not available on this node")
    return found


def _pins(request: web.Request) -> PinService:
    found = services(request).pins
    if found is None:
        raise Unavailable("pins are not available on this node")
    return found


def _prefs(request: web.Request) -> PrefsService:
    found = services(request).prefs
    if found is None:
        raise Unavailable("conversation settings are not available on this node")
    return found


async def settings_of(request: web.Request, user_id: int, conversation_ids: list[str]) -> dict[str, Settings]:
    """The caller's settings of these conversations, for the conversation list (none when the node has no service)."""
    prefs = services(request).prefs
    if prefs is None or not conversation_ids:
        return {}
    return {c: Settings.of(p) for c, p in (await prefs.of(user_id, conversation_ids)).items()}


async def forward(request: web.Request) -> web.Response:
    user_id = await caller(request)
    body = await body_of(request, ForwardIn)
    destinations = [Destination(to=u) for u in body.to] + [Destination(group_id=g) for g in body.group_ids]
    copies = await _forwarding(request).forward(user_id, body.conversation_id, body.seqs, destinations,
                                                body.client_msg_id)
    return json_response(ForwardOut([CopyOut.of(c) for c in copies]))


async def list_pins(request: web.Request) -> web.Response:
    user_id = await caller(request)
    found = await _pins(request).pins(user_id, request.match_info["conversation_id"])
    return json_response(PinsOut([PinOut(Message.of(p.message), p.pinned_by, p.ts) for p in found]))


async def pin(request: web.Request) -> web.Response:
    return await _set_pin(request, True)


async def unpin(request: web.Request) -> web.Response:
    return await _set_pin(request, False)


async def _set_pin(request: web.Request, pinned: bool) -> web.Response:
    user_id = await caller(request)
    notice = await _pins(request).set_pin(user_id, request.match_info["conversation_id"], path_int(request, "seq"),
                                          pinned)
    return json_response(PinChangeOut(pinned, Message.of(notice) if notice is not None else None))


async def put_draft(request: web.Request) -> web.Response:
    user_id = await caller(request)
    body = await body_of(request, DraftIn)
    prefs = await _prefs(request).save_draft(user_id, request.match_info["conversation_id"], body.text)
    return json_response(Settings.of(prefs))


async def delete_draft(request: web.Request) -> web.Response:
    user_id = await caller(request)
    prefs = await _prefs(request).save_draft(user_id, request.match_info["conversation_id"], "")
    return json_response(Settings.of(prefs))


async def patch_settings(request: web.Request) -> web.Response:
    user_id = await caller(request)
    body = await body_of(request, SettingsIn)
    if body == SettingsIn():
        raise BadRequest("name at least one of pinned, archived, marked_unread, muted_until")
    prefs = await _prefs(request).change(user_id, request.match_info["conversation_id"], pinned=_given(body.pinned),
                                         archived=_given(body.archived), marked_unread=_given(body.marked_unread),
                                         muted_until=_given(body.muted_until))
    return json_response(Settings.of(prefs))


def _given(value: T | msgspec.UnsetType) -> T | None:
    return None if isinstance(value, msgspec.UnsetType) else value


def add_routes(app: web.Application) -> None:
    conversation = "/v1/conversations/{conversation_id}"
    tag = "messages"
    route(app, "POST", "/v1/forward", forward, summary="Forward messages to users and groups", request=ForwardIn,
          response=ForwardOut, tag=tag)
    route(app, "GET", conversation + "/pins", list_pins, summary="A conversation's pinned messages",
          response=PinsOut, tag=tag)
    route(app, "PUT", conversation + "/pins/{seq}", pin, summary="Pin a message (1:1 members, group admins)",
          response=PinChangeOut, tag=tag)
    route(app, "DELETE", conversation + "/pins/{seq}", unpin, summary="Unpin a message", response=PinChangeOut,
          tag=tag)
    route(app, "PUT", conversation + "/draft", put_draft, summary="Save (or clear) my draft of a conversation",
          request=DraftIn, response=Settings, tag=tag)
    route(app, "DELETE", conversation + "/draft", delete_draft, summary="Clear my draft of a conversation",
          response=Settings, tag=tag)
    route(app, "PATCH", conversation + "/settings", patch_settings,
          summary="Pin to top, archive, mark unread, mute: my own state of a conversation", request=SettingsIn,
          response=Settings, tag=tag)
