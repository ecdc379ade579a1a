"""``pica user``, ``pica group`` and ``pica invite``: run as processes on the data directory of a running (or
stopped) server."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from pathlib import Path

import pytest

from pica.app import PicaServer
from pica.client import PicaConnection, PicaHttp, PicaHttpError, ServerClosed
from pica.protocol.close_codes import CloseCode
from tests.cli.conftest import pica
from tests.conftest import PASSWORD, TEST_AUTH, ServerProcess, make_config, start_server_process


async def run(*args: str, data_dir: Path, stdin: str | None = None) -> tuple[int, str, str]:
    done = await asyncio.to_thread(pica, *args, data_dir=data_dir, stdin=stdin)
    return done.returncode, done.stdout, done.stderr


async def test_user_create_list_ban(server: ServerProcess) -> None:
    data = server.data_dir
    code, out, err = await run("user", "create", "alice", "--password", PASSWORD, data_dir=data)
    assert (code, out) == (0, "created user alice (#1)\n")
    assert "account_created" in err and "username=alice" in err and PASSWORD not in err  # the audit record
    code, out, _ = await run("user", "create", "Bob", data_dir=data, stdin=PASSWORD + "\n")  # piped password
    assert (code, out) == (0, "created user bob (#2)\n")

    for args, message in [
        (("alice", "--password", PASSWORD), "pica: username 'alice' is taken"),
        (("carol", "--password", "short"), "pica: password must have at least 8 characters"),
        (("no way!", "--password", PASSWORD), "pica: a username is 3-32 characters"),
    ]:
        code, out, err = await run("user", "create", *args, data_dir=data)
        assert code == 1 and out == "" and err.startswith(message), (args, err)

    code, out, _ = await run("user", "list", data_dir=data)
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["ID", "USERNAME", "CREATED", "STATUS"]
    assert [line.split()[:2] + line.split()[-1:] for line in lines[1:]] == [
        ["1", "alice", "active"], ["2", "bob", "active"]]
    code, out, _ = await run("user", "list", "--limit", "1", data_dir=data)
    assert "alice" in out and "bob" not in out and "(more: --after 1)" in out
    code, out, _ = await run("user", "list", "--after", "1", data_dir=data)
    assert "bob" in out and "alice" not in out

    # A user logged in and connected before the ban...
    async with PicaHttp(server.url) as http:
        login = await http.login("alice", PASSWORD)
    before = await PicaConnection.open(server.url, login.token)

    code, out, _ = await run("user", "ban", "alice", data_dir=data)
    assert code == 0 and out.startswith("banned alice (#1)")
    code, out, _ = await run("user", "list", "--banned", data_dir=data)
    assert "alice" in out and "banned" in out and "bob" not in out

    async with PicaHttp(server.url) as http:
        with pytest.raises(PicaHttpError) as refused:  # ... cannot log in,
            await http.login("alice", PASSWORD)
        assert (refused.value.status, refused.value.code) == (403, "banned")
        with pytest.raises(PicaHttpError) as refused:  # ... their token is refused over HTTP,
            await http.request("GET", "/v1/conversations", token=login.token)
        assert (refused.value.status, refused.value.code) == (403, "banned")
        with pytest.raises(PicaHttpError) as refused:  # ... and a wrong password still says only that.
            await http.login("alice", "wrong password!")
        assert refused.value.code == "invalid_credentials"
    for transport in ("ws", "tcp"):  # ... and at connect,
        with pytest.raises(ServerClosed) as closed:
            await PicaConnection.open(server.url, login.token, transport=transport, tcp_port=server.tcp_port)
        assert closed.value.code == CloseCode.AUTH_FAILED and "banned" in closed.value.reason
    # ... and the connection opened before the ban is closed by the server's sweep.
    async with asyncio.timeout(15):
        while before.closed is None:
            await asyncio.sleep(0.05)
    assert before.closed.code == CloseCode.AUTH_FAILED
    await before.close()

    code, out, _ = await run("user", "ban", "alice", "--unban", data_dir=data)
    assert (code, out) == (0, "unbanned alice (#1)\n")
    async with PicaHttp(server.url) as http:
        await http.login("alice", PASSWORD)
        await http.request("GET", "/v1/conversations", token=login.token)  # the old token is good again

    assert await run("user", "ban", "zed", data_dir=data) == (1, "", "pica: no user named 'zed'\n")


async def test_user_sessions_revoke_and_reset_password(server: ServerProcess) -> None:
    """An administrator sees a user's devices, ends one or all, and resets a password: the tokens of the ended
    sessions are refused at once, and the running server closes their sockets within a second or so."""
    data = server.data_dir
    assert (await run("user", "create", "alice", "--password", PASSWORD, data_dir=data))[0] == 0
    logins = []
    for _ in range(3):  # a phone, a laptop, a tablet
        async with PicaHttp(server.url) as http:
            logins.append(await http.login("alice", PASSWORD))
    code, out, _ = await run("user", "sessions", "alice", data_dir=data)
    rows = out.splitlines()
    assert code == 0 and rows[0].split()[:3] == ["SESSION", "CREATED", "LAST"] and len(rows) == 4
    assert {login.session_id for login in logins} == {row.split()[0] for row in rows[1:]}

    phone, laptop, _ = logins
    sockets = [await PicaConnection.open(server.url, login.token) for login in logins]
    code, out, _ = await run("user", "revoke", "alice", "--session", phone.session_id, data_dir=data)
    assert code == 0 and out.startswith(f"ended session {phone.session_id} of alice")
    async with asyncio.timeout(10):
        while sockets[0].closed is None:
            await asyncio.sleep(0.05)
    assert sockets[0].closed.code == CloseCode.SESSION_ENDED
    assert sockets[1].closed is None and sockets[2].closed is None
    assert await run("user", "revoke", "alice", "--session", "nope", data_dir=data) == (
        1, "", "pica: alice has no live session 'nope'\n")

    new_password = "a much better passphrase 2026"
    code, out, _ = await run("user", "reset-password", "alice", "--password", new_password, data_dir=data)
    assert (code, out) == (0, "new password set for alice (#1); 2 session(s) ended\n")
    async with asyncio.timeout(10):
        while sockets[1].closed is None or sockets[2].closed is None:
            await asyncio.sleep(0.05)
    async with PicaHttp(server.url) as http:
        with pytest.raises(PicaHttpError) as refused:
            await http.request("GET", "/v1/me", token=laptop.token)
        assert (refused.value.status, refused.value.code) == (401, "session_ended")
        with pytest.raises(PicaHttpError) as refused:
            await http.login("alice", PASSWORD)
        assert refused.value.code == "invalid_credentials"
        await http.login("alice", new_password)
    code, out, _ = await run("user", "revoke", "alice", data_dir=data)
    assert code == 0 and out.startswith("ended 1 session(s) of alice (#1)")
    code, out, _ = await run("user", "sessions", "alice", data_dir=data)
    assert out == "alice has no live session\n"
    for sock in sockets:
        await sock.close()


async def test_groups_with_the_server_stopped(tmp_path: Path, server_process_factory: list[ServerProcess]) -> None:
    data = tmp_path / "data"
    for name in ("owner1", "member1", "member2", "member3"):  # a fresh data directory: no server ever ran
        assert (await run("user", "create", name, "--password", PASSWORD, data_dir=data))[0] == 0

    code, out, err = await run("group", "create", "book club", "--owner", "owner1", "--members", "member1,member2",
                               data_dir=data)
    assert (code, out) == (0, "created group #1 'book club': owner owner1, 3 members\n")
    assert "group_created" in err and "actor=cli" in err and "target=group:1" in err  # the audit record
    code, out, _ = await run("group", "add", "1", "member3", data_dir=data)
    assert (code, out) == (0, "added member3 to group #1 'book club' (4 members)\n")
    assert (await run("group", "create", "solo", "--owner", "member3", data_dir=data))[0] == 0

    code, out, _ = await run("group", "list", data_dir=data)
    rows = [line.split() for line in out.splitlines()]
    assert rows[0] == ["ID", "NAME", "OWNER", "MEMBERS", "CREATED", "STATUS"]
    assert [(r[0], r[-1]) for r in rows[1:]] == [("1", "active"), ("2", "active")]
    assert re.search(r"^1\s+book club\s+owner1\s+4\s", out, re.M) and re.search(r"^2\s+solo\s+member3\s+1\s", out, re.M)
    code, out, _ = await run("group", "list", "--user", "member1", data_dir=data)
    assert code == 0 and "book club" in out and "solo" not in out

    for args, message in [
        (("create", "x", "--owner", "ghost"), "pica: no user named 'ghost'\n"),
        (("create", "x", "--owner", "owner1", "--members", "member1,ghost"), "pica: no user named 'ghost'\n"),
        (("create", " ", "--owner", "owner1"), "pica: a group name is 1-100 characters\n"),
        (("add", "9", "member1"), "pica: no group #9\n"),
        (("add", "1", "member1"), "pica: everyone named is a member already\n"),
        (("add", "1", "ghost"), "pica: no user named 'ghost'\n"),
        (("list", "--user", "ghost"), "pica: no user named 'ghost'\n"),
    ]:
        assert await run("group", *args, data_dir=data) == (1, "", message), args

    # The server, started afterwards, serves what the commands stored.
    sp = start_server_process(data)
    server_process_factory.append(sp)
    async with PicaHttp(sp.url) as http:
        await http.login("member3", PASSWORD)
        groups = await http.request("GET", "/v1/groups")
        assert sorted((g["name"], g["member_count"]) for g in groups["groups"]) == [("book club", 4), ("solo", 1)]
        history = await http.history("g:1")
        events = [m["body"]["system"]["event"] for m in history["messages"]]
        assert events == ["members_added"]  # member3 sees the timeline from their join on


async def test_usage_and_setup_errors(tmp_path: Path) -> None:
    data = tmp_path / "data"
    code, _, err = await run("user", "list", data_dir=data)
    assert code == 1 and err == f"pica: no Pica database at {data / 'pica.db'} (give --data-dir, --store or --config)\n"
    for args in (("user",), ("group", "add", "x", "someone"), ("user", "list", "--limit", "0"),
                 ("group", "create", "x")):
        assert (await run(*args, data_dir=data))[0] == 2, args
    config = tmp_path / "pica.toml"
    config.write_text('port = "not a number"\n')
    code, _, err = await run("user", "list", "--config", str(config), data_dir=data)
    assert code == 2 and err.startswith("pica: configuration error")
    config.write_text(f'data_dir = "{data}"\n')  # the data directory from the configuration file, as for serve
    assert (await asyncio.to_thread(pica, "user", "create", "viaconf", "--password", PASSWORD,
                                    "--config", str(config))).returncode == 0
    assert "viaconf" in (await run("user", "list", data_dir=data))[1]


async def test_an_invite_made_with_the_cli_lets_one_person_register(tmp_path: Path) -> None:
    """`pica invite create` before the first start (it creates the database), then a server in invite mode."""
    data = tmp_path / "data"
    code, out, _ = await run("invite", "create", "--uses", "1", "--days", "2", data_dir=data)
    invite, detail = out.splitlines()
    assert code == 0 and len(invite) >= 16 and detail.startswith("good for 1 registration(s) during 2 day(s)")
    assert "auth.registration is 'open'" in detail  # a reminder: this server is not in invite mode yet
    server = PicaServer(dataclasses.replace(make_config(tmp_path), data_dir=data,
                                            auth=dataclasses.replace(TEST_AUTH, registration="invite")))
    await server.start()
    try:
        async with PicaHttp(f"http://127.0.0.1:{server.http_port}") as http:
            user_id = await http.request("POST", "/v1/auth/register",
                                         json={"username": "invited", "password": PASSWORD, "invite": invite})
            assert user_id["user_id"] > 0
            with pytest.raises(PicaHttpError) as again:
                await http.request("POST", "/v1/auth/register",
                                   json={"username": "second", "password": PASSWORD, "invite": invite})
            assert (again.value.status, again.value.code) == (403, "forbidden")
    finally:
        await server.stop()


async def test_search_reindex_beside_a_running_server(server: ServerProcess) -> None:
    data = server.data_dir
    for name in ("alice", "bob"):
        assert (await run("user", "create", name, "--password", PASSWORD, data_dir=data))[0] == 0
    async with PicaHttp(server.url) as http:
        alice = await http.login("alice", PASSWORD)
        bob = await http.login("bob", PASSWORD)
    async with PicaHttp(server.url, token=alice.token) as http:
        await http.request("POST", "/v1/messages", json={"to": bob.user_id, "client_msg_id": "m1",
                                                         "body": {"text": "我们明天开会"}})
    code, out, _ = await run("search", "reindex", data_dir=data)
    assert (code, out) == (0, "re-indexed 1 messages\n")
    async with PicaHttp(server.url, token=bob.token) as http:
        found = await http.request("GET", "/v1/search", params={"q": "开会"})
    assert [m["body"]["text"] for m in found["messages"]] == ["我们明天开会"]  # once, not twice


async def test_the_admin_role_deletion_and_dissolving_are_the_admin_apis_and_audited(server: ServerProcess) -> None:
    """`pica user create --admin`, `pica user admin`, `pica user delete` and `pica group dissolve` run the code of
    the admin HTTP API, as the actor "cli": the administrator they make sees their audit rows over HTTP."""
    data = server.data_dir
    code, out, err = await run("user", "create", "root", "--admin", "--password", PASSWORD, data_dir=data)
    assert (code, out) == (0, "created administrator root (#1)\n") and "actor=cli" in err
    for name in ("bob", "carol"):
        assert (await run("user", "create", name, "--password", PASSWORD, data_dir=data))[0] == 0
    assert (await run("group", "create", "club", "--owner", "bob", "--members", "carol", data_dir=data))[0] == 0

    code, out, _ = await run("user", "admin", "carol", data_dir=data)
    assert (code, out) == (0, "carol (#3) is an administrator: the /v1/admin API answers their tokens\n")
    code, out, _ = await run("user", "list", data_dir=data)
    assert [line.split()[-1] for line in out.splitlines()[1:]] == ["admin", "active", "admin"]
    assert (await run("user", "admin", "carol", "--revoke", data_dir=data))[0] == 0
    code, out, _ = await run("group", "dissolve", "1", data_dir=data)
    assert (code, out) == (0, "dissolved group #1 'club': it is read-only now\n")
    assert await run("group", "dissolve", "7", data_dir=data) == (1, "", "pica: no group #7\n")
    code, out, _ = await run("user", "delete", "carol", data_dir=data)
    assert code == 0 and out.startswith("deleted carol (#3)")

    async with PicaHttp(server.url) as http:
        await http.login("root", PASSWORD)
        audit = await http.request("GET", "/v1/admin/audit")
        with pytest.raises(PicaHttpError) as deleted:
            await http.login("carol", PASSWORD)
        assert deleted.value.code == "invalid_credentials"
    assert [(e["actor"], e["action"], e["target"]) for e in reversed(audit["entries"])] == [
        ("cli", "account_created", "user:1"), ("cli", "account_created", "user:2"),
        ("cli", "account_created", "user:3"), ("cli", "group_created", "group:1"), ("cli", "admin_granted", "user:3"),
        ("cli", "admin_revoked", "user:3"), ("cli", "group_dissolved", "group:1"),
        ("cli", "account_deleted", "user:3")]
