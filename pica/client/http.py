"""HTTP helpers (aiohttp client) for the fixed API surface."""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiohttp


class PicaHttpError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Login:
    token: str
    user_id: int
    expires_at: int


class PicaHttp:
    def __init__(self, base_url: str, token: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self._session: aiohttp.ClientSession | None = None

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
                      token: str | None = None) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        headers = {}
        bearer = token or self.token
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        clean = {k: str(v) for k, v in (params or {}).items() if v is not None}
        async with self._session.request(method, self.base_url + path, json=json, params=clean,
                                         headers=headers) as resp:
            data = await resp.json(content_type=None)
            if resp.status >= 400:
                raise PicaHttpError(resp.status, str(data.get("code")), str(data.get("message")))
            return data

    async def register(self, username: str, password: str) -> int:
        data = await self.request("POST", "/v1/auth/register", json={"username": username, "password": password})
        return int(data["user_id"])

    async def login(self, username: str, password: str) -> Login:
        data = await self.request("POST", "/v1/auth/login", json={"username": username, "password": password})
        self.token = data["token"]
        return Login(token=data["token"], user_id=int(data["user_id"]), expires_at=int(data["expires_at"]))

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
