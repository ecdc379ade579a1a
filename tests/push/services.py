"""Local push services that speak the real wire protocols, for the push tests.

- :class:`FakeApns`: HTTP/2 over TLS (the ``h2`` library on an asyncio socket, a certificate from ``trustme``): the
  APNs request (``POST /3/device/<token>`` with its ``apns-*`` headers), the provider token verified (ES256, ``kid``,
  ``iss``), answers with APNs' status and ``{"reason"}``.
- :class:`FakeFcm`: HTTP: the OAuth 2.0 token endpoint of a service account (the JWT bearer grant, its assertion
  verified with the account's public key) and FCM HTTP v1 ``messages:send`` (the bearer token checked), answering
  with Google's error bodies.
- :class:`FakeWebPush`: HTTP: a Web Push service (RFC 8030) that checks the VAPID header (RFC 8292); a
  :class:`Subscription` decrypts what it received with its private key (RFC 8291).

Each records what it received; ``answer(n, got)`` picks the status of the n-th request (1-based) and may wait.
Receivers de-duplicate by the push id, as docs/push.md tells apps to.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import os
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import http_ece
import jwt
import py_vapid
import trustme
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

Answer = Callable[[int, "Got"], Any]


@dataclass
class Got:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)

    @property
    def json(self) -> Any:
        return json.loads(self.body)


async def _answer(answer: Answer | None, n: int, got: Got, default: Any) -> Any:
    if answer is None:
        return default
    result = answer(n, got)
    return await result if inspect.isawaitable(result) else result


async def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the push service did not get what was expected in time")
        await asyncio.sleep(0.02)


# ====================================================================================================== APNs


class FakeApns:
    """``answer`` returns a status, or (status, reason)."""

    def __init__(self, tmp_path: Path, answer: Answer | None = None) -> None:
        self.answer = answer
        self.received: list[Got] = []
        self.ca = trustme.CA()
        self.ca_file = tmp_path / "apns-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.key_file = tmp_path / "AuthKey_ABC123DEFG.p8"
        self.key_file.write_bytes(self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
        self.key_id, self.team_id, self.topic = "ABC123DEFG", "TEAM123456", "chat.pica.app"
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"

    async def start(self) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ca.issue_cert("localhost").configure_cert(context)
        context.set_alpn_protocols(["h2"])
        self._server = await asyncio.get_running_loop().create_server(lambda: _H2(self), "127.0.0.1", 0, ssl=context)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    def check_token(self, authorization: str) -> bool:
        scheme, _, token = authorization.partition(" ")
        try:
            claims = jwt.decode(token, self.key.public_key(), algorithms=["ES256"])
        except jwt.PyJWTError:
            return False
        return (scheme == "bearer" and jwt.get_unverified_header(token).get("kid") == self.key_id
                and claims.get("iss") == self.team_id)

    async def handle(self, got: Got) -> tuple[int, str]:
        self.received.append(got)
        if not self.check_token(got.headers.get("authorization", "")):
            return 403, "InvalidProviderToken"
        if got.headers.get("apns-topic") != self.topic:
            return 400, "TopicDisallowed"
        result = await _answer(self.answer, len(self.received), got, 200)
        return (result, "") if isinstance(result, int) else result


class _H2(asyncio.Protocol):
    def __init__(self, apns: FakeApns) -> None:
        self.apns = apns
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        self.streams: dict[int, tuple[dict[str, str], bytearray]] = {}
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # uvloop's transports are no asyncio.Transport subclass
        self.conn.initiate_connection()
        self.flush()

    def data_received(self, data: bytes) -> None:
        for event in self.conn.receive_data(data):
            if isinstance(event, h2.events.RequestReceived):
                self.streams[event.stream_id] = ({str(k): str(v) for k, v in event.headers or []}, bytearray())
            elif isinstance(event, h2.events.DataReceived):
                self.streams[event.stream_id][1].extend(event.data or b"")
                self.conn.acknowledge_received_data(event.flow_controlled_length or 0, event.stream_id or 0)
            elif isinstance(event, h2.events.StreamEnded):
                headers, body = self.streams.pop(event.stream_id)
                got = Got(headers[":path"], headers, bytes(body))
                asyncio.get_running_loop().create_task(self.respond(event.stream_id, got))
        self.flush()

    async def respond(self, stream_id: int, got: Got) -> None:
        status, reason = await self.apns.handle(got)
        apns_id = got.headers.get("apns-id", "")
        if status == 200:
            self.conn.send_headers(stream_id, [(":status", "200"), ("apns-id", apns_id)], end_stream=True)
        else:
            body = json.dumps({"reason": reason}).encode()
            self.conn.send_headers(stream_id, [(":status", str(status)), ("apns-id", apns_id),
                                               ("content-type", "application/json"),
                                               ("content-length", str(len(body)))])
            self.conn.send_data(stream_id, body, end_stream=True)
        self.flush()

    def flush(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(self.conn.data_to_send())


# ======================================================================================================= FCM


class FakeFcm:
    """``answer`` returns a status, or (status, FCM error code such as ``UNREGISTERED``)."""

    def __init__(self, tmp_path: Path, answer: Answer | None = None, project: str = "pica-test") -> None:
        self.answer = answer
        self.project = project
        self.received: list[Got] = []
        self.token_requests = 0
        self._issued: set[str] = set()
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.account_file = tmp_path / "service-account.json"
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/token", self._token)
        app.router.add_post("/v1/projects/{project}/messages:send", self._send)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        pem = self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()).decode()
        self.account_file.write_text(json.dumps({
            "type": "service_account", "project_id": self.project, "private_key_id": "key-1", "private_key": pem,
            "client_email": f"pica@{self.project}.iam.gserviceaccount.com", "client_id": "1",
            "token_uri": f"{self.url}/token"}))

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        try:
            # google-auth addresses its assertion to Google's token endpoint whatever the token_uri, as Google expects.
            claims = jwt.decode(str(form.get("assertion")), self.key.public_key(), algorithms=["RS256"],
                                audience="https://oauth2.googleapis.com/token")
        except jwt.PyJWTError as exc:
            return web.json_response({"error": "invalid_grant", "error_description": str(exc)}, status=400)
        if "firebase.messaging" not in claims.get("scope", ""):
            return web.json_response({"error": "invalid_scope"}, status=400)
        self.token_requests += 1
        token = f"ya29.test-{self.token_requests}"
        self._issued.add(token)
        return web.json_response({"access_token": token, "expires_in": 3600, "token_type": "Bearer"})

    async def _send(self, request: web.Request) -> web.Response:
        got = Got(request.path, dict(request.headers), await request.read())
        self.received.append(got)
        if request.match_info["project"] != self.project:
            return _google_error(403, "PERMISSION_DENIED", "")
        if request.headers.get("Authorization", "").removeprefix("Bearer ") not in self._issued:
            return _google_error(401, "UNAUTHENTICATED", "")
        result = await _answer(self.answer, len(self.received), got, 200)
        status, code = (result, "") if isinstance(result, int) else result
        if status == 200:
            return web.json_response({"name": f"projects/{self.project}/messages/{len(self.received)}"})
        return _google_error(status, {404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED"}.get(status, "UNAVAILABLE"), code)


def _google_error(status: int, google_status: str, fcm_code: str) -> web.Response:
    details = [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": fcm_code}] if fcm_code \
        else []
    return web.json_response({"error": {"code": status, "message": google_status.lower(), "status": google_status,
                                        "details": details}}, status=status)


# =================================================================================================== Web Push


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class Subscription:
    """A browser's push subscription: its keys (RFC 8291) and the endpoint the push service gave it."""

    endpoint: str
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    auth: bytes = field(default_factory=lambda: os.urandom(16))

    def json(self) -> dict[str, Any]:
        """As ``PushSubscription.toJSON()`` gives it."""
        public = self.key.public_key().public_bytes(serialization.Encoding.X962,
                                                    serialization.PublicFormat.UncompressedPoint)
        return {"endpoint": self.endpoint, "expirationTime": None,
                "keys": {"p256dh": b64url(public), "auth": b64url(self.auth)}}

    def decrypt(self, body: bytes) -> Any:
        return json.loads(http_ece.decrypt(body, private_key=self.key, auth_secret=self.auth, version="aes128gcm"))


class FakeWebPush:
    """``answer`` returns a status (201 by default, as push services answer)."""

    def __init__(self, answer: Answer | None = None) -> None:
        self.answer = answer
        self.received: list[Got] = []
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._subscriptions = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def subscribe(self) -> Subscription:
        self._subscriptions += 1
        return Subscription(f"{self.url}/push/sub-{self._subscriptions}")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/push/{sub}", self._push)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _push(self, request: web.Request) -> web.Response:
        got = Got(request.path, dict(request.headers), await request.read())
        self.received.append(got)
        authorization = request.headers.get("Authorization", "")
        try:
            valid = py_vapid.Vapid02.verify(authorization)
        except (AssertionError, ValueError, IndexError):
            valid = False
        if not valid or request.headers.get("Content-Encoding") != "aes128gcm" or "TTL" not in request.headers:
            return web.Response(status=400 if valid else 401)
        return web.Response(status=await _answer(self.answer, len(self.received), got, 201))


def vapid_key() -> str:
    """A VAPID private key as ``push.vapid_private_key`` takes it (base64url of the raw 32 bytes)."""
    key = ec.generate_private_key(ec.SECP256R1())
    return b64url(key.private_numbers().private_value.to_bytes(32, "big"))
