"""FCM HTTP v1: one ``messages:send`` per push, with an OAuth 2.0 access token of a service account.

``google-auth`` makes the service account's signed assertion and exchanges it at the account's ``token_uri`` for
an access token (``Credentials.refresh``); its transport is synchronous, so the exchange runs in a thread, through
:class:`_UrllibRequest` (the standard library: no second HTTP client for one request an hour). The token is reused
until shortly before it expires, and renewed at once when FCM answers 401. The pushes themselves go over aiohttp.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any, Final

import aiohttp
import google.auth.exceptions
import google.auth.transport
import msgspec
from google.oauth2 import service_account

from pica.config import PushConfig
from pica.push.rules import Notification, Sent
from pica.store.base import DeviceRecord

log = logging.getLogger(__name__)

SCOPE: Final = "https://www.googleapis.com/auth/firebase.messaging"
_encode: Final = msgspec.json.Encoder().encode
_MAX_RESPONSE_BYTES: Final = 16_384


class _Response(google.auth.transport.Response):
    def __init__(self, status: int, headers: Mapping[str, str], data: bytes) -> None:
        self._status, self._headers, self._data = status, dict(headers), data

    @property
    def status(self) -> int:
        return self._status

    @property
    def headers(self) -> Mapping[str, str]:
        return self._headers

    @property
    def data(self) -> bytes:
        return self._data


class _UrllibRequest(google.auth.transport.Request):
    """google-auth's transport interface over ``urllib`` (blocking: called in a worker thread)."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout

    def __call__(self, url: str, method: str = "GET", body: bytes | None = None,
                 headers: Mapping[str, str] | None = None, timeout: float | None = None,
                 **kwargs: Any) -> _Response:
        request = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
        try:
            with urllib.request.urlopen(request, timeout=timeout or self._timeout) as answer:
                return _Response(answer.status, dict(answer.headers), answer.read(_MAX_RESPONSE_BYTES))
        except urllib.error.HTTPError as exc:
            return _Response(exc.code, dict(exc.headers), exc.read(_MAX_RESPONSE_BYTES))
        except (urllib.error.URLError, OSError) as exc:
            raise google.auth.exceptions.TransportError(str(exc)) from exc  # type: ignore[no-untyped-call]


def message(device: DeviceRecord, note: Notification) -> dict[str, Any]:
    """The v1 ``message``: a notification (shown by the system), the data the app opens the conversation with,
    collapsed per conversation on Android (``collapse_key``, ``tag``) and iOS (``apns-collapse-id``)."""
    notification = {"title": note.title, **({"body": note.body} if note.body else {})}
    return {
        "token": device.token,
        "notification": notification,
        "data": note.data(),
        "android": {"collapse_key": note.collapse_id, "priority": "high",
                    "notification": {"tag": note.collapse_id, "notification_count": note.badge}},
        "apns": {"headers": {"apns-collapse-id": note.collapse_id},
                 "payload": {"aps": {"badge": note.badge, "thread-id": note.conversation_id}}},
    }


class FcmProvider:
    def __init__(self, config: PushConfig) -> None:
        self._config = config
        self._credentials = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
            config.fcm_service_account_file, scopes=[SCOPE])
        project = config.fcm_project or self._credentials.project_id
        if not project:
            raise ValueError("push.fcm_project: the service account names no project_id; set it")
        self._url = f"{config.fcm_url.rstrip('/')}/v1/projects/{project}/messages:send"
        self._lock = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None

    async def _access_token(self, renew: bool = False) -> str:
        async with self._lock:  # one exchange at a time, however many pushes wait for it
            if renew or not self._credentials.valid:
                await asyncio.to_thread(self._credentials.refresh, _UrllibRequest(self._config.timeout))
            return str(self._credentials.token)

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._config.timeout))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def send(self, device: DeviceRecord, note: Notification) -> Sent:
        try:
            token = await self._access_token()
        except google.auth.exceptions.GoogleAuthError as exc:
            return Sent("retry", f"FCM: no access token: {exc}"[:300])
        body = _encode({"message": message(device, note)})
        try:
            async with self._http().post(self._url, data=body, headers={
                "Authorization": f"Bearer {token}", "Content-Type": "application/json"}) as response:
                status = response.status
                raw = await response.content.read(_MAX_RESPONSE_BYTES)
        except TimeoutError:
            return Sent("retry", f"FCM: timed out after {self._config.timeout:g} s")
        except (aiohttp.ClientError, OSError) as exc:
            return Sent("retry", f"FCM: {type(exc).__name__}: {exc}"[:300])
        return await self._answer(status, raw)

    async def _answer(self, status: int, raw: bytes) -> Sent:
        if status == 200:
            return Sent("sent")
        code = _error_code(raw)
        detail = f"FCM: HTTP {status} {code}".strip()
        if code in ("UNREGISTERED", "SENDER_ID_MISMATCH") or status == 404:
            return Sent("gone", detail)
        if status == 401:
            try:
                await self._access_token(renew=True)
            except google.auth.exceptions.GoogleAuthError as exc:
                log.warning("cannot renew the FCM access token: %s", exc)
            return Sent("retry", detail)
        if status == 429 or status >= 500:
            return Sent("retry", detail)
        return Sent("failed", detail)


def _error_code(raw: bytes) -> str:
    """FCM's own error code (``details[].errorCode``), else the Google API status (``INVALID_ARGUMENT``)."""
    try:
        error = msgspec.json.decode(raw).get("error", {})
        for detail in error.get("details", []):
            if isinstance(detail, dict) and detail.get("errorCode"):
                return str(detail["errorCode"])
        return str(error.get("status", ""))
    except (msgspec.DecodeError, AttributeError):
        return ""
