"""Sessions, as a user lives them (docs/protocol.md section 23.1): short access tokens renewed by rotating refresh
tokens, a reused refresh token ending the session, logout, the list of my devices, ending one, and a password change
that ends the others. Over real sockets; every ended session's sockets close within a second (4506)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from pica.client import Login, PicaClient, PicaConnection, PicaHttp, PicaHttpError, ServerClosed
from pica.protocol.close_codes import CloseCode
from tests.conftest import PASSWORD, TEST_AUTH, Node, make_config, new_user, running

CLOSE_WITHIN = 1.5
"""Seconds an ended session's socket may stay open: the revocation poll runs every 0.5 s (auth.revocation_poll)."""


def node_with(tmp_path: Path, **auth: object) -> contextlib.AbstractAsyncContextManager[Node]:
    """A node with some ``auth`` settings changed."""
    auth_config = dataclasses.replace(TEST_AUTH, **auth)  # type: ignore[arg-type]
    return running(dataclasses.replace(make_config(tmp_path), auth=auth_config))


@pytest.fixture
async def short_tokens(tmp_path: Path) -> AsyncIterator[Node]:
    """A node whose access tokens live 2 s (long enough to open a socket with one on a loaded machine)."""
    async with node_with(tmp_path, token_ttl=2.0) as node:
        yield node


async def login_as(node: Node, username: str, agent: str = "pica-tests") -> Login:
    async with aiohttp.ClientSession(headers={"User-Agent": agent}) as session, session.post(
        node.url + "/v1/auth/login", json={"username": username, "password": PASSWORD}
    ) as resp:
        assert resp.status == 200, await resp.text()
        return Login.from_json(await resp.json())


async def refused(node: Node, method: str, path: str, token: str, **kwargs: object) -> tuple[int, str]:
    async with PicaHttp(node.url) as http:
        with pytest.raises(PicaHttpError) as failed:
            await http.request(method, path, token=token, **kwargs)  # type: ignore[arg-type]
    return failed.value.status, failed.value.code


async def closed_with(conn: PicaConnection, within: float = CLOSE_WITHIN) -> int | None:
    async with asyncio.timeout(within):
        while conn.closed is None:
            await asyncio.sleep(0.02)
    return conn.closed.code


async def username(node: Node, login: Login) -> str:
    async with PicaHttp(node.url, login.token) as http:
        return str((await http.request("GET", "/v1/me"))["username"])


async def test_a_login_opens_a_session_whose_refresh_token_rotates(node: Node) -> None:
    alice = await new_user(node.url, "alice")
    assert alice.refresh_token.startswith("r1.") and alice.session_id
    assert alice.refresh_expires_at > alice.expires_at > time.time()
    async with PicaHttp(node.url, refresh_token=alice.refresh_token) as http:
        renewed = await http.refresh()
        assert renewed.session_id == alice.session_id and renewed.user_id == alice.user_id
        assert renewed.refresh_token != alice.refresh_token and renewed.token != alice.token
        await http.request("GET", "/v1/me")  # the new access token works
        again = await http.refresh()  # and the new refresh token rotates in turn
        assert again.refresh_token not in (alice.refresh_token, renewed.refresh_token)


async def test_a_stolen_refresh_token_used_after_the_owner_ends_the_session_for_both(node: Node) -> None:
    """RFC 6819 5.2.2.3: the thief copied alice's refresh token; she refreshes first (the grace for a lost answer
    is 10 s, so the theft shows when the thief tries after it); the reused token ends the session, and her current
    tokens stop working too, on HTTP and on her socket."""
    alice = await new_user(node.url, "alice")
    stolen = alice.refresh_token
    async with PicaHttp(node.url, refresh_token=alice.refresh_token) as owner:
        current = await owner.refresh()
        current = await owner.refresh()  # a second rotation: the stolen token is now two generations old
    conn = await PicaConnection.open(node.url, current.token)

    assert await refused(node, "POST", "/v1/auth/refresh", "", json={"refresh_token": stolen}) == (
        401, "session_ended")
    assert await closed_with(conn) == CloseCode.SESSION_ENDED
    assert await refused(node, "GET", "/v1/me", current.token) == (401, "session_ended")
    assert await refused(node, "POST", "/v1/auth/refresh", "", json={"refresh_token": current.refresh_token}) == (
        401, "session_ended")
    await conn.close()


