"""Who may call the admin API: every route declared with ``auth="admin"`` (found in the application's declarations,
so a route added later is covered without touching this file) answers 401 without a token, 403 ``forbidden`` to a
signed-in user without the admin role, and changes nothing for either; an administrator gets through."""

from __future__ import annotations

import re

import aiohttp

from pica.api.http import build_app
from pica.api.spec import Operation, operations
from pica.core.admin import CLI
from tests.conftest import Node, api, new_user


def admin_operations(node: Node) -> list[Operation]:
    assert node.server.services is not None
    return [op for op in operations(build_app(node.server.services)) if op.auth == "admin"]


def filled(path: str, values: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)


async def call(node: Node, method: str, path: str, token: str | None) -> tuple[int, dict[str, object]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as session, session.request(
            method, node.url + path, headers=headers, json={}) as resp:
        return resp.status, await resp.json()


async def test_every_admin_route_refuses_a_normal_user_and_a_stranger(node: Node) -> None:
    declared = admin_operations(node)
    every_admin_path = {op.path for op in declared}
    assert len(declared) >= 20 and all(path.startswith("/v1/admin/") for path in every_admin_path)
    # Nothing under /v1/admin is declared for anyone but administrators.
    assert node.server.services is not None
    assert not [op for op in operations(build_app(node.server.services))
                if op.path.startswith("/v1/admin/") and op.auth != "admin"]

    mallory, bob = await new_user(node.url, "mallory"), await new_user(node.url, "bob")
    ack = await api(node, mallory, "POST", "/v1/messages",
                    json={"to": bob.user_id, "client_msg_id": "m1", "body": {"text": "hi"}})
    group = await api(node, mallory, "POST", "/v1/groups", json={"name": "mine", "members": [bob.user_id]})
    report = await api(node, bob, "POST", "/v1/reports",
                       json={"conversation_id": ack["conversation_id"], "seq": 1, "reason": "spam"})
    values = {"user_id": str(bob.user_id), "group_id": str(group["group_id"]), "session_id": bob.session_id,
              "conversation_id": ack["conversation_id"], "seq": "1", "report_id": str(report["report_id"])}

    for op in declared:
        path = filled(op.path, values)
        assert await call(node, op.method, path, None) == (401, {
            "code": "unauthenticated", "message": "send 'Authorization: Bearer <token>'"}), op
        status, body = await call(node, op.method, path, mallory.token)
        assert (status, body["code"]) == (403, "forbidden"), (op.method, op.path, body)

    # Nothing happened: bob is neither banned nor deleted nor signed out, the message and the group stand, the
    # report is open, and the audit log is empty.
    assert (await api(node, bob, "GET", "/v1/me"))["user_id"] == bob.user_id
    page = await api(node, bob, "GET", f"/v1/conversations/{ack['conversation_id']}/messages")
    assert [m["body"] for m in page["messages"]] == [{"text": "hi"}]
    assert not (await api(node, bob, "GET", f"/v1/groups/{group['group_id']}"))["dissolved"]
    admin = node.server.services.admin
    assert admin is not None
    assert [r.state for r in await admin.reports(None, 10)] == ["open"]
    assert await admin.audit(10) == []

    # The same user, once granted the role, gets through (each read route answers 200).
    await admin.set_admin(CLI, mallory.user_id, True)
    for op in declared:
        if op.method == "GET":
            status, body = await call(node, op.method, filled(op.path, values), mallory.token)
            assert status == 200, (op.path, body)
    await admin.set_admin(CLI, mallory.user_id, False)
    assert (await call(node, "GET", "/v1/admin/stats", mallory.token))[0] == 403  # revoked: at once
