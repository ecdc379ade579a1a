"""Web Push: the payload encrypted to the browser's subscription (RFC 8291, ``aes128gcm`` of RFC 8188, by
``http-ece``), the request authorized with VAPID (RFC 8292, by ``py-vapid``), POSTed to the subscription's endpoint
(RFC 8030) with aiohttp.

The endpoint is a URL a browser gave, so a client chooses where the node connects: unless
``push.webpush_allow_private``, it must be https and the connection goes through the webhooks' resolver that refuses
non-public addresses (pica/webhooks/ssrf.py); a refused endpoint is treated as gone (the device is deleted).
A VAPID signature is made per push service origin and reused for ``_VAPID_TTL`` (the claim's ``exp`` is 12 h).
"""

from __future__ import annotations

import base64
import logging
import os
import time
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

import aiohttp
import http_ece
import msgspec
import py_vapid
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pica.config import PushConfig
from pica.push.rules import Notification, Sent
from pica.store.base import DeviceRecord
from pica.webhooks.ssrf import PublicResolver, RefusedAddress, literal_refused

log = logging.getLogger(__name__)

_VAPID_TTL: Final = 3600.0
_TTL_SECONDS: Final = 86_400
"""How long a push service keeps a push for a browser that is offline."""
_encode: Final = msgspec.json.Encoder().encode


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def load_vapid(config: PushConfig) -> py_vapid.Vapid02:
    """The VAPID key of ``push.vapid_private_key``: base64url of the raw 32-byte key, or a PEM file's path."""
    value = config.vapid_private_key.strip()
    if value.startswith("-----") or Path(value).is_file():
        pem = value if value.startswith("-----") else Path(value).read_text(encoding="ascii")
        return py_vapid.Vapid02.from_pem(pem.encode())
    return py_vapid.Vapid02.from_raw(value.encode())


def public_key(config: PushConfig) -> str:
    """The application server key a browser subscribes with (``applicationServerKey``): base64url of the
    uncompressed P-256 point."""
    key = load_vapid(config).public_key
    return b64url(key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint))


def encrypt(plain: bytes, p256dh: str, auth: str) -> bytes:
    """RFC 8291: a fresh ECDH key and salt per message; the record header carries the sender's public key."""
    sender = ec.generate_private_key(ec.SECP256R1())
    encrypted: bytes = http_ece.encrypt(plain, salt=os.urandom(16), private_key=sender, dh=b64url_decode(p256dh),
                                        auth_secret=b64url_decode(auth), version="aes128gcm")
    return encrypted


def payload(note: Notification) -> bytes:
    """What the service worker receives (pica/web/static/sw.js shows it)."""
    return _encode({"push_id": note.push_id, "conversation_id": note.conversation_id, "seq": note.seq,
                    "ts": note.ts, "title": note.title, "body": note.body, "badge": note.badge,
                    "tag": note.collapse_id})


class WebPushProvider:
    def __init__(self, config: PushConfig) -> None:
        self._config = config
        self._vapid = load_vapid(config)
        self._signed: dict[str, tuple[float, dict[str, str]]] = {}
        self._session: aiohttp.ClientSession | None = None

    def _authorization(self, endpoint: str) -> dict[str, str]:
        parts = urlsplit(endpoint)
        audience = f"{parts.scheme}://{parts.netloc}"
        now = time.time()
        cached = self._signed.get(audience)
        if cached is None or now - cached[0] > _VAPID_TTL:
            claims = {"aud": audience, "exp": int(now) + 12 * 3600, "sub": self._config.vapid_subject}
            headers = self._vapid.sign(claims)
            cached = self._signed[audience] = (now, {k: str(v) for k, v in headers.items()})
        return cached[1]

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            resolver = None if self._config.webpush_allow_private else PublicResolver()
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._config.timeout),
                                                  connector=aiohttp.TCPConnector(resolver=resolver))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def send(self, device: DeviceRecord, note: Notification) -> Sent:
        endpoint = device.token
        if not self._config.webpush_allow_private and (not endpoint.startswith("https://")
                                                       or literal_refused(endpoint)):
            return Sent("gone", "Web Push: the endpoint's address may not be reached (SSRF check)")
        headers = {**self._authorization(endpoint), "TTL": str(_TTL_SECONDS), "Urgency": "high",
                   "Topic": note.topic, "Content-Encoding": "aes128gcm", "Content-Type": "application/octet-stream"}
        body = encrypt(payload(note), device.p256dh, device.auth)
        try:
            async with self._http().post(endpoint, data=body, headers=headers, allow_redirects=False) as response:
                await response.content.read(4096)
                status = response.status
        except TimeoutError:
            return Sent("retry", f"Web Push: timed out after {self._config.timeout:g} s")
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, RefusedAddress):
                return Sent("gone", f"Web Push: SSRF check: {exc.os_error}")
            return Sent("retry", f"Web Push: {type(exc).__name__}: {exc}"[:300])
        except (aiohttp.ClientError, OSError) as exc:
            return Sent("retry", f"Web Push: {type(exc).__name__}: {exc}"[:300])
        detail = f"Web Push: HTTP {status}"
        if 200 <= status < 300:
            return Sent("sent")
        if status in (404, 410):
            return Sent("gone", detail)
        if status == 429 or status >= 500:
            return Sent("retry", detail)
        return Sent("failed", detail)