async def test_a_lost_refresh_answer_can_be_asked_for_again(node: Node) -> None:
    """The client sent its refresh token, the answer never came, and it sends the same token again at once: it gets
    new tokens, not a logout."""
    alice = await new_user(node.url, "alice")
    body = {"refresh_token": alice.refresh_token}
    async with PicaHttp(node.url) as http:
        await http.request("POST", "/v1/auth/refresh", json=body)  # the answer is "lost"
        retried = Login.from_json(await http.request("POST", "/v1/auth/refresh", json=body))
        await http.request("GET", "/v1/me", token=retried.token)


async def test_forged_and_malformed_refresh_tokens_are_refused_without_ending_anything(node: Node) -> None:
    alice = await new_user(node.url, "alice")
    prefix, session_id, generation, mac = alice.refresh_token.split(".")
    for token in [f"{prefix}.{session_id}.{generation}.{mac[:-2]}AA", f"{prefix}.{session_id}.7.{mac}",
                  "r1.x.0.y", "", "r1..0.", 5, None, "a" * 500]:
        assert await refused(node, "POST", "/v1/auth/refresh", "", json={"refresh_token": token}) == (
            401, "invalid_token"), token
    async with PicaHttp(node.url, alice.token) as http:
        await http.request("GET", "/v1/me")  # her session is untouched


async def test_logout_refuses_the_token_and_closes_its_sockets_within_a_second(node: Node) -> None:
    alice = await new_user(node.url, "alice")
    phone = await login_as(node, await username(node, alice), "phone")
    ws = await PicaConnection.open(node.url, alice.token)
    tcp = await PicaConnection.open(node.url, alice.token, transport="tcp", tcp_port=node.tcp_port)
    on_phone = await PicaConnection.open(node.url, phone.token)

    async with PicaHttp(node.url, alice.token, alice.refresh_token) as http:
        await http.logout()
        assert http.token is None and http.refresh_token is None
    assert await closed_with(ws) == CloseCode.SESSION_ENDED
    assert await closed_with(tcp) == CloseCode.SESSION_ENDED
    assert await refused(node, "GET", "/v1/me", alice.token) == (401, "session_ended")
    assert await refused(node, "POST", "/v1/auth/refresh", "", json={"refresh_token": alice.refresh_token}) == (
        401, "session_ended")
    with pytest.raises(ServerClosed) as at_connect:
        await PicaConnection.open(node.url, alice.token)
    assert at_connect.value.code == CloseCode.SESSION_ENDED
    # Her phone's session is another one: it goes on.
    assert on_phone.closed is None
    async with PicaHttp(node.url, phone.token) as http:
        await http.request("GET", "/v1/me")
    assert await refused(node, "POST", "/v1/auth/logout", alice.token) == (401, "session_ended")
    for conn in (ws, tcp, on_phone):
        await conn.close()


async def test_my_devices_are_listed_and_one_can_be_ended_from_another(node: Node) -> None:
    alice = await new_user(node.url, "alice")
    name = await username(node, alice)
    phone = await login_as(node, name, "PicaPhone/2.1")
    laptop = await login_as(node, name, "Mozilla/5.0 (X11; Linux x86_64)")
    bob = await new_user(node.url, "bob")

    async with PicaHttp(node.url, laptop.token) as http:
        sessions = await http.sessions()
    assert [s["session_id"] for s in sessions] == [laptop.session_id, phone.session_id, alice.session_id]
    assert [s["current"] for s in sessions] == [True, False, False]
    assert sessions[1]["user_agent"] == "PicaPhone/2.1" and sessions[1]["address"] == "127.0.0.1"
    assert sessions[1]["created_at"] <= sessions[1]["last_used_at"] < sessions[1]["expires_at"]

    on_phone = await PicaConnection.open(node.url, phone.token)
    # The phone is lost: alice ends its session from her laptop.
    async with PicaHttp(node.url, laptop.token) as http:
        await http.end_session(phone.session_id)
        assert [s["session_id"] for s in await http.sessions()] == [laptop.session_id, alice.session_id]
    assert await closed_with(on_phone) == CloseCode.SESSION_ENDED
    assert await refused(node, "GET", "/v1/me", phone.token) == (401, "session_ended")
    # Bob cannot end (or even learn of) alice's sessions: the same 404 as for none at all.
    assert await refused(node, "DELETE", f"/v1/sessions/{laptop.session_id}", bob.token) == (404, "not_found")
    assert await refused(node, "DELETE", f"/v1/sessions/{phone.session_id}", laptop.token) == (404, "not_found")
    assert await refused(node, "DELETE", "/v1/sessions/nope", laptop.token) == (404, "not_found")
    await on_phone.close()


