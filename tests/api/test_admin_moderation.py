"""Moderation over the admin API: users report messages they can see, an administrator works through the queue
(removing a message for everyone, banning its sender, or dismissing), inspects and dissolves groups, and reads the
server's counts; every step is audited."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pica.client import PicaHttpError
from pica.protocol import frames as f
from tests.api.test_admin_users import an_admin
from tests.api.test_rate_limits import node_with
from tests.conftest import Node, api, api_error, connect, new_user


async def send(node: Node, who: Any, to: int, cmid: str, text: str) -> dict[str, Any]:
    ack: dict[str, Any] = await api(node, who, "POST", "/v1/messages",
                                    json={"to": to, "client_msg_id": cmid, "body": {"text": text}})
    return ack


async def test_a_report_is_queued_and_resolved_by_removing_the_message_for_everyone(node: Node) -> None:
    troll, bob, carol = [await new_user(node.url, p) for p in ("troll", "bob", "carol")]
    ack = await send(node, troll, bob.user_id, "t1", "something nasty")
    conversation = ack["conversation_id"]
    bob_socket, troll_socket = await connect(node.url, bob), await connect(node.url, troll)

    report = {"conversation_id": conversation, "seq": 1, "reason": "harassment"}
    made = await api(node, bob, "POST", "/v1/reports", json=report)
    assert made == {"report_id": made["report_id"], "state": "open"}
    assert await api(node, bob, "POST", "/v1/reports", json=report) == made  # once per reporter and message
    # Only someone who can see the message may report it; not one's own, and not with an empty or long reason.
    assert await api_error(node, carol, "POST", "/v1/reports", json=report) == (404, "conversation_not_found")
    assert await api_error(node, troll, "POST", "/v1/reports", json=report) == (400, "bad_request")
    assert await api_error(node, bob, "POST", "/v1/reports", json={**report, "seq": 2}) == (404, "message_not_found")
    assert await api_error(node, bob, "POST", "/v1/reports", json={**report, "reason": " "}) == (400, "bad_request")
    assert await api_error(node, bob, "POST", "/v1/reports", json={**report, "reason": "x" * 1001}) == (
        400, "bad_request")

    async with await an_admin(node) as root:
        queue = await root.request("GET", "/v1/admin/reports", params={"state": "open"})
        assert [(r["report_id"], r["reporter"], r["sender"], r["body"], r["reason"]) for r in queue["reports"]] == [
            (made["report_id"], bob.user_id, troll.user_id, {"text": "something nasty"}, "harassment")]

        resolved = await root.request("POST", f"/v1/admin/reports/{made['report_id']}/resolve",
                                      json={"action": "remove_message"})
        assert (resolved["state"], resolved["action"]) == ("resolved", "remove_message")
        assert resolved["body"] == {"text": "something nasty"}  # what was reported stays on the report

        # Both parties' devices are told at once, as for a recall, and the message reads as recalled for good.
        for socket in (bob_socket, troll_socket):
            event = await socket.next_event(f.Msg)
            assert (event.seq, event.sender, event.body) == (2, troll.user_id, {"recall": {"seq": 1,
                                                                                           "moderated": True}})
        page = await api(node, bob, "GET", f"/v1/conversations/{conversation}/messages")
        assert [m["body"] for m in page["messages"]] == [{"recalled": True}, {"recall": {"seq": 1,
                                                                                          "moderated": True}}]
        with pytest.raises(PicaHttpError) as twice:
            await root.request("POST", f"/v1/admin/reports/{made['report_id']}/resolve", json={"action": "dismiss"})
        assert (twice.value.status, twice.value.code) == (409, "conflict")
        with pytest.raises(PicaHttpError) as again:  # removed already
            await root.request("DELETE", f"/v1/admin/messages/{conversation}/1")
        assert again.value.status == 403
        assert (await root.request("GET", "/v1/admin/reports", params={"state": "open"}))["reports"] == []

        # A second message, removed directly; then a report resolved by banning its sender.
        await send(node, troll, bob.user_id, "t2", "more of it")
        removed = await root.request("DELETE", f"/v1/admin/messages/{conversation}/3")
        assert (removed["seq"], removed["body"]) == (4, {"recall": {"seq": 3, "moderated": True}})
        await send(node, troll, bob.user_id, "t3", "and more")
        third = await api(node, bob, "POST", "/v1/reports", json={**report, "seq": 5})
        await root.request("POST", f"/v1/admin/reports/{third['report_id']}/resolve", json={"action": "ban_sender"})
        assert await api_error(node, troll, "GET", "/v1/me") == (403, "banned")

        audit = await root.request("GET", "/v1/admin/audit", params={"limit": "5"})
    assert [(e["action"], e["target"]) for e in reversed(audit["entries"])] == [
        ("message_removed", f"message:{conversation}:1"), ("report_resolved", f"report:{made['report_id']}"),
        ("message_removed", f"message:{conversation}:3"), ("user_banned", f"user:{troll.user_id}"),
        ("report_resolved", f"report:{third['report_id']}")]
    for socket in (bob_socket, troll_socket):
        await socket.close()


async def test_groups_are_listed_inspected_and_dissolved(node: Node) -> None:
    alice, bob = await new_user(node.url, "alice"), await new_user(node.url, "bob")
    first = await api(node, alice, "POST", "/v1/groups", json={"name": "first", "members": [bob.user_id]})
    await api(node, bob, "POST", "/v1/groups", json={"name": "second", "members": []})
    async with await an_admin(node) as root:
        page = await root.request("GET", "/v1/admin/groups", params={"limit": "1"})
        assert [g["name"] for g in page["groups"]] == ["first"] and page["next_after"] == first["group_id"]
        page = await root.request("GET", "/v1/admin/groups", params={"after": str(page["next_after"])})
        assert [g["name"] for g in page["groups"]] == ["second"] and page["next_after"] is None

        detail = await root.request("GET", f"/v1/admin/groups/{first['group_id']}")  # not a member: still shown
        assert detail["group"]["owner_id"] == alice.user_id
        assert [(m["user_id"], m["role"]) for m in detail["members"]] == [(alice.user_id, "owner"),
                                                                          (bob.user_id, "member")]
        members = await root.request("GET", f"/v1/admin/groups/{first['group_id']}/members")
        assert members["members"] == detail["members"]

        dissolved = await root.request("POST", f"/v1/admin/groups/{first['group_id']}/dissolve")
        assert dissolved["dissolved"] is True
        assert await api_error(node, bob, "POST", "/v1/messages", json={
            "group_id": first["group_id"], "client_msg_id": "late", "body": {"text": "hello?"}}) == (403, "forbidden")
        with pytest.raises(PicaHttpError) as twice:
            await root.request("POST", f"/v1/admin/groups/{first['group_id']}/dissolve")
        assert twice.value.status == 403
        with pytest.raises(PicaHttpError) as missing:
            await root.request("GET", "/v1/admin/groups/99999")
        assert (missing.value.status, missing.value.code) == (404, "group_not_found")

        stats = await root.request("GET", "/v1/admin/stats")
    assert (stats["users"], stats["admins"], stats["groups"], stats["dissolved_groups"]) == (3, 1, 2, 1)
    assert stats["jobs"] == {"queued": 0, "running": 0, "dead": 0}
    assert stats["live_sessions"] == 3 and stats["open_reports"] == 0


async def test_reports_are_rate_limited_per_user(tmp_path: Path) -> None:
    async with node_with(tmp_path, reports_per_user="2/h") as (server, url):
        node = Node(server)
        spammer, bob = await new_user(url, "spammer"), await new_user(url, "bob")
        for n in range(1, 4):
            ack = await send(node, spammer, bob.user_id, f"s{n}", f"spam {n}")
        report = {"conversation_id": ack["conversation_id"], "reason": "spam"}
        for seq in (1, 2):
            await api(node, bob, "POST", "/v1/reports", json={**report, "seq": seq})
        assert await api_error(node, bob, "POST", "/v1/reports", json={**report, "seq": 9}) == (
            404, "message_not_found")  # a mistake costs nothing, ...
        assert await api_error(node, bob, "POST", "/v1/reports", json={**report, "seq": 3}) == (
            429, "rate_limited")  # ... a third report in the hour is refused
