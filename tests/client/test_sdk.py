"""The SDK as an application uses it: chat with events, survive a server restart mid-send, resume from cursors."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from pica.client import (
    Backoff,
    Connected,
    Disconnected,
    GaveUp,
    MessageEvent,
    PicaClient,
    ReceiptEvent,
)
from tests.conftest import Node, ServerProcess, new_user, start_server_process


def test_backoff_is_full_jitter_and_capped() -> None:
    backoff = Backoff(base=0.5, cap=4.0)
    rng = random.Random(7)
    for attempt in range(12):
        delays = [backoff.delay(attempt, rng) for _ in range(200)]
        ceiling = min(4.0, 0.5 * 2**attempt)
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8  # spread over the whole range, not clustered at the ceiling


async def test_two_clients_chat_with_events_and_callbacks(node: Node) -> None:
    alice_login, bob_login = await new_user(node.url, "alice"), await new_user(node.url, "bob")
    seen: list[str] = []
    async with PicaClient(node.url, token=alice_login.token) as alice, \
            PicaClient(node.url, token=bob_login.token, transport="tcp", tcp_port=node.tcp_port) as bob:
        bob.on(MessageEvent, lambda e: seen.append(e.message.body["text"]))
        ack = await alice.send(to=bob_login.user_id, text="hi bob")
        event = await bob.next_event(MessageEvent)
        assert (event.message.seq, event.message.body["text"]) == (ack.seq, "hi bob")
        await bob.mark_read(ack.conversation_id, ack.seq)
        receipt = await alice.next_event(ReceiptEvent)
        assert (receipt.receipt.user_id, receipt.receipt.read) == (bob_login.user_id, ack.seq)
        group = await alice.create_group("pair", [bob_login.user_id])
        await alice.send(group_id=group["group_id"], text="in the group")
        texts = []
        async for item in bob:
            if isinstance(item, MessageEvent) and "text" in item.message.body:
                texts.append(item.message.body["text"])
                break
        assert texts == ["in the group"]
    assert seen[:1] == ["hi bob"]


async def test_bad_credentials_give_up(node: Node) -> None:
    with pytest.raises(GaveUp):
        async with PicaClient(node.url, token="not-a-token"):
            pass


def stored_ids(data_dir: Path) -> Counter[str]:
    conn = sqlite3.connect(f"file:{data_dir / 'pica.db'}?mode=ro", uri=True)
    try:
        return Counter(r[0] for r in conn.execute("SELECT client_msg_id FROM messages"))
    finally:
        conn.close()


@pytest.mark.slow
async def test_sends_in_flight_across_a_server_restart_are_stored_exactly_once(
    tmp_path: Path, server_process_factory: list[ServerProcess]
) -> None:
    data = tmp_path / "data"
    server = start_server_process(data)
    server_process_factory.append(server)
    alice, bob = await new_user(server.url, "alice"), await new_user(server.url, "bob")
    client = PicaClient(server.url, token=alice.token, transport="tcp", tcp_port=server.tcp_port,
                        backoff=Backoff(base=0.05, cap=0.5), seed=1)
    await client.start()
    ids = [f"burst-{i}" for i in range(300)]
    sends = [asyncio.create_task(client.send(to=bob.user_id, text=i, client_msg_id=i, timeout=60)) for i in ids]
    await asyncio.sleep(0.05)  # some are acked, some committed without their ack, some not yet sent
    server.kill9()
    await client.next_event(Disconnected, timeout=10)
    late = asyncio.create_task(client.send(to=bob.user_id, text="sent while down", client_msg_id="late"))
    await asyncio.sleep(0.3)
    assert not late.done()

    restarted = start_server_process(data, http_port=server.http_port, tcp_port=server.tcp_port)
    server_process_factory.append(restarted)
    await client.next_event(Connected, timeout=30)
    acks = await asyncio.wait_for(asyncio.gather(*sends, late), 60)
    await client.close()
    assert len({(a.conversation_id, a.seq) for a in acks}) == len(ids) + 1
    counts = stored_ids(data)
    assert all(counts[i] == 1 for i in [*ids, "late"]), [i for i in [*ids, "late"] if counts[i] != 1][:5]


async def test_cursor_file_resumes_without_repeats(node: Node, tmp_path: Path) -> None:
    alice, bob = await new_user(node.url), await new_user(node.url)
    cursor_file = tmp_path / "bob.cursors"
    async with PicaClient(node.url, token=alice.token) as a:
        async with PicaClient(node.url, token=bob.token, cursor_file=cursor_file) as b:
            await a.send(to=bob.user_id, text="first")
            assert (await b.next_event(MessageEvent)).message.body["text"] == "first"
        await a.send(to=bob.user_id, text="second")
        async with PicaClient(node.url, token=bob.token, cursor_file=cursor_file) as b_again:
            event = await b_again.next_event(MessageEvent)
            assert event.message.body["text"] == "second"
            assert b_again.cursors.snapshot() == {event.message.conversation_id: 2}
