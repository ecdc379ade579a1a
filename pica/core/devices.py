"""Push targets and notification settings: what a user may register and set (docs/push.md, protocol §23.7).

A device is registered by a session and lives as long as it (pica/store/devices.py). Its token is checked here, in
one place, against its platform's shape and ``push.max_token_bytes``: an APNs token is hexadecimal, an FCM token a
string of URL-safe characters, a Web Push subscription an endpoint URL with its two keys (``p256dh``: a P-256 public
key, 65 bytes uncompressed; ``auth``: 16 bytes), as ``PushSubscription.toJSON()`` gives them.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from dataclasses import dataclass
from typing import Final

from pica.config import PushConfig
from pica.core.ports import Clock
from pica.errors import BadRequest
from pica.store.base import NOTIFICATION_LEVELS, PUSH_PLATFORMS, DeviceRecord, NotificationSetting, Store

_HEX: Final = re.compile(r"[0-9A-Fa-f]+")
_FCM_TOKEN: Final = re.compile(r"[A-Za-z0-9_:\-.]+")
_MAX_TS: Final = 2**53 - 1


@dataclass(frozen=True, slots=True)
class PushTarget:
    """A registration request, before it is checked."""

    platform: str
    token: str | None = None
    endpoint: str | None = None
    p256dh: str | None = None
    auth: str | None = None


def _b64url(value: str, name: str, size: int) -> str:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise BadRequest(f"subscription.keys.{name} must be base64url") from None
    if len(raw) != size or (name == "p256dh" and raw[0] != 4):
        raise BadRequest(f"subscription.keys.{name} must be {size} bytes" +
                         (" (an uncompressed P-256 point)" if name == "p256dh" else ""))
    return value.rstrip("=")


class DeviceService:
    def __init__(self, store: Store, config: PushConfig, clock: Clock, vapid_public_key: str = "") -> None:
        self._store = store
        self._config = config
        self._clock = clock
        self.vapid_public_key = vapid_public_key
        """Base64url of the VAPID public key (``applicationServerKey``); empty: Web Push is off."""

    @property
    def platforms(self) -> tuple[str, ...]:
        return self._config.platforms

    def _checked(self, target: PushTarget) -> tuple[str, str, str]:
        """(token, p256dh, auth) of a valid registration of a configured platform, else BadRequest."""
        if target.platform not in PUSH_PLATFORMS:
            raise BadRequest(f"platform must be one of {', '.join(PUSH_PLATFORMS)}")
        if target.platform not in self._config.platforms:
            raise BadRequest(f"push platform {target.platform!r} is not configured on this server")
        limit = self._config.max_token_bytes
        if target.platform == "webpush":
            if target.endpoint is None or target.p256dh is None or target.auth is None:
                raise BadRequest("webpush needs 'subscription': {\"endpoint\", \"keys\": {\"p256dh\", \"auth\"}}")
            endpoint = target.endpoint
            schemes = ("https://", "http://") if self._config.webpush_allow_private else ("https://",)
            if not endpoint.startswith(schemes) or len(endpoint.encode()) > limit or any(c.isspace() for c in endpoint):
                raise BadRequest(f"subscription.endpoint must be an https:// URL of at most {limit} bytes")
            return endpoint, _b64url(target.p256dh, "p256dh", 65), _b64url(target.auth, "auth", 16)
        token = target.token
        if not isinstance(token, str) or not token or len(token.encode()) > limit:
            raise BadRequest(f"token must be a string of 1 to {limit} bytes")
        if target.platform == "apns" and not _HEX.fullmatch(token):
            raise BadRequest("an APNs token is hexadecimal")
        if target.platform == "fcm" and not _FCM_TOKEN.fullmatch(token):
            raise BadRequest("an FCM token holds letters, digits and - _ : . only")
        return (token.lower() if target.platform == "apns" else token), "", ""

    async def register(self, user_id: int, session_id: str, target: PushTarget) -> DeviceRecord:
        token, p256dh, auth = self._checked(target)
        now = self._clock.now_ms()
        device = DeviceRecord("dev_" + secrets.token_hex(8), user_id, session_id, target.platform, token, p256dh,
                              auth, now)
        return await self._store.register_device(device, self._config.max_devices_per_user, now)

    async def list(self, user_id: int) -> list[DeviceRecord]:
        return await self._store.list_devices(user_id, self._clock.now_ms())

    async def remove(self, user_id: int, device_id: str) -> bool:
        return await self._store.remove_device(user_id, device_id)

    async def set_notifications(self, user_id: int, conversation_id: str, level: str,
                                mute_until: int | None) -> NotificationSetting:
        if level not in NOTIFICATION_LEVELS:
            raise BadRequest(f"level must be one of {', '.join(NOTIFICATION_LEVELS)}")
        if mute_until is not None and not 0 <= mute_until <= _MAX_TS:
            raise BadRequest("mute_until must be a time in ms since the epoch, or null")
        setting = NotificationSetting(conversation_id, level, mute_until)
        await self._store.set_notification_setting(user_id, setting)
        return setting

    async def notifications(self, user_id: int, conversation_id: str) -> NotificationSetting:
        return await self._store.get_notification_setting(user_id, conversation_id)

    async def set_privacy(self, user_id: int, privacy: bool) -> None:
        await self._store.set_push_privacy(user_id, privacy)

    async def privacy(self, user_id: int) -> bool:
        return await self._store.get_push_privacy(user_id)