async def test_a_password_change_ends_my_other_sessions_and_keeps_this_one(node: Node) -> None:
    alice = await new_user(node.url, "alice")
    name = await username(node, alice)
    phone = await login_as(node, name, "phone")
    on_phone = await PicaConnection.open(node.url, phone.token)
    here = await PicaConnection.open(node.url, alice.token)
    new_password = "correct horse battery staple 9"

    async with PicaHttp(node.url, alice.token) as http:
        for old, new, expected in [
            ("wrong password!", new_password, (401, "invalid_credentials")),
            (PASSWORD, "short", (400, "weak_password")),
            (PASSWORD, "password", (400, "weak_password")),
            (PASSWORD, name, (400, "weak_password")),
        ]:
            with pytest.raises(PicaHttpError) as failed:
                await http.change_password(old, new)
            assert (failed.value.status, failed.value.code) == expected, (old, new)
        assert on_phone.closed is None  # nothing changed yet
        assert await http.change_password(PASSWORD, new_password) == 1
        await http.request("GET", "/v1/me")  # this session goes on
    assert await closed_with(on_phone) == CloseCode.SESSION_ENDED
    await asyncio.sleep(CLOSE_WITHIN)
    assert here.closed is None
    assert await refused(node, "GET", "/v1/me", phone.token) == (401, "session_ended")
    async with PicaHttp(node.url) as http:
        with pytest.raises(PicaHttpError) as failed:
            await http.login(name, PASSWORD)
        assert failed.value.code == "invalid_credentials"
        await http.login(name, new_password)
    for conn in (on_phone, here):
        await conn.close()


async def test_an_expired_access_token_is_renewed_and_a_socket_outlives_it(short_tokens: Node) -> None:
    node = short_tokens
    alice = await new_user(node.url, "alice")
    conn = await PicaConnection.open(node.url, alice.token)
    await asyncio.sleep(2.5)  # the access token has expired
    assert await refused(node, "GET", "/v1/me", alice.token) == (401, "token_expired")
    assert conn.closed is None  # the socket lasts as long as the session
    await conn.ping()
    with pytest.raises(ServerClosed) as at_connect:  # a new socket needs a current token
        await PicaConnection.open(node.url, alice.token)
    assert at_connect.value.code == CloseCode.TOKEN_EXPIRED

    async with PicaHttp(node.url, alice.token, alice.refresh_token) as http:
        me = await http.request("GET", "/v1/me")  # 401 token_expired, renewed, asked again
        assert me["user_id"] == alice.user_id and http.token != alice.token
        # Requests that find the token expired at once are all answered (they share one refresh).
        await asyncio.sleep(2.5)
        await asyncio.gather(*(http.request("GET", "/v1/me") for _ in range(5)))
        await http.request("GET", "/v1/me")
    await conn.close()


async def test_the_sdk_renews_its_token_when_it_reconnects(tmp_path: Path) -> None:
    """A client given a token and a refresh token (no password) reconnects after its access token expired: the
    server refuses the old one (4502), the SDK refreshes and connects again by itself. (Tokens of 3 s: long enough
    for the renewed one to outlast a reconnection's backoff on a loaded machine.)"""
    async with node_with(tmp_path, token_ttl=3.0) as node:
        await _sdk_renews(node)


async def _sdk_renews(node: Node) -> None:
    alice = await new_user(node.url, "alice")
    bob = await new_user(node.url, "bob")
    client = PicaClient(node.url, token=alice.token, refresh_token=alice.refresh_token)
    await client.start()
    try:
        await asyncio.sleep(3.5)
        node.server.hub.connections()[0].close(CloseCode.SERVER_SHUTDOWN, "test: reconnect please")
        await asyncio.sleep(0.2)
        await client.wait_connected(10)
        ack = await client.send(to=bob.user_id, text="after the renewal")
        assert ack.seq == 1
        assert client.failure is None and client.http.token != alice.token
    finally:
        await client.close()


async def test_a_session_left_unused_ends_and_closes_its_sockets(tmp_path: Path) -> None:
    async with node_with(tmp_path, session_ttl=2.0, token_ttl=1.0) as node:
        alice = await new_user(node.url, "alice")
        conn = await PicaConnection.open(node.url, alice.token)
        assert await closed_with(conn, within=5) == CloseCode.SESSION_ENDED
        assert await refused(node, "POST", "/v1/auth/refresh", "", json={"refresh_token": alice.refresh_token}) == (
            401, "session_ended")
        await conn.close()
