"""Contacts, blocks and the "only contacts may message me" setting: each a small story over real sockets and HTTP.

Contact changes reach every connected device of both sides as live ``contact`` frames; what a device missed while
offline it reads from GET /v1/contacts.
"""

from __future__ import annotations

from typing import Any

import pytest

from pica.client import Login, PicaConnection, PicaHttp, PicaHttpError
from pica.client.connection import RequestFailed
from pica.protocol import frames as f
from tests.conftest import Node, api, api_error, connect, new_user

WAIT = 5.0  # upper bound for any single server reaction; the tests finish far sooner








async def request_contact(node: Node, who: Login, peer: Login) -> str:
    result = await api(node, who, "POST", "/v1/contacts/requests", json={"user_id": peer.user_id})
    return str(result["state"])


async def respond(node: Node, who: Login, requester: Login, verb: str) -> str:
    result = await api(node, who, "POST", f"/v1/contacts/requests/{requester.user_id}/{verb}")
    return str(result["state"])


async def contacts_of(node: Node, who: Login) -> dict[int, str]:
    """{peer id: state} as GET /v1/contacts lists them."""
    listed = (await api(node, who, "GET", "/v1/contacts"))["contacts"]
    return {c["user_id"]: c["state"] for c in listed}


async def befriend(node: Node, a: Login, b: Login) -> None:
    assert await request_contact(node, a, b) == "outgoing"
    assert await respond(node, b, a, "accept") == "accepted"


async def next_contact(conn: PicaConnection) -> tuple[int, str]:
    event = await conn.next_event(f.Contact, WAIT)
    return event.user_id, event.state


async def contact_trail(conn: PicaConnection, peer: Login, until: str) -> list[str]:
    """The states announced to ``conn`` about ``peer``, up to and including ``until``."""
    trail: list[str] = []
    while not trail or trail[-1] != until:
        user_id, state = await next_contact(conn)
        assert user_id == peer.user_id
        trail.append(state)
    return trail


async def pushed(conn: PicaConnection, kind: type[Any]) -> list[Any]:
    """The frames of ``kind`` pushed to ``conn`` so far. A ping round trip orders the check after everything the
    server pushed before it; the other queued events are dropped."""
    await conn.ping()
    events = []
    while not conn.events.empty():
        events.append(conn.events.get_nowait())
    return [e for e in events if isinstance(e, kind)]


async def send_error(conn: PicaConnection, to: Login, text: str) -> str:
    with pytest.raises(RequestFailed) as failed:
        await conn.send(to.user_id, {"text": text})
    return failed.value.code


async def http_send_error(node: Node, sender: Login, to: Login, text: str) -> tuple[int, str]:
    return await api_error(node, sender, "POST", "/v1/messages",
                           json={"to": to.user_id, "client_msg_id": text, "body": {"text": text}})


# ------------------------------------------------------------------------------------------------- requests


async def test_request_then_accept_reaches_every_device_of_both_sides(node: Node) -> None:
    alice, bob = await new_user(node.url, "alice"), await new_user(node.url, "bob")
    phone, laptop = await connect(node.url, alice, device="phone"), await connect(node.url, alice, device="laptop")
    b = await connect(node.url, bob, "tcp", node.tcp_port)
    async with phone, laptop, b:
        assert await request_contact(node, alice, bob) == "outgoing"
        assert await next_contact(phone) == (bob.user_id, "outgoing")
        assert await next_contact(laptop) == (bob.user_id, "outgoing")
        assert await next_contact(b) == (alice.user_id, "incoming")
        assert await contacts_of(node, alice) == {bob.user_id: "outgoing"}
        assert await contacts_of(node, bob) == {alice.user_id: "incoming"}

        assert await respond(node, bob, alice, "accept") == "accepted"
        assert await next_contact(phone) == (bob.user_id, "accepted")
        assert await next_contact(laptop) == (bob.user_id, "accepted")
        assert await next_contact(b) == (alice.user_id, "accepted")
    assert await request_contact(node, alice, bob) == "accepted"  # asking again changes nothing
    assert await contacts_of(node, alice) == {bob.user_id: "accepted"}
    assert await contacts_of(node, bob) == {alice.user_id: "accepted"}
    me = await api(node, bob, "GET", "/v1/me")
    listed = (await api(node, alice, "GET", "/v1/contacts"))["contacts"]
    assert listed == [{"user_id": bob.user_id, "username": me["username"], "state": "accepted"}]


