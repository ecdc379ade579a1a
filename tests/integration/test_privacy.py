"""Privacy controls: who may add me to a group (and the invitations that take my consent instead), and who sees my
presence. Stories over real sockets and HTTP (protocol §14.2, §14.3, §12.6)."""

from __future__ import annotations

from typing import Any

import pytest

from pica.client import Login, PicaConnection
from pica.client.connection import RequestFailed
from pica.protocol import frames as f
from tests.conftest import Node, api, api_error, connect, new_user
from tests.integration.test_contacts import befriend, pushed

WAIT = 5.0


async def settle(node: Node, who: Login, **settings: str) -> dict[str, Any]:
    result: dict[str, Any] = await api(node, who, "PATCH", "/v1/me", json=settings)
    return result


async def add(node: Node, actor: Login, group_id: int, *users: Login) -> tuple[list[int], list[int]]:
    result = await api(node, actor, "POST", f"/v1/groups/{group_id}/members",
                       json={"user_ids": [u.user_id for u in users]})
    return result["added"], result["invited"]


async def member_ids(node: Node, who: Login, group_id: int) -> list[int]:
    return [m["user_id"] for m in (await api(node, who, "GET", f"/v1/groups/{group_id}/members"))["members"]]


async def invitations(node: Node, who: Login) -> list[tuple[int, int]]:
    return [(i["group_id"], i["inviter_id"]) for i in (await api(node, who, "GET", "/v1/invitations"))["invitations"]]


# ------------------------------------------------------------------------------------------------ group adds


async def test_group_adds_follow_each_invitees_setting_and_blocks(node: Node) -> None:
    owner, anyone, friend, stranger, private, blocker = [await new_user(node.url, p) for p in
                                                         ("own", "any", "fri", "str", "pri", "blk")]
    await befriend(node, owner, friend)
    assert (await settle(node, friend, group_add="contacts"))["group_add"] == "contacts"
    await settle(node, stranger, group_add="contacts")
    await settle(node, private, group_add="nobody")
    await api(node, blocker, "PUT", f"/v1/blocks/{owner.user_id}")
    group = await api(node, owner, "POST", "/v1/groups", json={"name": "team", "members": [anyone.user_id]})
    assert group["invited"] == [] and group["member_count"] == 2  # "everyone" is the default
    gid = group["group_id"]

    sockets = {who.user_id: await connect(node.url, who) for who in (stranger, private, blocker)}
    try:
        added, invited = await add(node, owner, gid, friend, stranger, private, blocker)
        # Per user, no error for the whole add: the friend joined, the others were invited. The blocker looks
        # invited like the others (a block is not disclosed), but nothing reaches them.
        assert added == [friend.user_id]
        assert invited == [stranger.user_id, private.user_id, blocker.user_id]
        assert sorted(await member_ids(node, owner, gid)) == sorted([owner.user_id, anyone.user_id,
                                                                    friend.user_id])
        for who in (stranger, private):
            invitation = await sockets[who.user_id].next_event(f.Invitation, WAIT)
            assert (invitation.group_id, invitation.name, invitation.inviter_id, invitation.state) == (
                gid, "team", owner.user_id, "pending")
            assert await invitations(node, who) == [(gid, owner.user_id)]
        assert await pushed(sockets[blocker.user_id], f.Invitation) == []
        assert await invitations(node, blocker) == []
        # An invitee is no member until they accept.
        assert await api_error(node, stranger, "GET", f"/v1/groups/{gid}") == (404, "group_not_found")
    finally:
        for conn in sockets.values():
            await conn.close()


async def test_an_invitation_is_accepted_over_the_socket_or_declined_over_http(node: Node) -> None:
    owner, shy, shier = [await new_user(node.url, p) for p in ("own", "shy", "shr")]
    for who in (shy, shier):
        await settle(node, who, group_add="nobody")
    group = await api(node, owner, "POST", "/v1/groups", json={"name": "team",
                                                                "members": [shy.user_id, shier.user_id]})
    gid = group["group_id"]
    assert group["invited"] == [shy.user_id, shier.user_id] and group["member_count"] == 1

    owner_conn = await connect(node.url, owner)
    phone, tablet = await connect(node.url, shy), await connect(node.url, shy)
    try:
        await phone.request(f.Answer(group_id=gid, accept=True))  # answered with `done`
        notice = await owner_conn.next_message(WAIT)
        while notice.seq < 2:  # past the "created" notice
            notice = await owner_conn.next_message(WAIT)
        assert notice.body == {"system": {"event": "members_added", "by": shy.user_id,
                                          "invited_by": owner.user_id, "user_ids": [shy.user_id]}}
        answered = await tablet.next_event(f.Invitation, WAIT)  # the other device drops it from its list
        assert (answered.group_id, answered.state) == (gid, "accepted")
        assert shy.user_id in await member_ids(node, owner, gid)
        # Used up: accepting again is refused, over both transports.
        with pytest.raises(RequestFailed) as again:
            await phone.request(f.Answer(group_id=gid, accept=True))
        assert again.value.code == "not_found"
        assert await api_error(node, shy, "POST", f"/v1/invitations/{gid}/accept") == (404, "not_found")
    finally:
        for conn in (owner_conn, phone, tablet):
            await conn.close()

    assert await api(node, shier, "POST", f"/v1/invitations/{gid}/decline") == {"state": "declined"}
    assert await invitations(node, shier) == []
    assert await api_error(node, shier, "POST", f"/v1/invitations/{gid}/decline") == (404, "not_found")
    assert shier.user_id not in await member_ids(node, owner, gid)


