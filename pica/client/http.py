"""HTTP helpers (aiohttp client) for the fixed API surface."""

from __future__ import annotations

from dataclasses import dataclass
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
    token: str
    user_id: int
    expires_at: int


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
                      token: str | None = None, base_url: str | None = None) -> Any:
        """``base_url`` sends this one request to another node than ``self.base_url``."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        headers = {}
        bearer = token or self.token
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        clean = {k: str(v) for k, v in (params or {}).items() if v is not None}
        base = (base_url or self.base_url).rstrip("/")
        async with self._session.request(method, base + path, json=json, params=clean,
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
        data = await self.request("POST", "/v1/auth/login", json={"username": username, "password": password},
                                  base_url=base_url)
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