async def test_request_made_while_offline_is_listed_and_answered_on_reconnect(node: Node) -> None:
    alice, bob = await new_user(node.url), await new_user(node.url)
    assert await request_contact(node, alice, bob) == "outgoing"  # bob has no device online
    b = await connect(node.url, bob)
    a = await connect(node.url, alice)
    async with a, b:
        assert await contacts_of(node, bob) == {alice.user_id: "incoming"}
        assert await respond(node, bob, alice, "accept") == "accepted"
        assert await next_contact(a) == (bob.user_id, "accepted")
        assert await next_contact(b) == (alice.user_id, "accepted")


async def test_decline_then_remove_tell_both_sides(node: Node) -> None:
    alice, bob = await new_user(node.url), await new_user(node.url)
    a, b = await connect(node.url, alice), await connect(node.url, bob)
    async with a, b:
        await request_contact(node, alice, bob)
        assert await next_contact(b) == (alice.user_id, "incoming")
        assert await respond(node, bob, alice, "decline") == "none"
        assert await next_contact(b) == (alice.user_id, "none")
        assert await next_contact(a) == (bob.user_id, "outgoing")
        assert await next_contact(a) == (bob.user_id, "none")
        assert await contacts_of(node, alice) == {} and await contacts_of(node, bob) == {}
        # nothing is pending any more: neither side can answer it
        assert await api_error(node, bob, "POST", f"/v1/contacts/requests/{alice.user_id}/accept") == (
            404, "not_found")
        assert await api_error(node, alice, "POST", f"/v1/contacts/requests/{bob.user_id}/accept") == (
            404, "not_found")

        await befriend(node, alice, bob)  # a decline does not stop a later request
        assert await contacts_of(node, alice) == {bob.user_id: "accepted"}
        assert await api(node, alice, "DELETE", f"/v1/contacts/{bob.user_id}") == {"state": "none"}
        assert await contact_trail(a, bob, "none") == ["outgoing", "accepted", "none"]
        assert await contact_trail(b, alice, "none") == ["incoming", "accepted", "none"]
    assert await contacts_of(node, alice) == {} and await contacts_of(node, bob) == {}


async def test_asking_back_accepts(node: Node) -> None:
    alice, bob = await new_user(node.url), await new_user(node.url)
    b = await connect(node.url, bob)
    async with b:
        assert await request_contact(node, alice, bob) == "outgoing"
        assert await next_contact(b) == (alice.user_id, "incoming")
        assert await request_contact(node, bob, alice) == "accepted"
        assert await next_contact(b) == (alice.user_id, "accepted")
    assert await contacts_of(node, alice) == {bob.user_id: "accepted"}
    assert await contacts_of(node, bob) == {alice.user_id: "accepted"}
    assert await api_error(node, alice, "POST", "/v1/contacts/requests", json={"user_id": alice.user_id}) == (
        400, "bad_request")
    assert await api_error(node, alice, "POST", "/v1/contacts/requests", json={"user_id": 10**9}) == (
        404, "user_not_found")


# ------------------------------------------------------------------------------------------------- blocks


async def test_blocked_user_cannot_message_request_or_see_presence_until_unblocked(node: Node) -> None:
    alice, bob = await new_user(node.url, "alice"), await new_user(node.url, "bob")
    await befriend(node, alice, bob)
    a = await connect(node.url, alice)
    async with a:
        await a.send(bob.user_id, {"text": "before the block"})
        assert [p["user_id"] for p in (await api(node, alice, "GET", "/v1/presence",
                                                 params={"user_ids": bob.user_id}))["presence"]] == [bob.user_id]

        assert await api(node, bob, "PUT", f"/v1/blocks/{alice.user_id}") == {"blocked": True}
        assert await api(node, bob, "GET", "/v1/blocks") == {"blocked": [alice.user_id]}
        assert await send_error(a, bob, "over the socket") == "forbidden"
        assert await http_send_error(node, alice, bob, "over-http") == (403, "forbidden")
        assert await api_error(node, alice, "POST", "/v1/contacts/requests", json={"user_id": bob.user_id}) == (
            403, "forbidden")
        assert (await api(node, alice, "GET", "/v1/presence", params={"user_ids": bob.user_id}))["presence"] == []
        # the block ended the contact on both sides
        assert await contacts_of(node, alice) == {} and await contacts_of(node, bob) == {}
        listed = (await api(node, bob, "GET", "/v1/conversations"))["conversations"]
        assert [c["last_message"]["body"] for c in listed] == [{"text": "before the block"}]

        assert await api(node, bob, "DELETE", f"/v1/blocks/{alice.user_id}") == {"blocked": False}
        assert await api(node, bob, "GET", "/v1/blocks") == {"blocked": []}
        ack = await a.send(bob.user_id, {"text": "after the unblock"})
        assert ack.seq == 2
        assert await request_contact(node, alice, bob) == "outgoing"
        assert [p["user_id"] for p in (await api(node, alice, "GET", "/v1/presence",
                                                 params={"user_ids": bob.user_id}))["presence"]] == [bob.user_id]


