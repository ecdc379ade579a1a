"""Stories told over real sockets on both stores: a node on its embedded SQLite file, and a cluster node on
PostgreSQL. What a user is promised must not depend on the store the operator chose.

- A recall hides the text: the recalled message's earlier edit events lose their text for every reader, in history
  and sync, and search finds none of its words (protocol 13.1).
- A member removed from a group while offline learns of it at their next sync, from their own timeline (12.2).
"""

from __future__ import annotations

import uuid

import pytest

from pica.client import PicaConnection, PicaHttp
from pica.protocol import frames as f
from tests.cluster.conftest import Cluster, register
from tests.conftest import Node

pytestmark = [pytest.mark.timeout(60)]

WAIT = 10.0


async def test_a_recall_hides_the_text_on_the_embedded_store(node: Node) -> None:
    await a_recall_hides_the_text(node.url, node.tcp_port)


async def test_a_recall_hides_the_text_on_postgresql(cluster: Cluster) -> None:
    (n1,) = cluster.start("n1")
    await a_recall_hides_the_text(n1.url, n1.tcp_port)


async def a_recall_hides_the_text(url: str, tcp_port: int) -> None:
    alice, bob = await register(url, "alice"), await register(url, "bob")
    async with await PicaConnection.open(url, alice.token, transport="tcp", tcp_port=tcp_port) as a:
        sent = await a.send(bob.user_id, {"text": "papaya plan"})
        conversation_id = sent.conversation_id
        for text in ("guava plan", "mango plan"):
            await a.request(f.Edit(conversation_id=conversation_id, seq=sent.seq, text=text,
                                   client_msg_id=uuid.uuid4().hex))
        kept = await a.send(bob.user_id, {"text": "kiwi plan"})
        await a.request(f.Recall(conversation_id=conversation_id, seq=sent.seq, client_msg_id=uuid.uuid4().hex))
    expected = [{"recalled": True}, {"edit": {"seq": 1, "recalled": True}}, {"edit": {"seq": 1, "recalled": True}},
                {"text": "kiwi plan"}, {"recall": {"seq": 1}}]
    for reader in (alice, bob):
        async with PicaHttp(url, token=reader.token) as http:
            page = await http.request("GET", f"/v1/conversations/{conversation_id}/messages")
            assert [m["body"] for m in page["messages"]] == expected
            for word in ("papaya", "guava", "mango"):
                assert (await http.request("GET", "/v1/search", params={"q": word}))["messages"] == []
            found = await http.request("GET", "/v1/search", params={"q": "plan"})
            assert [m["seq"] for m in found["messages"]] == [kept.seq]
        async with await PicaConnection.open(url, reader.token, transport="ws", device="new") as fresh:
            assert [m.body for m in await fresh.sync_all() if m.conversation_id == conversation_id] == expected


async def test_an_offline_member_learns_of_their_removal_on_the_embedded_store(node: Node) -> None:
    await an_offline_member_learns_of_their_removal(node.url, node.tcp_port)


async def test_an_offline_member_learns_of_their_removal_on_postgresql(cluster: Cluster) -> None:
    (n1,) = cluster.start("n1")
    await an_offline_member_learns_of_their_removal(n1.url, n1.tcp_port)


async def an_offline_member_learns_of_their_removal(url: str, tcp_port: int) -> None:
    owner, bob = await register(url, "owner"), await register(url, "bob")
    async with PicaHttp(url, token=owner.token) as http:
        group = await http.request("POST", "/v1/groups", json={"name": "book club", "members": [bob.user_id]})
        gid, cid = group["group_id"], group["conversation_id"]
    async with await PicaConnection.open(url, bob.token, transport="tcp", tcp_port=tcp_port) as b:
        seen = {m.conversation_id: m.seq for m in await b.sync_all()}  # bob's device holds the group up to here
    async with PicaHttp(url, token=owner.token) as http:  # while bob is offline
        await http.request("DELETE", f"/v1/groups/{gid}/members/{bob.user_id}")
    async with await PicaConnection.open(url, bob.token, transport="ws") as b:
        synced = (await b.sync(seen)).msgs
    assert [(m.conversation_id, m.sender, m.body) for m in synced] == [
        (f"u:{bob.user_id}", owner.user_id, {"system": {"event": "removed_from_group", "group_id": gid,
                                                        "conversation_id": cid, "name": "book club",
                                                        "by": owner.user_id, "seq": 2}})]