async def test_accepting_rechecks_the_group_and_the_inviter(node: Node) -> None:
    owner, admin, late, later = [await new_user(node.url, p) for p in ("own", "adm", "lat", "ltr")]
    for who in (late, later):
        await settle(node, who, group_add="nobody")
    gid = (await api(node, owner, "POST", "/v1/groups", json={"name": "t", "members": [admin.user_id]}))["group_id"]
    await api(node, owner, "POST", f"/v1/groups/{gid}/members/{admin.user_id}/role", json={"role": "admin"})
    assert await add(node, admin, gid, late) == ([], [late.user_id])
    assert await add(node, owner, gid, later) == ([], [later.user_id])

    # The admin who invited "late" is an admin no more: the invitation no longer holds.
    await api(node, owner, "POST", f"/v1/groups/{gid}/members/{admin.user_id}/role", json={"role": "member"})
    assert await invitations(node, late) == []
    assert await api_error(node, late, "POST", f"/v1/invitations/{gid}/accept") == (404, "not_found")
    # The group is dissolved: "later"'s invitation is refused for that reason.
    await api(node, owner, "DELETE", f"/v1/groups/{gid}")
    assert await invitations(node, later) == []
    assert await api_error(node, later, "POST", f"/v1/invitations/{gid}/accept") == (403, "forbidden")


async def test_bad_settings_are_refused_and_nothing_changes(node: Node) -> None:
    alice = await new_user(node.url, "alice")
    for body in ({"group_add": "friends"}, {"presence": True}, {"presence": None}, {"group_add": "nobody",
                                                                                    "only_contacts": "yes"}, {}):
        assert await api_error(node, alice, "PATCH", "/v1/me", json=body) == (400, "bad_request"), body
    me = await api(node, alice, "GET", "/v1/me")
    assert (me["only_contacts"], me["group_add"], me["presence"]) == (False, "everyone", "everyone")


# ------------------------------------------------------------------------------------------------ presence


async def seen_by(node: Node, viewer: Login, user: Login) -> list[dict[str, Any]]:
    answer = await api(node, viewer, "GET", "/v1/presence", params={"user_ids": str(user.user_id)})
    return list(answer["presence"])


async def presence_pushes(conn: PicaConnection, user: Login) -> list[bool]:
    return [p.online for p in await pushed(conn, f.Presence) if p.user_id == user.user_id]


async def test_presence_is_shown_to_everyone_contacts_or_nobody(node: Node) -> None:
    alice, friend, peer = await new_user(node.url, "alice"), await new_user(node.url, "fri"), await new_user(node.url)
    await befriend(node, alice, friend)
    await api(node, peer, "POST", "/v1/messages",  # a 1:1 peer, not a contact
              json={"to": alice.user_id, "client_msg_id": "p1", "body": {"text": "hi"}})
    friend_conn, peer_conn = await connect(node.url, friend), await connect(node.url, peer)
    try:
        # "everyone" (the default): both related users are told when she comes online, and may ask.
        alice_conn = await connect(node.url, alice)
        assert (await friend_conn.next_event(f.Presence, WAIT)).online is True
        assert (await peer_conn.next_event(f.Presence, WAIT)).online is True
        assert (await seen_by(node, peer, alice))[0]["online"] is True

        # "contacts": the peer loses sight of her at once (told "offline", no last seen); the friend keeps it.
        await settle(node, alice, presence="contacts")
        hidden = await peer_conn.next_event(f.Presence, WAIT)
        assert (hidden.user_id, hidden.online, hidden.last_seen) == (alice.user_id, False, 0)
        assert await seen_by(node, peer, alice) == []
        assert (await seen_by(node, friend, alice))[0]["online"] is True
        await alice_conn.close()
        assert (await friend_conn.next_event(f.Presence, WAIT)).online is False
        assert await presence_pushes(peer_conn, alice) == []

        # "nobody": not even the friend sees her come back, or her last seen.
        await settle(node, alice, presence="nobody")
        assert (await friend_conn.next_event(f.Presence, WAIT)).last_seen == 0
        alice_conn = await connect(node.url, alice)
        assert await presence_pushes(friend_conn, alice) == []
        assert await presence_pushes(peer_conn, alice) == []
        assert await seen_by(node, friend, alice) == []
        assert [p["user_id"] for p in await seen_by(node, alice, alice)] == [alice.user_id]  # she sees herself

        # Back to "everyone": those who may now see her are told her current state.
        await settle(node, alice, presence="everyone")
        for conn in (friend_conn, peer_conn):
            shown = await conn.next_event(f.Presence, WAIT)
            assert (shown.user_id, shown.online) == (alice.user_id, True)
        await alice_conn.close()
    finally:
        await friend_conn.close()
        await peer_conn.close()
