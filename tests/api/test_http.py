"""The fixed HTTP surface: accounts, sends, history, and JSON errors with fitting statuses."""

from __future__ import annotations

import io
from typing import Any

import aiohttp
import pytest

from pica.client import PicaHttp, PicaHttpError
from tests.conftest import PASSWORD, Node, new_user


async def raw(node: Node, method: str, path: str, **kwargs: object) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as session, session.request(method, node.url + path, **kwargs) as resp:  # type: ignore[arg-type]
        return resp.status, await resp.json(content_type=None)


async def test_healthz(node: Node) -> None:
    assert await raw(node, "GET", "/healthz") == (200, {"status": "ok"})


async def test_register_login_and_conflicts(node: Node) -> None:
    async with PicaHttp(node.url) as http:
        user_id = await http.register("Carol_1", PASSWORD)
        login = await http.login("carol_1", PASSWORD)  # names are case-insensitive
        assert login.user_id == user_id and login.token and login.expires_at > 0
        with pytest.raises(PicaHttpError) as taken:
            await http.register("CAROL_1", PASSWORD)
        assert (taken.value.status, taken.value.code) == (409, "username_taken")
        with pytest.raises(PicaHttpError) as weak:
            await http.register("dave", "short")
        assert (weak.value.status, weak.value.code) == (400, "weak_password")
        messages = {}
        for guessable in ("password123", "qwertyuiop", "dave_the_user1", "Dave_the_user"):
            with pytest.raises(PicaHttpError) as common:
                await http.register("dave_the_user", guessable)
            assert (common.value.status, common.value.code) == (400, "weak_password"), guessable
            messages[guessable] = common.value.message
        assert "very common password" in messages["password123"]
        assert messages["Dave_the_user"] == "password must not be the username"
        assert await http.register("dave_the_user", "quiet lantern 47 orbit") > 0
        for look_alike in ("no spaces allowed", "carol_1\n", "carol\x00"):
            with pytest.raises(PicaHttpError) as bad_name:
                await http.register(look_alike, PASSWORD)
            assert (bad_name.value.status, bad_name.value.code) == (400, "invalid_username"), look_alike
        for name, password in [("carol_1", "wrong password!"), ("nobody_here", PASSWORD), ("carol_1\n", PASSWORD),
                               ("carol\x00", PASSWORD)]:
            with pytest.raises(PicaHttpError) as denied:
                await http.login(name, password)
            assert (denied.value.status, denied.value.code) == (401, "invalid_credentials")


async def test_send_over_http_and_read_history(node: Node) -> None:
    alice, bob = await new_user(node.url), await new_user(node.url)
    async with PicaHttp(node.url, token=alice.token) as http:
        ack = await http.send(bob.user_id, "h1", {"text": "hello over http"})
        assert ack["seq"] == 1 and ack["conversation_id"]
        page = await http.history(ack["conversation_id"])
    assert page["messages"] == [
        {
            "conversation_id": ack["conversation_id"],
            "seq": 1,
            "sender": alice.user_id,
            "client_msg_id": "h1",
            "ts": ack["ts"],
            "body": {"text": "hello over http"},
        }
    ]


async def test_errors_are_json_with_codes(node: Node) -> None:
    alice, bob = await new_user(node.url), await new_user(node.url)
    outsider = await new_user(node.url)
    auth = {"Authorization": f"Bearer {alice.token}"}
    cases: list[tuple[str, str, dict[str, Any], int, str]] = [
        ("POST", "/v1/messages", {"json": {"to": bob.user_id, "client_msg_id": "x", "body": {"text": "t"}}}, 401,
         "unauthenticated"),
        ("POST", "/v1/messages", {"headers": {"Authorization": "Bearer nonsense"}, "json": {}}, 401, "invalid_token"),
        ("POST", "/v1/messages", {"headers": auth, "data": b"{not json"}, 400, "bad_request"),
        ("POST", "/v1/messages", {"headers": auth, "json": {"to": 999_999, "client_msg_id": "x",
                                                            "body": {"text": "t"}}}, 404, "user_not_found"),
        ("POST", "/v1/messages", {"headers": auth, "json": {"to": bob.user_id, "client_msg_id": "x",
                                                            "body": "not an object"}}, 400, "bad_request"),
        ("POST", "/v1/messages", {"headers": auth, "json": {"to": bob.user_id, "client_msg_id": "",
                                                            "body": {"text": "t"}}}, 400, "bad_request"),
        ("GET", "/v1/nowhere", {}, 404, "not_found"),
        ("POST", "/v1/auth/register", {"data": b"[1, 2]"}, 400, "bad_request"),
        ("POST", "/v1/auth/register", {"data": b'{"username": "\xff\xfe"}'}, 400, "bad_request"),  # not UTF-8
        ("POST", "/v1/messages", {"headers": auth, "data": b"[" * 50_000 + b"]" * 50_000}, 400, "bad_request"),
    ]
    for method, path, kwargs, status, code in cases:
        got_status, body = await raw(node, method, path, **kwargs)
        assert (got_status, body.get("code")) == (status, code), (path, kwargs, body)
        assert isinstance(body.get("message"), str)

    async with PicaHttp(node.url, token=alice.token) as http:
        ack = await http.send(bob.user_id, "private", {"text": "just us"})
    status, body = await raw(node, "GET", f"/v1/conversations/{ack['conversation_id']}/messages",
                             headers={"Authorization": f"Bearer {outsider.token}"})
    assert (status, body["code"]) == (404, "conversation_not_found")
    status, missing = await raw(node, "GET", "/v1/conversations/d:1:999999/messages",
                                headers={"Authorization": f"Bearer {outsider.token}"})
    assert (status, missing) == (404, body), "a foreign and a missing conversation must look the same"
    status, body = await raw(node, "GET", f"/v1/conversations/{ack['conversation_id']}/messages?limit=zero",
                             headers=auth)
    assert (status, body["code"]) == (400, "bad_request")


