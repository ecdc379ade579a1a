"""Deleting an account and exporting one's data: stories over real sockets and HTTP (protocol §14.5, §23.5)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import aiohttp
import pytest

import pica.core.lifecycle
from pica.client import Login, PicaHttp, PicaHttpError
from pica.client.connection import ServerClosed
from pica.protocol import frames as f
from tests.conftest import PASSWORD, Node, api, api_error, connect, new_user

WAIT = 5.0


async def raw(node: Node, who: Login, method: str, path: str, **kwargs: Any) -> tuple[int, Any, bytes]:
    """(status, headers, body bytes) of a request, for what PicaHttp does not show."""
    async with aiohttp.ClientSession() as session, session.request(
            method, node.url + path, headers={"Authorization": f"Bearer {who.token}"}, **kwargs) as resp:
        return resp.status, resp.headers, await resp.read()


async def name_of(node: Node, who: Login) -> str:
    return str((await api(node, who, "GET", "/v1/me"))["username"])


async def test_a_deleted_account_is_gone_but_its_messages_stay_as_from_a_deleted_user(node: Node) -> None:
    alice, bob, carol = await new_user(node.url, "alice"), await new_user(node.url, "bob"), await new_user(node.url)
    alice_name = await name_of(node, alice)
    await api(node, alice, "POST", "/v1/contacts/requests", json={"user_id": bob.user_id})
    await api(node, bob, "POST", f"/v1/contacts/requests/{alice.user_id}/accept")
    sent = await api(node, alice, "POST", "/v1/messages",
                     json={"to": bob.user_id, "client_msg_id": "a1", "body": {"text": "remember me"}})
    group = await api(node, alice, "POST", "/v1/groups", json={"name": "club", "members": [bob.user_id,
                                                                                           carol.user_id]})
    gid = group["group_id"]
    await api(node, alice, "POST", f"/v1/groups/{gid}/members/{bob.user_id}/role", json={"role": "admin"})

    # Alice is online on two devices, over both transports; Bob is watching the group.
    phone = await connect(node.url, alice)
    laptop = await connect(node.url, alice, transport="tcp", tcp_port=node.tcp_port)
    watcher = await connect(node.url, bob)
    try:
        # A wrong or missing password deletes nothing.
        for body in ({"password": "not her password"}, {}):
            assert await api_error(node, alice, "DELETE", "/v1/me", json=body) == (401, "invalid_credentials")
        assert await name_of(node, alice) == alice_name

        async with PicaHttp(node.url, token=alice.token) as http:
            assert await http.request("DELETE", "/v1/me", json={"password": PASSWORD}) is None  # 204

        # Her sockets are told and closed at once (4506: her sessions ended with the account).
        for conn in (phone, laptop):
            error = await conn.next_event(f.Error, WAIT)
            assert (error.code, error.message) == ("session_ended", "this account was deleted")
            with pytest.raises(ServerClosed) as closed:
                await conn.next_event(f.Msg, WAIT)
            assert closed.value.code == 4506

        # The group passed to Bob (the admin) and Alice left it; Bob saw both notices live.
        events: list[tuple[int, str]] = []
        while len(events) < 2:
            msg = await watcher.next_message(WAIT)
            if msg.conversation_id == group["conversation_id"] and msg.seq > 2:  # after "created", "role_changed"
                events.append((msg.sender, msg.body["system"]["event"]))
        assert events == [(alice.user_id, "owner_changed"), (alice.user_id, "member_left")]
        club = await api(node, bob, "GET", f"/v1/groups/{gid}")
        assert (club["owner_id"], club["member_count"]) == (bob.user_id, 2)
    finally:
        for conn in (phone, laptop, watcher):
            await conn.close()

    # She can neither log in nor use her token.
    async with PicaHttp(node.url) as http:
        with pytest.raises(PicaHttpError) as refused:
            await http.login(alice_name, PASSWORD)
    assert (refused.value.status, refused.value.code) == (401, "invalid_credentials")
    assert await api_error(node, alice, "GET", "/v1/me") == (401, "session_ended")

    # Bob still reads what she wrote, from her id, which resolves to a deleted user with no name.
    history = await api(node, bob, "GET", f"/v1/conversations/{sent['conversation_id']}/messages")
    assert [(m["sender"], m["body"]) for m in history["messages"]] == [(alice.user_id, {"text": "remember me"})]
    assert await api(node, bob, "GET", f"/v1/users/{alice.user_id}") == {
        "user_id": alice.user_id, "username": "", "deleted": True}
    assert await api(node, bob, "GET", "/v1/contacts") == {"contacts": []}
    assert await api_error(node, bob, "POST", "/v1/messages", json={
        "to": alice.user_id, "client_msg_id": "b1", "body": {"text": "hello?"}}) == (404, "user_not_found")

    # Her name is free again (it is not kept: a deleted account leaves no username behind).
    async with PicaHttp(node.url) as http:
        assert await http.register(alice_name, PASSWORD) != alice.user_id


async def test_a_lonely_owner_s_group_is_dissolved_with_the_account(node: Node) -> None:
    alice = await new_user(node.url, "alice")
    solo = await api(node, alice, "POST", "/v1/groups", json={"name": "notes to self"})
    async with PicaHttp(node.url, token=alice.token) as http:
        await http.delete_account(PASSWORD)
    # Nobody is left to see it; it is dissolved, so it takes no messages.
    assert node.server.services is not None
    (group,) = await node.server.store.list_all_groups(10)
    assert (group.group_id, group.dissolved, group.member_count) == (solo["group_id"], True, 0)


async def test_deleting_counts_as_a_login_so_it_cannot_be_used_to_guess_passwords(node: Node) -> None:
    """The account's failed-login bucket (rates.login_failures_per_account, 10 per 15 min) pays for every wrong
    password given to DELETE /v1/me, and then refuses logins and deletions alike."""
    mallory_target = await new_user(node.url, "target")
    name = await name_of(node, mallory_target)
    for attempt in range(10):
        assert await api_error(node, mallory_target, "DELETE", "/v1/me",
                               json={"password": f"guess {attempt}"}) == (401, "invalid_credentials")
    status, headers, data = await raw(node, mallory_target, "DELETE", "/v1/me", json={"password": PASSWORD})
    body = json.loads(data)
    assert status == 429 and int(headers["Retry-After"]) >= 1
    assert body["code"] == "rate_limited" and body["retry_after"] > 0
    async with PicaHttp(node.url) as http:
        with pytest.raises(PicaHttpError) as refused:
            await http.login(name, PASSWORD)
    assert refused.value.code == "rate_limited"
    assert await name_of(node, mallory_target) == name  # still there


async def test_my_export_holds_my_profile_contacts_groups_and_every_message_i_sent(
        node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pica.core.lifecycle, "EXPORT_PAGE", 2)  # several pages, streamed one by one
    alice, bob = await new_user(node.url, "alice"), await new_user(node.url, "bob")
    await api(node, alice, "POST", "/v1/contacts/requests", json={"user_id": bob.user_id})
    await api(node, alice, "PATCH", "/v1/me", json={"presence": "contacts"})
    group = await api(node, alice, "POST", "/v1/groups", json={"name": "book club", "members": [bob.user_id]})
    mine = [f"a{i}-{uuid.uuid4().hex[:6]}" for i in range(5)]
    for cmid in mine:
        await api(node, alice, "POST", "/v1/messages",
                  json={"to": bob.user_id, "client_msg_id": cmid, "body": {"text": cmid}})
    await api(node, alice, "POST", "/v1/messages",
              json={"group_id": group["group_id"], "client_msg_id": "in-group", "body": {"text": "hi all"}})
    await api(node, bob, "POST", "/v1/messages",
              json={"to": alice.user_id, "client_msg_id": "from-bob", "body": {"text": "not hers"}})

    status, headers, data = await raw(node, alice, "GET", "/v1/me/export")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert headers["Cache-Control"] == "no-store"
    assert headers.get("Transfer-Encoding") == "chunked"  # streamed, not built in memory
    archive = json.loads(data)

    assert archive["format"] == "pica-export-1"
    assert archive["profile"]["user_id"] == alice.user_id
    assert archive["profile"]["settings"] == {"only_contacts": False, "group_add": "everyone",
                                              "presence": "contacts"}
    assert [(c["user_id"], c["state"]) for c in archive["contacts"]] == [(bob.user_id, "outgoing")]
    assert [g["group_id"] for g in archive["groups"]] == [group["group_id"]]
    sent = {m["client_msg_id"]: m for m in archive["messages"]}
    assert set(mine) | {"in-group"} <= set(sent)
    assert "from-bob" not in sent
    assert {cmid for cmid in sent if not cmid.startswith("~")} == set(mine) | {"in-group"}  # and notices she made
    assert sent["in-group"]["conversation_id"] == group["conversation_id"]
    assert sent[mine[0]]["body"] == {"text": mine[0]}


async def test_exports_are_rate_limited_per_user(node: Node) -> None:
    alice = await new_user(node.url, "alice")
    async with PicaHttp(node.url, token=alice.token) as http:
        for _ in range(3):  # rates.exports_per_user: 3/h
            assert (await http.export())["messages"] == []
    status, headers, data = await raw(node, alice, "GET", "/v1/me/export")
    body = json.loads(data)
    assert status == 429 and int(headers["Retry-After"]) > 60
    assert body["code"] == "rate_limited" and body["retry_after"] > 60
