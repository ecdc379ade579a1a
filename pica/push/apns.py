"""APNs: one HTTP/2 request per push, authenticated with a provider token (ES256 JWT).

Why httpx (with its HTTP/2 support, the ``h2`` library) and not ``aioapns``: aioapns fixes the APNs host and port as
class attributes and builds its own TLS context, so it cannot be pointed at another server without reaching into its
internals; Pica's tests run against a local HTTP/2 server that speaks APNs' protocol, and operators use the sandbox.
httpx keeps one HTTP/2 connection and multiplexes the pushes over it, as Apple asks.

The provider token is reused for ``_TOKEN_TTL`` (Apple refuses tokens older than an hour and too frequent renewals)
and renewed at once when APNs answers 403 ``ExpiredProviderToken``.
"""

from __future__ import annotations

import logging
import ssl
import time
from pathlib import Path
from typing import Any, Final

import httpx
import jwt
import msgspec
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pica.config import PushConfig
from pica.push.rules import Notification, Sent
from pica.store.base import DeviceRecord

log = logging.getLogger(__name__)

_TOKEN_TTL: Final = 30 * 60
_GONE_REASONS: Final = frozenset({"BadDeviceToken", "Unregistered", "DeviceTokenNotForTopic"})
_encode: Final = msgspec.json.Encoder().encode


def payload(note: Notification) -> bytes:
    aps: dict[str, Any] = {"alert": {"title": note.title, "body": note.body} if note.body else {"title": note.title},
                           "badge": note.badge, "sound": "default", "thread-id": note.conversation_id}
    return _encode({"aps": aps, "pica": note.data()})


class ApnsProvider:
    def __init__(self, config: PushConfig) -> None:
        self._config = config
        # Loaded now: a file that is not an EC private key refuses the start instead of failing every push.
        key = serialization.load_pem_private_key(Path(config.apns_key_file).read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{config.apns_key_file}: not an ES256 (P-256) key")
        self._key = key
        self._token = ""
        self._token_at = 0.0
        self._client: httpx.AsyncClient | None = None

    def _provider_token(self) -> str:
        now = time.time()
        if not self._token or now - self._token_at > _TOKEN_TTL:
            c = self._config
            self._token = jwt.encode({"iss": c.apns_team_id, "iat": int(now)}, self._key, algorithm="ES256",
                                     headers={"kid": c.apns_key_id})
            self._token_at = now
        return self._token

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            verify: ssl.SSLContext | bool = True
            if self._config.apns_ca_file:
                verify = ssl.create_default_context(cafile=self._config.apns_ca_file)
            self._client = httpx.AsyncClient(http2=True, verify=verify, timeout=self._config.timeout, trust_env=False)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    async def send(self, device: DeviceRecord, note: Notification) -> Sent:
        headers = {
            "authorization": f"bearer {self._provider_token()}",
            "apns-topic": self._config.apns_topic,
            "apns-push-type": "alert",
            "apns-priority": "10",
            "apns-id": note.push_id,
            "apns-collapse-id": note.collapse_id,
            "apns-expiration": str(int(time.time()) + 86_400),
        }
        url = f"{self._config.apns_url.rstrip('/')}/3/device/{device.token}"
        try:
            response = await self._http().post(url, content=payload(note), headers=headers)
        except httpx.TimeoutException:
            return Sent("retry", f"APNs: timed out after {self._config.timeout:g} s")
        except httpx.HTTPError as exc:
            return Sent("retry", f"APNs: {type(exc).__name__}: {exc}"[:300])
        return self._answer(response)

    def _answer(self, response: httpx.Response) -> Sent:
        status = response.status_code
        if status == 200:
            return Sent("sent")
        try:
            reason = str(response.json().get("reason", ""))
        except ValueError:
            reason = ""
        detail = f"APNs: HTTP {status} {reason}".strip()
        if status == 410 or reason in _GONE_REASONS:
            return Sent("gone", detail)
        if status == 403 and reason == "ExpiredProviderToken":
            self._token = ""  # renewed for the retry
            return Sent("retry", detail)
        if status == 429 or status >= 500:
            return Sent("retry", detail)
        return Sent("failed", detail)
