"""HTTP: push targets of my session, notification settings per conversation, push privacy (protocol §23.7,
docs/push.md)."""

from __future__ import annotations

import msgspec
from aiohttp import web

from pica.api.common import caller, identity, json_response, services
from pica.api.spec import route, struct_body
from pica.core.devices import DeviceService, PushTarget
from pica.errors import NotFound, Unavailable
from pica.store.base import DeviceRecord, NotificationSetting


class WebPushKeys(msgspec.Struct, forbid_unknown_fields=True):
    p256dh: str
    auth: str


class WebPushSubscription(msgspec.Struct):
    """``PushSubscription.toJSON()`` as a browser gives it (other fields, such as ``expirationTime``, are ignored)."""

    endpoint: str
    keys: WebPushKeys


class DeviceIn(msgspec.Struct, forbid_unknown_fields=True):
    platform: str
    """``apns``, ``fcm`` or ``webpush``."""
    token: str | None = None
    """The APNs device token (hex) or the FCM registration token."""
    subscription: WebPushSubscription | None = None
    """Web Push only."""


class DeviceOut(msgspec.Struct):
    device_id: str
    platform: str
    created_at: int
    current: bool
    """Registered by the session asking."""


class DeviceList(msgspec.Struct):
    devices: list[DeviceOut]


class PushConfigOut(msgspec.Struct):
    platforms: list[str]
    """The platforms this server pushes to (``POST /v1/devices`` refuses the others)."""
    vapid_public_key: str | None
    """The ``applicationServerKey`` a browser subscribes with (base64url); null when Web Push is off."""


class NotificationsIn(msgspec.Struct, forbid_unknown_fields=True):
    level: str
    """``all``, ``mentions`` (only messages whose ``mentions`` name me) or ``none``."""
    mute_until: int | None = None
    """No push before this time (ms since the epoch); null: not muted."""


class NotificationsOut(msgspec.Struct):
    conversation_id: str
    level: str
    mute_until: int | None


class PushPrivacy(msgspec.Struct, forbid_unknown_fields=True):
    privacy: bool
    """Pushes say "New message" only: no sender, no conversation name, no text."""


def _devices(request: web.Request) -> DeviceService:
    devices = services(request).devices
    if devices is None:  # a services bundle built without push (unit tests)
        raise Unavailable("push is not set up on this node")
    return devices


def _device_out(device: DeviceRecord, session_id: str) -> DeviceOut:
    return DeviceOut(device.device_id, device.platform, device.created_at, device.session_id == session_id)


def _timeout(request: web.Request) -> float:
    return services(request).limits.http_body_timeout


async def push_config(request: web.Request) -> web.Response:
    devices = _devices(request)
    return json_response(PushConfigOut(list(devices.platforms), devices.vapid_public_key or None))


async def register_device(request: web.Request) -> web.Response:
    body = await struct_body(request, DeviceIn, timeout=_timeout(request))
    who = await identity(request)
    sub = body.subscription
    target = PushTarget(body.platform, body.token, sub.endpoint if sub else None, sub.keys.p256dh if sub else None,
                        sub.keys.auth if sub else None)
    device = await _devices(request).register(who.user_id, who.session_id, target)
    return json_response(_device_out(device, who.session_id), status=201)


async def list_devices(request: web.Request) -> web.Response:
    who = await identity(request)
    listed = await _devices(request).list(who.user_id)
    return json_response(DeviceList([_device_out(d, who.session_id) for d in listed]))


async def remove_device(request: web.Request) -> web.Response:
    user_id = await caller(request)
    if not await _devices(request).remove(user_id, request.match_info["device_id"]):
        raise NotFound("no such device of yours")
    return web.Response(status=204)


def _notifications_out(setting: NotificationSetting) -> NotificationsOut:
    return NotificationsOut(setting.conversation_id, setting.level, setting.mute_until)


async def put_notifications(request: web.Request) -> web.Response:
    body = await struct_body(request, NotificationsIn, timeout=_timeout(request))
    user_id = await caller(request)
    setting = await _devices(request).set_notifications(user_id, request.match_info["conversation_id"], body.level,
                                                        body.mute_until)
    prefs = services(request).prefs
    if prefs is not None:  # the mute shows in the conversation list: the user's other devices learn it (29.3)
        await prefs.announce_current(user_id, setting.conversation_id)
    return json_response(_notifications_out(setting))


async def get_notifications(request: web.Request) -> web.Response:
    user_id = await caller(request)
    setting = await _devices(request).notifications(user_id, request.match_info["conversation_id"])
    return json_response(_notifications_out(setting))


async def put_privacy(request: web.Request) -> web.Response:
    body = await struct_body(request, PushPrivacy, timeout=_timeout(request))
    user_id = await caller(request)
    await _devices(request).set_privacy(user_id, body.privacy)
    return json_response(PushPrivacy(body.privacy))


async def get_privacy(request: web.Request) -> web.Response:
    user_id = await caller(request)
    return json_response(PushPrivacy(await _devices(request).privacy(user_id)))


def add_routes(app: web.Application) -> None:
    tag = "push"
    route(app, "GET", "/v1/push/config", push_config, summary="Push platforms and the VAPID public key",
          response=PushConfigOut, auth="none", tag=tag)
    route(app, "POST", "/v1/devices", register_device, summary="Register a push target for this session",
          request=DeviceIn, response=DeviceOut, status=201, tag=tag)
    route(app, "GET", "/v1/devices", list_devices, summary="My push targets", response=DeviceList, tag=tag)
    route(app, "DELETE", "/v1/devices/{device_id}", remove_device, summary="Remove a push target", status=204,
          tag=tag)
    route(app, "PUT", "/v1/conversations/{conversation_id}/notifications", put_notifications,
          summary="Set a conversation's notification level and mute", request=NotificationsIn,
          response=NotificationsOut, tag=tag)
    route(app, "GET", "/v1/conversations/{conversation_id}/notifications", get_notifications,
          summary="A conversation's notification level and mute", response=NotificationsOut, tag=tag)
    route(app, "PUT", "/v1/me/push", put_privacy, summary="Set push privacy mode", request=PushPrivacy,
          response=PushPrivacy, tag=tag)
    route(app, "GET", "/v1/me/push", get_privacy, summary="Push privacy mode", response=PushPrivacy, tag=tag)