async def test_blocking_a_contact_tells_both_sides_the_contact_ended(node: Node) -> None:
    alice, bob = await new_user(node.url), await new_user(node.url)
    await befriend(node, alice, bob)
    a = await connect(node.url, alice)
    phone, laptop = await connect(node.url, bob, device="phone"), await connect(node.url, bob, device="laptop")
    async with a, phone, laptop:
        await api(node, bob, "PUT", f"/v1/blocks/{alice.user_id}")
        assert await next_contact(phone) == (alice.user_id, "none")
        assert await next_contact(laptop) == (alice.user_id, "none")
        assert await next_contact(a) == (bob.user_id, "none")


async def test_blocking_a_stranger_is_invisible_to_them(node: Node) -> None:
    alice, stranger = await new_user(node.url), await new_user(node.url)
    s = await connect(node.url, stranger)
    async with s:
        assert await api(node, alice, "PUT", f"/v1/blocks/{stranger.user_id}") == {"blocked": True}
        assert await pushed(s, f.Contact) == []
        assert await send_error(s, alice, "hi") == "forbidden"


async def test_block_edge_cases(node: Node) -> None:
    alice = await new_user(node.url)
    assert await api_error(node, alice, "PUT", f"/v1/blocks/{alice.user_id}") == (400, "bad_request")
    assert await api_error(node, alice, "PUT", f"/v1/blocks/{10**9}") == (404, "user_not_found")
    assert await api_error(node, alice, "PUT", "/v1/blocks/abc") == (400, "bad_request")


# ------------------------------------------------------------------------------------------------- only contacts


async def test_only_contacts_setting_keeps_strangers_out(node: Node) -> None:
    bob, friend, stranger = [await new_user(node.url, p) for p in ("bob", "friend", "stranger")]
    me = await api(node, bob, "PATCH", "/v1/me", json={"only_contacts": True})
    assert me["user_id"] == bob.user_id and me["only_contacts"] is True
    assert (await api(node, bob, "GET", "/v1/me"))["only_contacts"] is True
    assert await api_error(node, bob, "PATCH", "/v1/me", json={"only_contacts": "yes"}) == (400, "bad_request")

    b = await connect(node.url, bob)
    s, fr = await connect(node.url, stranger), await connect(node.url, friend, "tcp", node.tcp_port)
    async with b, s, fr:
        assert await send_error(s, bob, "hello?") == "forbidden"
        assert await http_send_error(node, stranger, bob, "hello-http") == (403, "forbidden")
        assert await request_contact(node, friend, bob) == "outgoing"
        assert await send_error(fr, bob, "a pending request is not enough") == "forbidden"
        assert await respond(node, bob, friend, "accept") == "accepted"
        ack = await fr.send(bob.user_id, {"text": "now we are contacts"})
        got = await b.next_message(WAIT)
        assert (got.sender, got.seq, got.body) == (friend.user_id, ack.seq, {"text": "now we are contacts"})
        assert (await b.send(stranger.user_id, {"text": "I may still write first"})).seq == 1

        assert (await api(node, bob, "PATCH", "/v1/me", json={"only_contacts": False}))["only_contacts"] is False
        assert (await s.send(bob.user_id, {"text": "the door is open"})).seq == 2


# ------------------------------------------------------------------------------------------------- finding users


async def test_find_user_by_username(node: Node) -> None:
    alice, bob = await new_user(node.url, "alice"), await new_user(node.url, "bob")
    name = (await api(node, bob, "GET", "/v1/me"))["username"]
    found = await api(node, alice, "GET", "/v1/users", params={"username": name.upper()})
    assert found == {"user_id": bob.user_id, "username": name, "deleted": False}
    assert await api_error(node, alice, "GET", "/v1/users", params={"username": "nobody_like_this"}) == (
        404, "user_not_found")
    assert await api_error(node, alice, "GET", "/v1/users", params={"username": "no spaces"}) == (
        400, "invalid_username")
    async with PicaHttp(node.url) as anonymous:
        with pytest.raises(PicaHttpError) as denied:
            await anonymous.request("GET", "/v1/users", params={"username": name})
    assert (denied.value.status, denied.value.code) == (401, "unauthenticated")
