"""HTTP helpers (aiohttp client) for the fixed API surface."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from ssl import SSLContext
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import aiohttp


class PicaHttpError(Exception):
    def __init__(self, status: int, code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after
        """With ``rate_limited`` (429): seconds after which the same request will be accepted."""


@dataclass(frozen=True, slots=True)
class Login:
    """A session's tokens, from a login or a refresh (docs/protocol.md section 23.1)."""

    token: str
    user_id: int
    expires_at: int
    """When ``token`` expires, seconds since the epoch; renew it with the refresh token before or after."""
    refresh_token: str = ""
    refresh_expires_at: int = 0
    session_id: str = ""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Login:
        return cls(token=str(data["token"]), user_id=int(data["user_id"]), expires_at=int(data["expires_at"]),
                   refresh_token=str(data.get("refresh_token") or ""),
                   refresh_expires_at=int(data.get("refresh_expires_at") or 0),
                   session_id=str(data.get("session_id") or ""))


@dataclass(frozen=True, slots=True)
class GatewayNode:
    """One live node as ``GET /v1/gateway`` lists it (docs/protocol.md section 23)."""

    node_id: str
    http: str
    """HTTP base URL of the node, e.g. ``http://10.0.0.5:8080``."""
    ws: str
    """WebSocket URL, e.g. ``ws://10.0.0.5:8080/v1/ws``."""
    tcp: str | None
    """``host:port`` of the framed TCP gateway; None when the node has it disabled."""
    connections: int = 0
    """Socket connections the node holds (informative)."""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GatewayNode:
        tcp = data.get("tcp")
        return cls(node_id=str(data.get("node_id", "")), http=str(data["http"]).rstrip("/"), ws=str(data["ws"]),
                   tcp=str(tcp) if tcp else None, connections=int(data.get("connections") or 0))

    @classmethod
    def direct(cls, base_url: str, tcp_port: int | None = None) -> GatewayNode:
        """The node at ``base_url`` itself (a server without ``/v1/gateway``)."""
        parts = urlsplit(base_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        host = parts.hostname or "127.0.0.1"
        return cls(node_id="", http=base_url.rstrip("/"), ws=f"{scheme}://{parts.netloc}/v1/ws",
                   tcp=f"{host}:{tcp_port}" if tcp_port is not None else None)

    @property
    def tcp_address(self) -> tuple[str, int] | None:
        if self.tcp is None:
            return None
        host, _, port = self.tcp.rpartition(":")
        return host.strip("[]") or "127.0.0.1", int(port)


class PicaHttp:
    def __init__(self, base_url: str, token: str | None = None, refresh_token: str | None = None,
                 ssl: SSLContext | None = None) -> None:
        """With a ``refresh_token`` (which ``login`` also keeps), an expired access token is renewed by itself:
        a request answered 401 ``token_expired`` is sent again once with the new token."""
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.refresh_token = refresh_token
        self._session: aiohttp.ClientSession | None = None
        self._refreshing: asyncio.Task[Login] | None = None
        self.ssl = ssl
        """For ``https://``: the CAs to verify the server against (None: the system's)."""

    async def __aenter__(self) -> PicaHttp:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None,
                      token: str | None = None, base_url: str | None = None) -> Any:
        """``base_url`` sends this one request to another node than ``self.base_url``."""
        sent = self.token
        try:
            return await self._request(method, path, json, params, token, base_url)
        except PicaHttpError as exc:
            if exc.code != "token_expired" or token is not None or not self.refresh_token:
                raise
        if self.token == sent:  # else another request renewed it meanwhile
            await self.refresh(base_url=base_url)
        return await self._request(method, path, json, params, None, base_url)

    async def refresh(self, *, base_url: str | None = None) -> Login:
        """New tokens for the refresh token kept (``POST /v1/auth/refresh``; the old refresh token is spent). Calls
        made at once share one refresh: a second use of the same refresh token would end the session."""
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.get_running_loop().create_task(self._refresh(base_url))
        return await asyncio.shield(self._refreshing)

    async def _refresh(self, base_url: str | None) -> Login:
        if not self.refresh_token:
            raise PicaHttpError(401, "invalid_token", "no refresh token: log in")
        data = await self._request("POST", "/v1/auth/refresh", {"refresh_token": self.refresh_token}, None, "",
                                   base_url)
        return self._keep(data)

    def _keep(self, data: dict[str, Any]) -> Login:
        login = Login.from_json(data)
        self.token, self.refresh_token = login.token, login.refresh_token or None
        return login

    async def _request(self, method: str, path: str, json: Any, params: dict[str, Any] | None, token: str | None,
                       base_url: str | None) -> Any:
        """``token`` "": send none."""
        session = self._client()
        headers = {}
        bearer = self.token if token is None else token
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        clean = {k: str(v) for k, v in (params or {}).items() if v is not None}
        base = (base_url or self.base_url).rstrip("/")
        async with session.request(method, base + path, json=json, params=clean,
                                         headers=headers) as resp:
            data = await resp.json(content_type=None)
            if resp.status >= 400:
                retry_after = data.get("retry_after")
                raise PicaHttpError(resp.status, str(data.get("code")), str(data.get("message")),
                                    float(retry_after) if isinstance(retry_after, int | float) else None)
            return data

    async def register(self, username: str, password: str) -> int:
        data = await self.request("POST", "/v1/auth/register", json={"username": username, "password": password})
        return int(data["user_id"])

    async def login(self, username: str, password: str, *, base_url: str | None = None) -> Login:
        """A new session; its tokens are kept for the next requests."""
        data = await self._request("POST", "/v1/auth/login", {"username": username, "password": password}, None,
                                   "", base_url)
        return self._keep(data)

    async def logout(self) -> None:
        """End this session (its tokens stop working, its sockets are closed) and forget its tokens."""
        await self.request("POST", "/v1/auth/logout")
        self.token = self.refresh_token = None

    async def sessions(self) -> list[dict[str, Any]]:
        """My signed-in sessions (devices), the most recently used first; ``current`` marks this one."""
        data = await self.request("GET", "/v1/sessions")
        return list(data["sessions"])

    async def end_session(self, session_id: str) -> None:
        """End another of my sessions (a lost phone)."""
        await self.request("DELETE", f"/v1/sessions/{session_id}")

    async def change_password(self, old_password: str, new_password: str) -> int:
        """Change my password; every other session is ended (how many is answered)."""
        data = await self.request("PUT", "/v1/me/password",
                                  json={"old_password": old_password, "new_password": new_password})
        return int(data["sessions_ended"])

    async def send(self, to: int, client_msg_id: str, body: dict[str, Any]) -> dict[str, Any]:
        data: dict[str, Any] = await self.request(
            "POST", "/v1/messages", json={"to": to, "client_msg_id": client_msg_id, "body": body}
        )
        return data

    async def history(self, conversation_id: str, *, after_seq: int | None = None, before_seq: int | None = None,
                      limit: int | None = None) -> dict[str, Any]:
        data: dict[str, Any] = await self.request(
            "GET",
            f"/v1/conversations/{conversation_id}/messages",
            params={"after_seq": after_seq, "before_seq": before_seq, "limit": limit},
        )
        return data

    async def export(self) -> dict[str, Any]:
        """``GET /v1/me/export``: my data as one JSON object (read whole; it is as big as everything I sent)."""
        data: dict[str, Any] = await self.request("GET", "/v1/me/export")
        return data

    async def delete_account(self, password: str) -> None:
        """``DELETE /v1/me``: the account is deleted; its token is refused from then on."""
        await self.request("DELETE", "/v1/me", json={"password": password})

    async def gateway(self, *, base_url: str | None = None) -> list[GatewayNode]:
        """The live nodes of the cluster, the one preferred for this token's user first (``GET /v1/gateway``)."""
        data = await self.request("GET", "/v1/gateway", base_url=base_url)
        return [GatewayNode.from_json(node) for node in data["nodes"]]

    # ------------------------------------------------------------------------------------------ files

    async def upload(self, source: bytes | Path, *, filename: str | None = None,
                     progress: Progress | None = None) -> dict[str, Any]:
        """``POST /v1/files``: the bytes of ``source`` (a file is streamed, never read whole) -> the file's
        ``{"file_id", "size", "content_type", "sha256", "name", ...}``. ``progress(sent, total)`` after each chunk."""
        total = len(source) if isinstance(source, bytes) else (await asyncio.to_thread(source.stat)).st_size
        name = filename if filename is not None else (source.name if isinstance(source, Path) else None)
        params = {"filename": name} if name else None
        answer: dict[str, Any] = await self._send_bytes(
            "POST", "/v1/files", _chunks_of(source, 0, total, progress), total, params,
            {"Content-Type": "application/octet-stream"})
        return answer

    async def upload_resumable(self, path: Path, *, filename: str | None = None, part_bytes: int = 4 << 20,
                               progress: Progress | None = None, attempts: int = 5) -> dict[str, Any]:
        """The same through the resumable protocol (tus 1.0.0): a broken connection resumes where the server's
        bytes end, up to ``attempts`` times in a row."""
        total = (await asyncio.to_thread(path.stat)).st_size
        name = base64.b64encode((filename or path.name).encode()).decode()
        tus = {"Tus-Resumable": "1.0.0"}
        created = await self._send_bytes("POST", "/v1/uploads", None, 0, None,
                                         {**tus, "Upload-Length": str(total), "Upload-Metadata": f"filename {name}"})
        location = created["location"]
        offset, failures = 0, 0
        while True:
            end = min(total, offset + part_bytes)
            try:
                answer = await self._send_bytes(
                    "PATCH", location, _chunks_of(path, offset, end, progress, total), end - offset, None,
                    {**tus, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"})
            except (TimeoutError, aiohttp.ClientError):
                failures += 1
                if failures >= attempts:
                    raise
                head = await self._raw("HEAD", location, None, None, tus)
                offset = int(head["Upload-Offset"])
                continue
            failures = 0
            if isinstance(answer, dict) and "file_id" in answer:
                return answer
            offset = end

    async def download(self, file_id: str, target: Path | None = None, *, thumbnail: int | None = None,
                       progress: Progress | None = None) -> bytes:
        """``GET /v1/files/{file_id}``: the bytes (also written to ``target`` as they arrive, when given)."""
        session = self._client()
        params = {"thumbnail": str(thumbnail)} if thumbnail else None
        async with session.get(f"{self.base_url}/v1/files/{file_id}", params=params,
                               headers=self._auth_headers()) as resp:
            if resp.status >= 400:
                data = await resp.json(content_type=None)
                raise PicaHttpError(resp.status, str(data.get("code")), str(data.get("message")))
            total = int(resp.headers.get("Content-Length", "0"))
            parts: list[bytes] = []
            received = 0
            handle = target.open("wb") if target is not None else None
            try:
                async for chunk in resp.content.iter_chunked(256 * 1024):
                    parts.append(chunk)
                    received += len(chunk)
                    if handle is not None:
                        handle.write(chunk)
                    if progress is not None:
                        progress(received, total)
            finally:
                if handle is not None:
                    handle.close()
            return b"".join(parts)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=self.ssl) if self.ssl is not None else None
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    def _auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def _send_bytes(self, method: str, path: str, body: AsyncIterator[bytes] | None, length: int,
                          params: dict[str, str] | None, headers: dict[str, str]) -> Any:
        session = self._client()
        sent_headers = {**self._auth_headers(), **headers}
        if body is not None:
            sent_headers["Content-Length"] = str(length)
        async with session.request(method, self.base_url + path, data=body, params=params,
                                   headers=sent_headers) as resp:
            if resp.status == 204:
                return dict(resp.headers)
            data = await resp.json(content_type=None)
            if resp.status >= 400:
                raise PicaHttpError(resp.status, str(data.get("code")), str(data.get("message")))
            return data

    async def _raw(self, method: str, path: str, body: bytes | None, params: dict[str, str] | None,
                   headers: dict[str, str]) -> dict[str, str]:
        async with self._client().request(method, self.base_url + path, data=body, params=params,
                                          headers={**self._auth_headers(), **headers}) as resp:
            if resp.status >= 400:
                raise PicaHttpError(resp.status, "http_error", f"{method} {path}: {resp.status}")
            return dict(resp.headers)


Progress = Callable[[int, int], None]
"""``progress(bytes so far, total bytes)``."""


async def _chunks_of(source: bytes | Path, start: int, end: int, progress: Progress | None,
                     total: int | None = None) -> AsyncIterator[bytes]:
    step = 256 * 1024
    whole = end if total is None else total
    if isinstance(source, bytes):
        for at in range(start, end, step):
            yield source[at:min(end, at + step)]
            if progress is not None:
                progress(min(end, at + step), whole)
        return
    with source.open("rb") as handle:
        handle.seek(start)
        at = start
        while at < end:
            chunk = await asyncio.to_thread(handle.read, min(step, end - at))
            if not chunk:
                break
            at += len(chunk)
            yield chunk
            if progress is not None:
                progress(at, whole)