async def test_request_body_limit(node: Node) -> None:
    huge = b"{" + b" " * (node.server.config.limits.max_http_body_bytes + 10) + b"}"
    status, body = await raw(node, "POST", "/v1/auth/register", data=io.BytesIO(huge))
    assert status == 413 and body["code"] == "payload_too_large"


async def test_conversation_list(node: Node) -> None:
    alice, bob, carol = await new_user(node.url), await new_user(node.url), await new_user(node.url)
    async with PicaHttp(node.url, token=alice.token) as http:
        await http.send(bob.user_id, "1", {"text": "to bob"})
        await http.send(carol.user_id, "2", {"text": "to carol"})
        listing = await http.request("GET", "/v1/conversations")
    ids = [c["conversation_id"] for c in listing["conversations"]]
    assert len(ids) == 2 and all(c["last_seq"] == 1 for c in listing["conversations"])


async def test_out_of_range_ids_are_refused_and_writes_go_on(node: Node) -> None:
    """A seq beyond 64 bits once reached the SQLite writer thread and stopped every later write."""
    alice, bob = await new_user(node.url), await new_user(node.url)
    auth = {"Authorization": f"Bearer {alice.token}"}
    async with PicaHttp(node.url, token=alice.token) as http:
        ack = await http.send(bob.user_id, "first", {"text": "hi"})
    conversation = ack["conversation_id"]
    for seq in ["99999999999999999999999", "²", "-1", "0", "1e3"]:
        status, body = await raw(node, "POST", f"/v1/conversations/{conversation}/messages/{seq}/recall",
                                 headers=auth, json={"client_msg_id": "r"})
        assert (status, body["code"]) == (400, "bad_request"), seq
    status, body = await raw(node, "POST", "/v1/messages", headers=auth,
                             json={"to": 2**64, "client_msg_id": "x", "body": {"text": "t"}})
    assert (status, body["code"]) == (400, "bad_request")
    async with PicaHttp(node.url, token=alice.token) as http:
        assert (await http.send(bob.user_id, "second", {"text": "still writing"}))["seq"] == 2


async def test_user_ids_turn_into_names(node: Node) -> None:
    alice, bob = await new_user(node.url, "alice"), await new_user(node.url, "bob")
    async with PicaHttp(node.url, token=alice.token) as http:
        found = await http.request("GET", f"/v1/users/{bob.user_id}")
        group = await http.request("POST", "/v1/groups", json={"name": "g", "members": [bob.user_id]})
        members = await http.request("GET", f"/v1/groups/{group['group_id']}/members")
        with pytest.raises(PicaHttpError) as missing:
            await http.request("GET", "/v1/users/999999")
    assert found["user_id"] == bob.user_id and found["username"].startswith("bob")
    assert {m["user_id"]: m["username"] for m in members["members"]}[bob.user_id] == found["username"]
    assert (missing.value.status, missing.value.code) == (404, "user_not_found")
    status, body = await raw(node, "GET", f"/v1/users/{bob.user_id}")
    assert (status, body["code"]) == (401, "unauthenticated")


async def test_json_answers_end_with_a_newline(node: Node) -> None:
    """What curl prints ends its line: the shell prompt does not stick to the JSON."""
    async with aiohttp.ClientSession() as session:
        for method, path in (("GET", "/healthz"), ("GET", "/v1/me"), ("POST", "/v1/auth/login")):
            async with session.request(method, node.url + path) as resp:
                body = await resp.read()
                assert body.endswith(b"}\n"), (path, body)
