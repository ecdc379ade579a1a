"""An administrator manages accounts over the admin API: creates them (administrators too), finds them by name, bans
and unbans, resets a password, sees and ends sessions, deletes an account; each change leaves an audit row with who,
from where and what, and a log record."""

from __future__ import annotations

import asyncio
import logging

import pytest

from pica.client import PicaConnection, PicaHttp, PicaHttpError
from pica.core.admin import CLI
from pica.protocol.close_codes import CloseCode
from tests.conftest import PASSWORD, Node, api, api_error, connect, new_user

NEW_PASSWORD = "a much better passphrase 2026"


async def an_admin(node: Node) -> PicaHttp:
    """A signed-in administrator (made one by the command line's code, as ``pica user admin`` does)."""
    root = await new_user(node.url, "root")
    assert node.server.services is not None and node.server.services.admin is not None
    await node.server.services.admin.set_admin(CLI, root.user_id, True)
    return PicaHttp(node.url, token=root.token)


async def closed(conn: PicaConnection) -> int:
    async with asyncio.timeout(10):
        while conn.closed is None:
            await asyncio.sleep(0.05)
    assert conn.closed.code is not None
    return conn.closed.code


async def test_create_find_ban_and_unban_users(node: Node, caplog: pytest.LogCaptureFixture) -> None:
    async with await an_admin(node) as root:
        caplog.set_level(logging.INFO, logger="pica.audit")
        made = await root.request("POST", "/v1/admin/users", json={"username": "Zoe_Moderator",
                                                                   "password": PASSWORD, "admin": True})
        assert made == {"user_id": made["user_id"], "username": "zoe_moderator", "admin": True}
        zed = await root.request("POST", "/v1/admin/users", json={"username": "zed_plain", "password": PASSWORD})
        with pytest.raises(PicaHttpError) as taken:
            await root.request("POST", "/v1/admin/users", json={"username": "zed_plain", "password": PASSWORD})
        assert (taken.value.status, taken.value.code) == (409, "username_taken")
        with pytest.raises(PicaHttpError) as weak:
            await root.request("POST", "/v1/admin/users", json={"username": "weakling", "password": "short"})
        assert (weak.value.status, weak.value.code) == (400, "weak_password")

        found = await root.request("GET", "/v1/admin/users", params={"q": "ZOE"})
        assert [(u["username"], u["admin"], u["banned"]) for u in found["users"]] == [("zoe_moderator", True, False)]
        assert found["next_after"] is None
        first = await root.request("GET", "/v1/admin/users", params={"limit": "1"})
        assert len(first["users"]) == 1 and first["next_after"] == first["users"][0]["user_id"]
        rest = await root.request("GET", "/v1/admin/users", params={"after": str(first["next_after"])})
        assert first["users"][0]["user_id"] not in {u["user_id"] for u in rest["users"]}

        # zed logs in and connects; the ban refuses his token and closes his socket.
        async with PicaHttp(node.url) as http:
            login = await http.login("zed_plain", PASSWORD)
        socket = await connect(node.url, login)
        assert await root.request("POST", f"/v1/admin/users/{zed['user_id']}/ban") is None
        assert await api_error(node, login, "GET", "/v1/conversations") == (403, "banned")
        assert await closed(socket) == CloseCode.AUTH_FAILED
        await socket.close()
        banned = await root.request("GET", "/v1/admin/users", params={"banned": "true"})
        assert [u["username"] for u in banned["users"]] == ["zed_plain"]
        await root.request("DELETE", f"/v1/admin/users/{zed['user_id']}/ban")
        assert (await api(node, login, "GET", "/v1/me"))["username"] == "zed_plain"

        with pytest.raises(PicaHttpError) as unknown:
            await root.request("POST", "/v1/admin/users/99999/ban")
        assert (unknown.value.status, unknown.value.code) == (404, "user_not_found")

        audit = await root.request("GET", "/v1/admin/audit")
    entries = list(reversed(audit["entries"]))  # the newest first on the wire
    assert [(e["action"], e["target"]) for e in entries[1:]] == [
        ("account_created", f"user:{made['user_id']}"), ("account_created", f"user:{zed['user_id']}"),
        ("user_banned", f"user:{zed['user_id']}"), ("user_unbanned", f"user:{zed['user_id']}")]
    root_name = entries[1]["actor"]
    assert entries[0] == {**entries[0], "action": "admin_granted", "actor": "cli", "actor_id": 0}  # root's role
    assert all(e["actor"] == root_name and e["address"] == "127.0.0.1" for e in entries[1:])
    assert entries[1]["details"] == {"username": "zoe_moderator", "admin": True}
    assert audit["next_before"] is None
    records = [r for r in caplog.records if r.name == "pica.audit" and getattr(r, "event", "") == "account_created"
               and getattr(r, "actor", "") == root_name]
    assert [getattr(r, "username", "") for r in records] == ["zoe_moderator", "zed_plain"]
    assert PASSWORD not in caplog.text


