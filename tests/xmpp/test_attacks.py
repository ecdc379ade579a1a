"""XML attacks on a real socket: each ends the stream with a stream error and closes it, and the node goes on serving
(a slixmpp client logs in afterwards)."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
from pathlib import Path

import pytest

from pica.config import XmppConfig
from tests.conftest import PASSWORD, make_config, running
from tests.xmpp.conftest import XmppNode
from tests.xmpp.slix import TIMEOUT, Slix

HEADER = (b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
          b"xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>")


async def answer_until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the socket."""
    got = b""
    async with asyncio.timeout(TIMEOUT):
        while chunk := await reader.read(65_536):
            got += chunk
    return got


@pytest.mark.parametrize(("attack", "condition"), [
    (b"<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'><!ENTITY lol1 '&lol;&lol;&lol;&lol;&lol;&lol;'>"
     b"<!ENTITY lol2 '&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;'>]><stream:stream "
     b"xmlns:stream='http://etherx.jabber.org/streams'>&lol2;", b"policy-violation"),
    (b"<?xml version='1.0'?><!DOCTYPE s [<!ENTITY xxe SYSTEM 'file:///etc/passwd'>]>"
     b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>&xxe;", b"policy-violation"),
    (HEADER + b"<message>" + b"<x>" * 100, b"policy-violation"),
    (HEADER + b"<message></iq>", b"not-well-formed"),
])
async def test_xml_attacks_end_the_stream(xmpp_node: XmppNode, attack: bytes, condition: bytes) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", xmpp_node.port)
    try:
        writer.write(attack)
        answer = await answer_until_closed(reader)
        assert b"<stream:error>" in answer and condition in answer and answer.endswith(b"</stream:stream>")
        assert b"root:" not in answer  # nothing of the named file
    finally:
        writer.close()


async def test_a_100_mb_stanza_is_cut_off_early(xmpp_node: XmppNode) -> None:
    _, writer = await asyncio.open_connection("127.0.0.1", xmpp_node.port)
    sent = 0
    try:
        writer.write(HEADER + b"<message to='x@localhost'><body>")
        chunk = b"a" * (1 << 20)
        with pytest.raises((ConnectionError, RuntimeError)):  # RuntimeError: uvloop's closed transport
            for _ in range(100):  # 100 MiB, unless the server closes first
                writer.write(chunk)
                await writer.drain()
                sent += len(chunk)
                await asyncio.sleep(0.01)
        # Refused once it passed xmpp.max_stanza_bytes (64 KiB): at most what the socket buffers held had been sent
        assert sent < 20 * (1 << 20)
    finally:
        writer.close()


async def test_a_silent_stream_is_closed(tmp_path: Path) -> None:
    """Slow-loris: a stream that opens and then sends nothing (or trickles) is closed at the auth deadline."""
    config = dataclasses.replace(make_config(tmp_path, auth_timeout=0.5),
                                 xmpp=XmppConfig(port=0, plain_without_tls=True))
    async with running(config) as node:
        reader, writer = await asyncio.open_connection("127.0.0.1", node.server.xmpp_port)
        try:
            writer.write(HEADER[:-10])  # an unfinished stream header
            answer = await answer_until_closed(reader)
            assert b"connection-timeout" in answer
        finally:
            writer.close()


async def test_plain_is_refused_without_tls(tmp_path: Path) -> None:
    """A node without TLS and without xmpp.plain_without_tls offers SCRAM only, and refuses a PLAIN attempt."""
    config = dataclasses.replace(make_config(tmp_path), xmpp=XmppConfig(port=0))
    async with running(config) as node:
        reader, writer = await asyncio.open_connection("127.0.0.1", node.server.xmpp_port)
        try:
            writer.write(HEADER)
            features = await asyncio.wait_for(reader.readuntil(b"</stream:features>"), TIMEOUT)
            assert b"PLAIN" not in features and b"SCRAM-SHA-256" in features
            writer.write(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
                         + base64.b64encode(b"\0alice\0" + PASSWORD.encode()) + b"</auth>")
            answer = await asyncio.wait_for(reader.read(4096), TIMEOUT)
            assert b"<failure" in answer and b"invalid-mechanism" in answer
        finally:
            writer.close()


async def test_the_node_serves_after_an_attack(xmpp_node: XmppNode) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", xmpp_node.port)
    writer.write(HEADER + b"<message>" + b"<x>" * 100)
    await answer_until_closed(reader)
    writer.close()
    alice = await xmpp_node.user("a")
    client = Slix(f"{alice.username}@localhost/ok", PASSWORD, None)
    await client.login(xmpp_node.port)
    await client.bye()
