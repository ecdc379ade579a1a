"""Two people chat: over WebSocket, over TCP, one on each; a second device of the sender sees its own message."""

from __future__ import annotations

import pytest

from pica.protocol import frames as f
from tests.conftest import Node, connect, new_user

TRANSPORT_PAIRS = [("ws", "ws"), ("tcp", "tcp"), ("ws", "tcp"), ("ws-msgpack", "tcp")]


@pytest.mark.parametrize(("alice_transport", "bob_transport"), TRANSPORT_PAIRS)
async def test_two_users_chat(node: Node, alice_transport: str, bob_transport: str) -> None:
    alice, bob = await new_user(node.url, "alice"), await new_user(node.url, "bob")
    a = await connect(node.url, alice, alice_transport, node.tcp_port)
    b = await connect(node.url, bob, bob_transport, node.tcp_port)
    async with a, b:
        ack = await a.send(bob.user_id, {"text": "hi bob"})
        assert ack.seq == 1 and not ack.duplicate
        got = await b.next_message()
        assert (got.sender, got.seq, got.body) == (alice.user_id, 1, {"text": "hi bob"})
        assert got.conversation_id == ack.conversation_id

        reply = await b.send(alice.user_id, {"text": "hello alice"})
        assert reply.seq == 2 and reply.conversation_id == ack.conversation_id
        back = await a.next_message()
        assert (back.sender, back.seq, back.body["text"]) == (bob.user_id, 2, "hello alice")


async def test_second_device_of_sender_sees_own_message(node: Node) -> None:
    alice, bob = await new_user(node.url), await new_user(node.url)
    phone = await connect(node.url, alice, "ws", device="phone")
    laptop = await connect(node.url, alice, "tcp", node.tcp_port, device="laptop")
    b = await connect(node.url, bob, "ws")
    async with phone, laptop, b:
        ack = await phone.send(bob.user_id, {"text": "from my phone"})
        mirrored = await laptop.next_message()
        assert (mirrored.sender, mirrored.client_msg_id, mirrored.seq) == (alice.user_id, ack.client_msg_id, 1)
        assert (await b.next_message()).client_msg_id == ack.client_msg_id


async def test_delivery_receipt_reaches_sender(node: Node) -> None:
    alice, bob = await new_user(node.url), await new_user(node.url)
    a, b = await connect(node.url, alice), await connect(node.url, bob, "tcp", node.tcp_port)
    async with a, b:
        await a.send(bob.user_id, {"text": "one"})
        await a.send(bob.user_id, {"text": "two"})
        await b.next_message()
        last = await b.next_message()
        await b.ack_received(last.conversation_id, last.seq)
        receipt = await a.next_event(f.Receipt)
        assert (receipt.user_id, receipt.delivered) == (bob.user_id, 2)