async def test_sessions_password_reset_and_deletion(node: Node) -> None:
    alice, bob = await new_user(node.url, "alice"), await new_user(node.url, "bob")
    bob_name = (await api(node, bob, "GET", "/v1/me"))["username"]
    async with PicaHttp(node.url) as http:
        laptop = await http.login(bob_name, PASSWORD)
    phone_socket, laptop_socket = await connect(node.url, bob), await connect(node.url, laptop)
    async with await an_admin(node) as root:
        listed = await root.request("GET", f"/v1/admin/users/{bob.user_id}/sessions")
        assert {s["session_id"] for s in listed["sessions"]} == {bob.session_id, laptop.session_id}

        ended = await root.request("DELETE", f"/v1/admin/users/{bob.user_id}/sessions/{laptop.session_id}")
        assert ended == {"sessions_ended": 1}
        assert await closed(laptop_socket) == CloseCode.SESSION_ENDED
        assert phone_socket.closed is None
        with pytest.raises(PicaHttpError) as gone:  # ended already
            await root.request("DELETE", f"/v1/admin/users/{bob.user_id}/sessions/{laptop.session_id}")
        assert gone.value.status == 404

        reset = await root.request("POST", f"/v1/admin/users/{bob.user_id}/reset-password",
                                   json={"password": NEW_PASSWORD})
        assert reset == {"sessions_ended": 1}
        assert await closed(phone_socket) == CloseCode.SESSION_ENDED
        async with PicaHttp(node.url) as http:
            with pytest.raises(PicaHttpError):
                await http.login(bob_name, PASSWORD)
            again = await http.login(bob_name, NEW_PASSWORD)
        assert (await root.request("DELETE", f"/v1/admin/users/{bob.user_id}/sessions")) == {"sessions_ended": 1}
        assert await api_error(node, again, "GET", "/v1/me") == (401, "session_ended")

        # Deleting an account is DELETE /v1/me without the password: a tombstone, groups passed on.
        group = await api(node, alice, "POST", "/v1/groups", json={"name": "team", "members": [bob.user_id]})
        assert await root.request("DELETE", f"/v1/admin/users/{bob.user_id}") is None
        async with PicaHttp(node.url) as http:
            with pytest.raises(PicaHttpError) as refused:
                await http.login(bob_name, NEW_PASSWORD)
        assert refused.value.code == "invalid_credentials"
        members = await api(node, alice, "GET", f"/v1/groups/{group['group_id']}/members")
        assert [m["user_id"] for m in members["members"]] == [alice.user_id]

        # An administrator cannot lock themself out; the audit shows only what happened.
        me = (await root.request("GET", "/v1/admin/audit"))["entries"][0]["actor_id"]
        for method, path in [("POST", f"/v1/admin/users/{me}/ban"), ("DELETE", f"/v1/admin/users/{me}/admin"),
                             ("DELETE", f"/v1/admin/users/{me}")]:
            with pytest.raises(PicaHttpError) as refused:
                await root.request(method, path)
            assert (refused.value.status, refused.value.code) == (400, "bad_request")
        audit = await root.request("GET", "/v1/admin/audit", params={"limit": "3"})
        assert [e["action"] for e in audit["entries"]] == ["account_deleted", "sessions_revoked", "password_reset"]
        older = await root.request("GET", "/v1/admin/audit", params={"before": str(audit["next_before"])})
        assert [e["action"] for e in older["entries"]] == ["sessions_revoked", "admin_granted"]
        assert older["entries"][0]["details"] == {"username": bob_name, "session_id": laptop.session_id}
    await phone_socket.close()
    await laptop_socket.close()
