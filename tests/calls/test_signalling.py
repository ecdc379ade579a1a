"""Call signalling over real sockets: who rings, who may answer, what each party is told, and the record each call
leaves in the conversation's timeline (docs/protocol.md, "Calls")."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import hmac
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pica.client import Login, PicaConnection
from pica.client.connection import RequestFailed
from pica.config import CallsConfig, TurnConfig
from pica.protocol import frames as f
from tests.conftest import Node, api, api_error, connect, make_config, new_user, running

WAIT = 5.0
OFFER = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"  # what a real offer looks like is aiortc's business
ANSWER = "v=0\r\no=- 2 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    config = dataclasses.replace(make_config(tmp_path), calls=CallsConfig(ring_timeout=1.0, max_sdp_bytes=4096,
                                                                          max_candidates=3))
    async with running(config) as started:
        yield started


async def devices(node: Node, login: Login, count: int) -> list[PicaConnection]:
    return [await connect(node.url, login, device=f"dev{i}") for i in range(count)]


async def next_call_frame(conn: PicaConnection, kind: type[Any]) -> Any:
    return await conn.next_event(kind, WAIT)


async def record_of(conn: PicaConnection, call_id: str | None = None) -> dict[str, Any]:
    """The call record, as the next message of the 1:1 conversation (of call ``call_id``, when given: a device that
    connected meanwhile may be handed earlier records first)."""
    while True:
        msg = await conn.next_message(timeout=WAIT)
        assert msg.client_msg_id.startswith("~c:")
        record: dict[str, Any] = msg.body["call"]
        if call_id is None or record["call_id"] == call_id:
            assert msg.client_msg_id == "~c:" + record["call_id"]
            return record


async def refused(conn: PicaConnection, frame: Any) -> str:
    with pytest.raises(RequestFailed) as failed:
        await conn.request(frame)
    return failed.value.code


async def test_both_devices_ring_the_first_to_answer_wins(node: Node) -> None:
    alice, bob = await new_user(node.url, "alice"), await new_user(node.url, "bob")
    [phone] = await devices(node, alice, 1)
    desk, laptop = await devices(node, bob, 2)

    placed = await phone.request(f.CallInvite(to=bob.user_id, sdp=OFFER, media="video"))
    assert isinstance(placed, f.CallPlaced) and placed.timeout == 1.0
    # Alice's candidate, trickled before anyone answered, waits for the device that will.
    await phone.request(f.CallCandidate(call_id=placed.call_id, candidate="candidate:1 1 udp 1 127.0.0.1 9 typ host",
                                        sdp_mid="0", sdp_mline_index=0))
    for device in (desk, laptop):
        incoming = await next_call_frame(device, f.CallIncoming)
        assert (incoming.call_id, incoming.caller, incoming.media, incoming.sdp) == (
            placed.call_id, alice.user_id, "video", OFFER)

    await desk.request(f.CallRinging(call_id=placed.call_id))
    await laptop.request(f.CallRinging(call_id=placed.call_id))
    assert (await next_call_frame(phone, f.CallRinging)).call_id == placed.call_id

    await laptop.request(f.CallAccept(call_id=placed.call_id, sdp=ANSWER))
    accepted = await next_call_frame(phone, f.CallAccepted)
    assert accepted.sdp == ANSWER
    held = await next_call_frame(laptop, f.CallCandidate)
    assert held.candidate.startswith("candidate:1") and held.sdp_mid == "0"
    ended = await next_call_frame(desk, f.CallEnded)
    assert ended.reason == "answered_elsewhere"
    # The desk is out of the call: too late to answer, and it learns nothing more of it.
    assert await refused(desk, f.CallAccept(call_id=placed.call_id, sdp=ANSWER)) == "call_not_found"

    # Candidates now go straight to the other party's one device.
    await laptop.request(f.CallCandidate(call_id=placed.call_id, candidate="candidate:2 1 udp 1 127.0.0.1 7 typ host"))
    assert (await next_call_frame(phone, f.CallCandidate)).candidate.startswith("candidate:2")

    # Bob is busy now: Carol cannot ring him, nor can Alice place a second call.
    carol = await new_user(node.url, "carol")
    [carols] = await devices(node, carol, 1)
    assert await refused(carols, f.CallInvite(to=bob.user_id, sdp=OFFER)) == "busy"
    assert await refused(phone, f.CallInvite(to=carol.user_id, sdp=OFFER)) == "busy"

    await asyncio.sleep(0.05)
    await phone.request(f.CallHangup(call_id=placed.call_id))
    assert (await next_call_frame(laptop, f.CallEnded)).reason == "hung_up"
    for conn in (phone, desk, laptop):
        record = await record_of(conn)
        assert record["outcome"] == "answered" and record["call_id"] == placed.call_id
        assert record["media"] == "video" and record["ended_by"] == alice.user_id
        assert record["duration_ms"] >= 50
    # Over: the id names nothing any more, and both may call again.
    assert await refused(laptop, f.CallHangup(call_id=placed.call_id)) == "call_not_found"
    again = await carols.request(f.CallInvite(to=bob.user_id, sdp=OFFER))
    await carols.request(f.CallCancel(call_id=again.call_id))


async def test_decline_cancel_and_timeout_leave_their_records(node: Node) -> None:
    alice, bob = await new_user(node.url, "alice"), await new_user(node.url, "bob")
    [phone] = await devices(node, alice, 1)
    desk, laptop = await devices(node, bob, 2)

    # Bob declines on his desk: Alice hears "declined", his laptop stops ringing.
    call = await phone.request(f.CallInvite(to=bob.user_id, sdp=OFFER))
    await next_call_frame(laptop, f.CallIncoming)
    await desk.request(f.CallDecline(call_id=call.call_id))
    assert (await next_call_frame(phone, f.CallEnded)).reason == "declined"
    assert (await next_call_frame(laptop, f.CallEnded)).reason == "declined_elsewhere"
    for conn in (phone, desk, laptop):  # every device of both gets the record, like any message
        record = await record_of(conn)
        assert (record["outcome"], record["ended_by"]) == ("declined", bob.user_id)
        assert "duration_ms" not in record

    # Alice gives up before he answers.
    call = await phone.request(f.CallInvite(to=bob.user_id, sdp=OFFER))
    await phone.request(f.CallCancel(call_id=call.call_id))
    for device in (desk, laptop):
        assert (await next_call_frame(device, f.CallEnded)).reason == "cancelled"
    for conn in (phone, desk, laptop):
        assert (await record_of(conn))["outcome"] == "cancelled"

    # Nobody answers within calls.ring_timeout (1 s here): a missed call for both.
    call = await phone.request(f.CallInvite(to=bob.user_id, sdp=OFFER))
    for conn in (phone, desk, laptop):
        assert (await next_call_frame(conn, f.CallEnded)).reason == "timeout"
    assert (await record_of(laptop))["outcome"] == "missed"

    # The records are ordinary timeline messages: history shows the three, seqs without a gap.
    page = await laptop.request(f.History(conversation_id=f"d:{alice.user_id}:{bob.user_id}"))
    outcomes = [m.body["call"]["outcome"] for m in page.msgs]
    assert outcomes == ["declined", "cancelled", "missed"]
    assert [m.seq for m in page.msgs] == [1, 2, 3]
    assert all(m.sender == alice.user_id for m in page.msgs)


async def test_a_caller_who_disconnects_ends_the_call(node: Node) -> None:
    alice, bob = await new_user(node.url, "alice"), await new_user(node.url, "bob")
    [phone] = await devices(node, alice, 1)
    [desk] = await devices(node, bob, 1)
    call = await phone.request(f.CallInvite(to=bob.user_id, sdp=OFFER))
    await next_call_frame(desk, f.CallIncoming)
    await phone.close()
    assert (await next_call_frame(desk, f.CallEnded)).reason == "disconnected"
    assert (await record_of(desk))["outcome"] == "failed"
    assert await refused(desk, f.CallAccept(call_id=call.call_id, sdp=ANSWER)) == "call_not_found"

    # The one who answered goes away: the caller is told, the record says answered.
    [phone] = await devices(node, alice, 1)
    call = await phone.request(f.CallInvite(to=bob.user_id, sdp=OFFER))
    await next_call_frame(desk, f.CallIncoming)
    await desk.request(f.CallAccept(call_id=call.call_id, sdp=ANSWER))
    await next_call_frame(phone, f.CallAccepted)
    await desk.close()
    assert (await next_call_frame(phone, f.CallEnded)).reason == "disconnected"
    record = await record_of(phone, call.call_id)
    assert (record["outcome"], record["reason"]) == ("answered", "disconnected")


async def test_who_may_call_whom_is_the_send_policy(node: Node) -> None:
    alice, bob = await new_user(node.url, "alice"), await new_user(node.url, "bob")
    [phone] = await devices(node, alice, 1)
    [desk] = await devices(node, bob, 1)

    await api(node, bob, "PUT", f"/v1/blocks/{alice.user_id}")
    assert await refused(phone, f.CallInvite(to=bob.user_id, sdp=OFFER)) == "forbidden"
    await api(node, bob, "DELETE", f"/v1/blocks/{alice.user_id}")

    await api(node, bob, "PATCH", "/v1/me", json={"only_contacts": True})
    assert await refused(phone, f.CallInvite(to=bob.user_id, sdp=OFFER)) == "forbidden"
    await api(node, alice, "POST", "/v1/contacts/requests", json={"user_id": bob.user_id})
    await api(node, bob, "POST", f"/v1/contacts/requests/{alice.user_id}/accept")
    call = await phone.request(f.CallInvite(to=bob.user_id, sdp=OFFER))
    assert (await next_call_frame(desk, f.CallIncoming)).call_id == call.call_id
    await phone.request(f.CallCancel(call_id=call.call_id))

    assert await refused(phone, f.CallInvite(to=2**40, sdp=OFFER)) == "user_not_found"
    # No ringing: a refused invite reached nobody.
    with pytest.raises(TimeoutError):
        await desk.next_event(f.CallIncoming, 0.3)


async def test_bad_call_frames_are_refused_clearly(node: Node) -> None:
    alice, bob, eve = [await new_user(node.url, p) for p in ("alice", "bob", "eve")]
    [phone] = await devices(node, alice, 1)
    [desk] = await devices(node, bob, 1)
    [eves] = await devices(node, eve, 1)

    assert await refused(phone, f.CallInvite(to=alice.user_id, sdp=OFFER)) == "bad_request"
    assert await refused(phone, f.CallInvite(to=bob.user_id, sdp="x" * 5000)) == "bad_request"  # max_sdp_bytes
    assert await refused(phone, f.CallHangup(call_id="no-such-call")) == "call_not_found"
    call = await phone.request(f.CallInvite(to=bob.user_id, sdp=OFFER))
    await next_call_frame(desk, f.CallIncoming)
    # Someone else's call does not exist for Eve, whatever she sends.
    for frame in (f.CallAccept(call_id=call.call_id, sdp=ANSWER), f.CallHangup(call_id=call.call_id),
                  f.CallCandidate(call_id=call.call_id, candidate="candidate:x")):
        assert await refused(eves, frame) == "call_not_found"
    # The caller cannot accept their own call, the callee cannot cancel it, nor trickle before answering.
    assert await refused(phone, f.CallAccept(call_id=call.call_id, sdp=ANSWER)) == "call_state"
    assert await refused(desk, f.CallCancel(call_id=call.call_id)) == "call_state"
    assert await refused(desk, f.CallCandidate(call_id=call.call_id, candidate="candidate:y")) == "call_state"
    # Candidate limits: size, then count (max_candidates = 3).
    assert await refused(phone, f.CallCandidate(call_id=call.call_id, candidate="c" * 2000)) == "bad_request"
    for n in range(3):
        await phone.request(f.CallCandidate(call_id=call.call_id, candidate=f"candidate:{n}"))
    assert await refused(phone, f.CallCandidate(call_id=call.call_id, candidate="candidate:4")) == "bad_request"
    await phone.request(f.CallCancel(call_id=call.call_id))

    # A client cannot write a call record of its own.
    with pytest.raises(RequestFailed) as failed:
        await phone.send(to=bob.user_id, body={"text": "fake", "call": {"outcome": "answered"}})
    assert failed.value.code == "bad_request"


async def test_invites_are_rate_limited(tmp_path: Path) -> None:
    config = dataclasses.replace(make_config(tmp_path), calls=CallsConfig(invites_per_user="2/min"))
    async with running(config) as node:
        alice, bob = await new_user(node.url, "alice"), await new_user(node.url, "bob")
        [phone] = await devices(node, alice, 1)
        for _ in range(2):
            call = await phone.request(f.CallInvite(to=bob.user_id, sdp=OFFER))
            await phone.request(f.CallCancel(call_id=call.call_id))
        with pytest.raises(RequestFailed) as failed:
            await phone.request(f.CallInvite(to=bob.user_id, sdp=OFFER))
        assert failed.value.code == "rate_limited" and failed.value.retry_after


async def test_turn_credentials_follow_coturns_shared_secret_scheme(tmp_path: Path) -> None:
    async with running(make_config(tmp_path / "a")) as plain:
        alice = await new_user(plain.url, "alice")
        assert await api_error(plain, alice, "GET", "/v1/turn") == (501, "not_configured")

    turn = TurnConfig(urls=("turn:127.0.0.1:3478?transport=udp",), secret="s3cret", ttl=600)
    async with running(dataclasses.replace(make_config(tmp_path / "b"), turn=turn)) as node:
        alice = await new_user(node.url, "alice")
        before = int(time.time())
        got = await api(node, alice, "GET", "/v1/turn")
        expiry, user = got["username"].split(":")
        assert int(user) == alice.user_id and before + 600 <= int(expiry) <= int(time.time()) + 600
        expected = base64.b64encode(hmac.new(b"s3cret", got["username"].encode(), hashlib.sha1).digest()).decode()
        assert (got["urls"], got["credential"], got["ttl"]) == (list(turn.urls), expected, 600)
