"""Bad input over real sockets: every malformed, oversized, unauthenticated or invalid frame gets a documented error
and close code, and changes nothing a well-behaved client can observe."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import msgspec
import pytest

from pica.client import Login, PicaConnection, PicaHttp, PicaHttpError, ServerClosed
from pica.client.connection import RequestFailed
from pica.protocol import frames as f
from pica.protocol.framing import HEADER, frame_bytes
from tests.conftest import Node, connect, new_user, started

WAIT = 5.0  # upper bound for any single server reaction; the tests finish far sooner


async def dial(node: Node, transport: str) -> Any:
    """A raw, unauthenticated wire: frames go out exactly as written, nothing is answered for us."""
    return await PicaConnection.dial(node.url, transport=transport, tcp_port=node.tcp_port)  # type: ignore[arg-type]


async def dial_ready(node: Node, login: Login, transport: str) -> Any:
    wire = await dial(node, transport)
    await wire.write(f.Auth(token=login.token))
    async with asyncio.timeout(WAIT):
        assert isinstance(await wire.read(), f.Ready)
    return wire


async def read_until_closed(wire: Any) -> tuple[list[Any], int | None]:
    """Every frame up to the end of the connection, and the close code (TCP ``close`` frame or WebSocket close)."""
    frames: list[Any] = []
    code: int | None = None
    async with asyncio.timeout(WAIT):
        while True:
            try:
                frame = await wire.read()
            except ServerClosed as closed:
                return frames, code if code is not None else closed.code
            if isinstance(frame, f.Close):
                code = frame.code
            frames.append(frame)


def errors(frames: list[Any]) -> list[str]:
    return [frame.code for frame in frames if isinstance(frame, f.Error)]


async def history_count(node: Node, login: Login, conversation_id: str) -> int:
    async with PicaHttp(node.url, login.token) as http:
        return len((await http.history(conversation_id))["messages"])


def tcp_payload(value: Any) -> bytes:
    return frame_bytes(msgspec.msgpack.encode(value))


# ---------------------------------------------------------------------------------------------- malformed frames


@pytest.mark.parametrize(
    ("transport", "garbage"),
    [
        ("tcp", frame_bytes(b"\xc1\xc1 not msgpack")),  # a valid length prefix around bytes msgpack never uses
        ("ws", "{not json"),
        ("ws-msgpack", b"\xc1\xc1 not msgpack"),
    ],
)
async def test_malformed_frame_is_reported_and_the_connection_lives_on(
    node: Node, transport: str, garbage: bytes | str
) -> None:
    alice, bob = await new_user(node.url), await new_user(node.url)
    async with await connect(node.url, alice, transport, node.tcp_port) as conn:
        await conn.write_raw(garbage)
        error = await conn.next_event(f.Error, timeout=WAIT)
        assert (error.code, error.ref) == ("invalid_frame", None)

        await conn.ping()
        ack = await conn.send(bob.user_id, {"text": "still here"})
        assert ack.seq == 1  # the garbage stored nothing before it


@pytest.mark.parametrize(
    ("transport", "frame"),
    [("tcp", tcp_payload({"t": "teleport", "to": "mars"})), ("ws", '{"t":"teleport"}')],
)
async def test_unknown_frame_type_is_reported_and_the_connection_lives_on(
    node: Node, transport: str, frame: bytes | str
) -> None:
    alice = await new_user(node.url)
    async with await connect(node.url, alice, transport, node.tcp_port) as conn:
        await conn.write_raw(frame)
        error = await conn.next_event(f.Error, timeout=WAIT)
        assert error.code == "unknown_frame"
        await conn.ping()


# ---------------------------------------------------------------------------------------------- oversized frames


@pytest.mark.parametrize("authenticated", [False, True], ids=["before-auth", "after-auth"])
async def test_oversized_tcp_header_is_refused_before_any_payload(node: Node, authenticated: bool) -> None:
    wire = await (dial_ready(node, await new_user(node.url), "tcp") if authenticated else dial(node, "tcp"))
    try:
        await wire.write_raw(HEADER.pack(10 * 1024 * 1024))  # 10 MB announced; not one byte of it follows
        frames, code = await read_until_closed(wire)
    finally:
        await wire.close()
    assert errors(frames) == ["frame_too_large"]
    assert code == 4503
    assert isinstance(frames[-1], f.Close)  # the close notice is the last frame, then the server hangs up


async def test_oversized_websocket_message_is_closed_with_1009(node: Node) -> None:
    alice, bob = await new_user(node.url), await new_user(node.url)
    wire = await dial_ready(node, alice, "ws")
    try:
        limit = node.server.config.limits.max_frame_bytes
        big = msgspec.json.encode(f.Send(to=bob.user_id, client_msg_id="big", body={"text": "x" * limit}, id=1))
        await wire.write_raw(big.decode())
        frames, code = await read_until_closed(wire)
    finally:
        await wire.close()
    assert code == 1009
    assert not any(isinstance(frame, f.Sent) for frame in frames)
    async with await connect(node.url, bob) as b:  # and nothing was stored
        assert (await b.sync()).msgs == []


# ---------------------------------------------------------------------------------------------- authentication


@pytest.mark.parametrize("transport", ["tcp", "ws"])
async def test_send_before_auth_is_refused_and_closed(node: Node, transport: str) -> None:
    alice, bob = await new_user(node.url), await new_user(node.url)
    wire = await dial(node, transport)
    try:
        await wire.write(f.Send(to=bob.user_id, client_msg_id="sneaky", body={"text": "hi"}, id=1))
        frames, code = await read_until_closed(wire)
    finally:
        await wire.close()
    assert errors(frames) == ["unauthenticated"]
    assert code == 4500
    async with await connect(node.url, alice) as a:  # nothing was sent on alice's behalf, or anyone's
        assert (await a.sync()).msgs == []
        assert (await a.send(bob.user_id, {"text": "hi"}, client_msg_id="sneaky")).duplicate is False


@pytest.mark.parametrize("transport", ["tcp", "ws"])
async def test_bad_token_is_refused_with_4501(node: Node, transport: str) -> None:
    wire = await dial(node, transport)
    try:
        await wire.write(f.Auth(token="not.a.jwt"))
        frames, code = await read_until_closed(wire)
    finally:
        await wire.close()
    assert errors(frames) == ["invalid_token"]
    assert code == 4501


def signed_token(node: Node, login: Login, expires_in: int = -60) -> str:
    """An access token of the login's session signed with the node's own secret, with the claims
    pica.core.tokens requires, expiring ``expires_in`` seconds from now."""
    secret = (node.server.config.data_dir / "token_secret").read_text().strip()
    now = int(time.time())
    claims = {"sub": str(login.user_id), "sid": login.session_id, "iss": "pica", "iat": now - 3600,
              "exp": now + expires_in, "jti": uuid.uuid4().hex}
    return jwt.encode(claims, secret, algorithm="HS256")


@pytest.mark.parametrize("transport", ["tcp", "ws"])
async def test_expired_token_is_refused_with_4502(node: Node, transport: str) -> None:
    alice = await new_user(node.url)
    wire = await dial(node, transport)
    try:
        await wire.write(f.Auth(token=signed_token(node, alice)))
        frames, code = await read_until_closed(wire)
    finally:
        await wire.close()
    assert errors(frames) == ["token_expired"]
    assert code == 4502
    with pytest.raises(ServerClosed) as refused:  # the client library reports the same
        await PicaConnection.open(node.url, signed_token(node, alice), transport="tcp", tcp_port=node.tcp_port)
    assert refused.value.code == 4502


@pytest.mark.parametrize("transport", ["tcp", "ws"])
async def test_unsupported_protocol_version_is_refused_with_4504(node: Node, transport: str) -> None:
    alice = await new_user(node.url)
    wire = await dial(node, transport)
    try:
        await wire.write(f.Auth(token=alice.token, v=f.PROTOCOL_VERSION + 1))
        frames, code = await read_until_closed(wire)
    finally:
        await wire.close()
    assert errors(frames) == ["unsupported_version"]
    assert code == 4504


# ---------------------------------------------------------------------------------------------- invalid requests


@pytest.mark.parametrize("transport", ["tcp", "ws"])
async def test_send_to_a_missing_user_fails_that_request_only(node: Node, transport: str) -> None:
    alice, bob = await new_user(node.url), await new_user(node.url)
    wire = await dial_ready(node, alice, transport)
    try:
        await wire.write(f.Send(to=2**40, client_msg_id="m1", body={"text": "anyone?"}, id=41))
        async with asyncio.timeout(WAIT):
            error = await wire.read()
            assert isinstance(error, f.Error)
            assert (error.code, error.ref, error.retryable) == ("user_not_found", 41, False)

            await wire.write(f.Sync(id=42))  # the connection still serves requests, and nothing was stored
            synced = await wire.read()
            assert isinstance(synced, f.Synced) and (synced.ref, synced.msgs) == (42, [])

            await wire.write(f.Send(to=bob.user_id, client_msg_id="m1", body={"text": "hi bob"}, id=43))
            sent = await wire.read()  # the failed send did not use up its client_msg_id
            assert isinstance(sent, f.Sent) and (sent.ref, sent.seq, sent.duplicate) == (43, 1, False)
    finally:
        await wire.close()


async def test_history_of_someone_elses_conversation_looks_like_no_conversation(node: Node) -> None:
    alice, bob, carol = await new_user(node.url), await new_user(node.url), await new_user(node.url)
    async with await connect(node.url, alice) as a:
        private = (await a.send(bob.user_id, {"text": "just between us"})).conversation_id
    wire = await dial_ready(node, carol, "tcp")
    try:
        answers = []
        for request_id, conversation_id in [(7, private), (8, "d:999998:999999")]:
            await wire.write(f.History(conversation_id=conversation_id, id=request_id))
            async with asyncio.timeout(WAIT):
                answers.append(await wire.read())
    finally:
        await wire.close()
    assert all(isinstance(a, f.Error) for a in answers)
    assert [(a.ref, a.code) for a in answers] == [(7, "conversation_not_found"), (8, "conversation_not_found")]
    assert answers[0].message == answers[1].message  # existing-but-private and missing cannot be told apart


LONG_TEXT = "x" * 8_001
DEEP: dict[str, Any] = {"custom": 0}
for _ in range(20):
    DEEP = {"custom": DEEP}


@pytest.mark.parametrize(
    "body",
    [{}, {"text": LONG_TEXT}, {"text": "   "}, {"text": 5}, {"custom": 1, "type": 7}, DEEP],
    ids=["empty", "text-too-long", "blank-text", "text-not-str", "type-not-str", "too-deep"],
)
async def test_invalid_body_is_a_bad_request_and_stores_nothing(node: Node, body: dict[str, Any]) -> None:
    alice, bob = await new_user(node.url), await new_user(node.url)
    async with await connect(node.url, alice, "tcp", node.tcp_port) as conn:
        first = await conn.send(bob.user_id, {"text": "the one good message"})
        with pytest.raises(RequestFailed) as failed:
            await conn.send(bob.user_id, body, client_msg_id="rejected")
        assert failed.value.code == "bad_request"

        assert await history_count(node, alice, first.conversation_id) == 1
        retry = await conn.send(bob.user_id, {"text": "fixed"}, client_msg_id="rejected")
        assert (retry.seq, retry.duplicate) == (2, False)


# ---------------------------------------------------------------------------------------------- timeouts


@pytest.fixture
async def quick_node(tmp_path: Path) -> AsyncIterator[Node]:
    """A node with timers short enough to watch: auth 0.3 s, heartbeat 0.2 s, idle 0.5 s."""
    async with started(tmp_path, auth_timeout=0.3, heartbeat_interval=0.2, idle_timeout=0.5) as node:
        yield node


@pytest.mark.parametrize("transport", ["tcp", "ws"])
async def test_silent_connection_is_closed_at_the_auth_deadline(quick_node: Node, transport: str) -> None:
    wire = await dial(quick_node, transport)
    started = time.monotonic()
    try:
        frames, code = await read_until_closed(wire)  # we never say a word
    finally:
        await wire.close()
    elapsed = time.monotonic() - started
    assert errors(frames) == ["unauthenticated"]
    assert code == 4003
    assert 0.25 <= elapsed < 2.0


@pytest.mark.parametrize("transport", ["tcp", "ws"])
async def test_client_that_never_answers_pings_is_closed_as_idle(quick_node: Node, transport: str) -> None:
    wire = await dial_ready(quick_node, await new_user(quick_node.url), transport)
    started = time.monotonic()
    try:
        frames, code = await read_until_closed(wire)  # read everything, answer nothing
    finally:
        await wire.close()
    assert code == 4001
    assert any(isinstance(frame, f.Ping) for frame in frames)  # the server did ask
    assert errors(frames) == []
    assert 0.4 <= time.monotonic() - started < 2.0


async def test_client_that_answers_pings_outlives_the_idle_timeout(quick_node: Node) -> None:
    alice = await new_user(quick_node.url)
    async with await connect(quick_node.url, alice, "tcp", quick_node.tcp_port) as conn:
        await asyncio.sleep(1.0)  # two idle timeouts, bridged only by PicaConnection's automatic pongs
        assert conn.closed is None
        await conn.ping()


async def test_a_socket_outlives_its_access_token(quick_node: Node) -> None:
    """The token is checked at auth only: a READY connection lasts as long as its session (protocol section 18)."""
    alice = await new_user(quick_node.url)
    soon = signed_token(quick_node, alice, expires_in=1)
    async with await PicaConnection.open(quick_node.url, soon, transport="tcp", tcp_port=quick_node.tcp_port) as conn:
        await asyncio.sleep(2.5)  # well past the token's expiry, and many heartbeats
        await conn.ping()
        assert conn.closed is None


async def test_integers_beyond_what_clients_can_represent_are_rejected(node: Node) -> None:
    """A body integer outside ±(2**53 - 1) would be committed yet undeliverable over MessagePack or to a browser."""
    alice, bob = await new_user(node.url), await new_user(node.url)
    async with PicaHttp(node.url, token=alice.token) as http:
        with pytest.raises(PicaHttpError) as rejected:
            await http.send(bob.user_id, "big", {"custom": {"n": 2**70}})
        assert rejected.value.code == "bad_request"
        ok = await http.send(bob.user_id, "fits", {"custom": {"n": 2**53 - 1}})
    conn = await connect(node.url, bob, "tcp", node.tcp_port)
    async with conn:
        (msg,) = await conn.sync_all()
    assert (msg.seq, msg.body) == (ok["seq"], {"custom": {"n": 2**53 - 1}})
