"""A node with its XMPP gateway on a free port, STARTTLS with a certificate of a test CA (trustme), in this process."""

from __future__ import annotations

import dataclasses
import ssl
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from pica.client import Login, PicaConnection, PicaHttp
from pica.config import TlsConfig, XmppConfig
from tests.conftest import PASSWORD, Node, make_config, running
from tests.mqtt.paho_client import User


@dataclasses.dataclass
class XmppNode:
    node: Node
    trust: ssl.SSLContext | None
    """The test CA's trust when the node speaks TLS."""

    @property
    def port(self) -> int:
        return self.node.server.xmpp_port

    @property
    def url(self) -> str:
        scheme = "https" if self.trust is not None else "http"
        return f"{scheme}://127.0.0.1:{self.node.server.http_port}"

    async def user(self, prefix: str = "u") -> User:
        name = f"{prefix}{uuid.uuid4().hex[:10]}"
        async with PicaHttp(self.url, ssl=self.trust) as http:
            await http.register(name, PASSWORD)
            login = await http.login(name, PASSWORD)
        return User(**{k: getattr(login, k) for k in login.__dataclass_fields__}, username=name)

    async def api(self, who: Login, method: str, path: str, **kwargs: Any) -> Any:
        async with PicaHttp(self.url, token=who.token, ssl=self.trust) as http:
            return await http.request(method, path, **kwargs)

    async def befriend(self, a: Login, b: Login) -> None:
        await self.api(a, "POST", "/v1/contacts/requests", json={"user_id": b.user_id})
        await self.api(b, "POST", f"/v1/contacts/requests/{a.user_id}/accept")

    async def ws(self, who: Login) -> PicaConnection:
        return await PicaConnection.open(self.url, who.token, ssl=self.trust)


def tls_files(tmp_path: Path) -> tuple[TlsConfig, ssl.SSLContext]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    chain, key = tmp_path / "server.pem", tmp_path / "server.key"
    cert.private_key_pem.write_to_path(str(key))
    chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    trust = ssl.create_default_context()
    ca.configure_trust(trust)
    return TlsConfig(cert=str(chain), key=str(key)), trust


@pytest.fixture
async def xmpp_node(tmp_path: Path) -> AsyncIterator[XmppNode]:
    """Without TLS, SASL PLAIN allowed in clear (``xmpp.plain_without_tls``): on the loopback only, as here."""
    config = dataclasses.replace(make_config(tmp_path), xmpp=XmppConfig(port=0, plain_without_tls=True))
    async with running(config) as node:
        yield XmppNode(node, None)


@pytest.fixture
async def xmpp_tls_node(tmp_path: Path) -> AsyncIterator[XmppNode]:
    """Every listener on TLS: STARTTLS on ``xmpp.port``, TLS from the first byte on ``xmpp.tls_port``."""
    tls, trust = tls_files(tmp_path)
    config = dataclasses.replace(make_config(tmp_path), tls=tls, xmpp=XmppConfig(port=0, tls_port=0))
    async with running(config) as node:
        yield XmppNode(node, trust)
