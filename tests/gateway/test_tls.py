"""TLS on every listener (``tls.cert``/``tls.key``): HTTPS, WSS and the framed TCP gateway with a certificate the test
makes (trustme), the client verifying it; a plaintext client on a TLS port refused cleanly; a certificate renewed
with SIGHUP while connections stay up; mutual TLS on the TCP gateway (``tls.client_ca``)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
import ssl
from pathlib import Path

import aiohttp
import pytest
import trustme

from pica.client import PicaClient, PicaConnection, PicaHttp, ServerClosed
from pica.config import TlsConfig
from pica.protocol import frames as f
from tests.conftest import PASSWORD, Node, ServerProcess, make_config, running, start_server_process


@dataclasses.dataclass
class Pki:
    ca: trustme.CA
    directory: Path

    def issue(self, name: str) -> tuple[Path, Path]:
        """A server certificate for 127.0.0.1 and localhost, as PEM files named after ``name``."""
        cert = self.ca.issue_cert("127.0.0.1", "localhost")
        chain, key = self.directory / f"{name}.pem", self.directory / f"{name}.key"
        cert.private_key_pem.write_to_path(str(key))
        chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
        return chain, key

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(trustme.CA(), tmp_path)


def tls_node(tmp_path: Path, tls: TlsConfig) -> contextlib.AbstractAsyncContextManager[Node]:
    return running(dataclasses.replace(make_config(tmp_path), tls=tls))


def https(node: Node) -> str:
    return f"https://127.0.0.1:{node.server.http_port}"


async def peer_certificate_serial(port: int, context: ssl.SSLContext) -> int:
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="127.0.0.1")
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
    from cryptography import x509

    return int(x509.load_der_x509_certificate(der).serial_number)


async def test_https_wss_and_tls_tcp_carry_a_conversation(tmp_path: Path, pki: Pki) -> None:
    cert, key = pki.issue("server")
    async with tls_node(tmp_path, TlsConfig(cert=str(cert), key=str(key))) as node:
        trust = pki.client_context()
        async with PicaHttp(https(node), ssl=trust) as http:
            assert (await http.request("GET", "/healthz"))["status"] == "ok"
            await http.register("alice", PASSWORD)
            await http.register("bob", PASSWORD)
            alice = await http.login("alice", PASSWORD)
            bob = await http.login("bob", PASSWORD)
            nodes = await http.gateway()
        assert nodes[0].http.startswith("https://") and nodes[0].ws.startswith("wss://")
        over_tcp = await PicaConnection.open(https(node), bob.token, transport="tcp", tcp_port=node.tcp_port,
                                             ssl=trust)
        async with over_tcp, await PicaConnection.open(https(node), alice.token, ssl=trust) as over_wss:
            sent = await over_wss.send(bob.user_id, {"text": "over TLS"})
            msg = await over_tcp.next_event(f.Msg, 5)
            assert (msg.seq, msg.body) == (sent.seq, {"text": "over TLS"})
        # The SDK, given the CA, does all of it by itself.
        async with PicaClient(https(node), username="alice", password=PASSWORD, ssl=trust) as client:
            ack = await client.send(to=bob.user_id, text="from the SDK")
            assert ack.seq == sent.seq + 1


async def test_a_client_that_does_not_trust_the_certificate_or_speaks_plaintext_is_refused(
    tmp_path: Path, pki: Pki
) -> None:
    cert, key = pki.issue("server")
    async with tls_node(tmp_path, TlsConfig(cert=str(cert), key=str(key))) as node:
        # Verification is on by default: a certificate of an unknown CA is refused by the client.
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            async with PicaHttp(https(node)) as http:
                await http.request("GET", "/healthz")
        with pytest.raises(ssl.SSLCertVerificationError):
            await PicaConnection.open(https(node), "token", transport="tcp", tcp_port=node.tcp_port)
        # Plaintext on the TLS ports: no answer that parses, the socket closed, the node unhurt.
        for port in (node.server.http_port, node.tcp_port):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            async with asyncio.timeout(5):
                answer = await reader.read()
            writer.close()
            assert not answer.startswith(b"HTTP/"), answer[:80]
        async with PicaHttp(https(node), ssl=pki.client_context()) as http:
            assert (await http.request("GET", "/healthz"))["status"] == "ok"


async def test_sighup_reloads_a_renewed_certificate_and_open_connections_stay(
    tmp_path: Path, pki: Pki, server_process_factory: list[ServerProcess]
) -> None:
    cert, key = pki.issue("server")
    server = await asyncio.to_thread(start_server_process, tmp_path / "data", 0, 0,
                                     ["--tls-cert", str(cert), "--tls-key", str(key)])
    server_process_factory.append(server)
    trust = pki.client_context()
    url = f"https://127.0.0.1:{server.http_port}"
    async with PicaHttp(url, ssl=trust) as http:
        await http.register("alice", PASSWORD)
        alice = await http.login("alice", PASSWORD)
    before = await peer_certificate_serial(server.http_port, trust)
    assert before == await peer_certificate_serial(server.tcp_port, trust)
    conn = await PicaConnection.open(url, alice.token, transport="tcp", tcp_port=server.tcp_port, ssl=trust)

    renewed, renewed_key = pki.issue("renewed")
    renewed.replace(cert)
    renewed_key.replace(key)
    server.proc.send_signal(signal.SIGHUP)
    async with asyncio.timeout(10):
        while (after := await peer_certificate_serial(server.http_port, trust)) == before:
            await asyncio.sleep(0.05)
    assert after == await peer_certificate_serial(server.tcp_port, trust)
    await conn.ping()  # the connection made before the renewal is still served
    assert conn.closed is None

    # A broken renewal (a key of another certificate) is refused; the node keeps the one it has.
    _, other_key = pki.issue("other")
    other_key.replace(key)
    server.proc.send_signal(signal.SIGHUP)
    await asyncio.sleep(0.5)
    assert await peer_certificate_serial(server.http_port, trust) == after
    await conn.close()


async def test_mutual_tls_on_the_tcp_gateway(tmp_path: Path, pki: Pki) -> None:
    cert, key = pki.issue("server")
    devices = trustme.CA()
    devices.cert_pem.write_to_path(str(tmp_path / "devices.pem"))
    tls = TlsConfig(cert=str(cert), key=str(key), client_ca=str(tmp_path / "devices.pem"))
    async with tls_node(tmp_path, tls) as node:
        trust = pki.client_context()
        async with PicaHttp(https(node), ssl=trust) as http:  # HTTP asks for no client certificate
            await http.register("alice", PASSWORD)
            alice = await http.login("alice", PASSWORD)
        # No device certificate: the handshake fails on the server (with TLS 1.3 the client learns it at its first
        # read, as an alert or the end of the stream).
        with pytest.raises((ssl.SSLError, ConnectionError, ServerClosed)):
            conn = await PicaConnection.open(https(node), alice.token, transport="tcp", tcp_port=node.tcp_port,
                                             ssl=trust)
            await conn.ping()
        with_device = pki.client_context()
        devices.issue_cert("phone-1").configure_cert(with_device)
        async with await PicaConnection.open(https(node), alice.token, transport="tcp", tcp_port=node.tcp_port,
                                             ssl=with_device) as conn:
            await conn.ping()
