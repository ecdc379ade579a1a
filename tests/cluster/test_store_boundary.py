"""Input at the edge of what a store can hold gets the same clear answer on both backends, and never the retryable
``internal`` error that an SDK would retry until it gave up.

Text a store cannot keep is refused at the door. PostgreSQL cannot hold a NUL character in text, nor compare a
parameter holding one: before these checks a client id or a conversation id with a NUL in it reached the store and
came back as ``internal`` on PostgreSQL, while SQLite took it. Now a client id or group name with a control
character is a ``bad_request``, a conversation id with one names no conversation (``conversation_not_found``, as for
any conversation the caller is not in), and a sync cursor for one contributes nothing. Message bodies may carry any
character: they are stored as JSON, where a NUL is an escape sequence.

Numbers at the top of their ranges (seqs up to 2^62, ids up to 2^53, conversation ids whose numbers overflow 64 bits)
are schema-valid frames: each gets its ordinary answer or a specific error code.
"""

from __future__ import annotations

from typing import Any

import pytest

from pica.client import PicaConnection, PicaHttp, PicaHttpError, RequestFailed
from pica.protocol import frames as f
from tests.cluster.conftest import Cluster, register
from tests.conftest import Node

pytestmark = [pytest.mark.timeout(60)]


async def refusal(request: Any) -> str:
    with pytest.raises(RequestFailed) as failed:
        await request
    assert not failed.value.retryable, "a refusal of bad input must not invite a retry"
    return failed.value.code


async def http_refusal(request: Any) -> tuple[int, str]:
    with pytest.raises(PicaHttpError) as failed:
        await request
    return failed.value.status, failed.value.code


async def test_on_the_embedded_store(node: Node) -> None:
    await ids_and_names_with_control_characters_are_refused_and_the_store_is_unharmed(node.url, node.server.tcp_port)
    await numbers_at_the_top_of_their_ranges_get_ordinary_answers(node.url, node.server.tcp_port)


async def test_on_postgresql(cluster: Cluster) -> None:
    (n1,) = cluster.start("n1")
    await ids_and_names_with_control_characters_are_refused_and_the_store_is_unharmed(n1.url, n1.tcp_port)
    await numbers_at_the_top_of_their_ranges_get_ordinary_answers(n1.url, n1.tcp_port)


async def ids_and_names_with_control_characters_are_refused_and_the_store_is_unharmed(url: str, tcp_port: int) -> None:
    alice, bob = await register(url, "alice"), await register(url, "bob")
    async with await PicaConnection.open(url, alice.token, transport="tcp", tcp_port=tcp_port) as conn:
        # A client id with a NUL: refused, nothing stored.
        assert await refusal(conn.request(f.Send(client_msg_id="a\x00b", to=bob.user_id, body={"text": "hi"}))) \
            == "bad_request"
        # A body may hold one: JSON stores it as an escape.
        sent = await conn.request(f.Send(client_msg_id="c1", to=bob.user_id, body={"text": "x\x00y"}))
        room = sent.conversation_id
        assert sent.seq == 1

        for frame in (f.History(conversation_id=room + "\x00"), f.Read(conversation_id=room + "\x00", seq=1),
                      f.Recall(conversation_id=room + "\x00", seq=1, client_msg_id="r1")):
            assert await refusal(conn.request(frame)) == "conversation_not_found", frame
        await conn.write_frame(f.Typing(conversation_id="g:\x001"))  # no reply but an error without ref
        error = await conn.next_event(f.Error)
        assert (error.code, error.ref) == ("conversation_not_found", None)

        synced = await conn.sync({room: 0, "d:\x00": 0})
        assert [(m.seq, m.body) for m in synced.msgs] == [(1, {"text": "x\x00y"})]

    async with PicaHttp(url, token=alice.token) as http:
        assert await http_refusal(http.request("POST", "/v1/groups", json={"name": "team\x00", "members": []})) \
            == (400, "bad_request")
        assert await http_refusal(http.request("GET", "/v1/conversations/d:1%002/messages")) \
            == (404, "conversation_not_found")
        assert await http_refusal(http.request("GET", "/v1/search",
                                               params={"q": "x", "conversation_id": "d:\x00"})) \
            == (404, "conversation_not_found")
        assert await http_refusal(http.request("GET", "/v1/conversations",
                                               params={"before_ts": "1", "before_id": "d:\x00"})) \
            == (400, "bad_request")
        # The store took no harm: the conversation reads back whole.
        page = await http.request("GET", f"/v1/conversations/{room}/messages")
        assert [m["client_msg_id"] for m in page["messages"]] == ["c1"]


async def numbers_at_the_top_of_their_ranges_get_ordinary_answers(url: str, tcp_port: int) -> None:
    alice, bob = await register(url, "alice"), await register(url, "bob")
    top_seq, top_id, overflowing = 2**62, 2**53, "9" * 20
    async with await PicaConnection.open(url, alice.token, transport="tcp", tcp_port=tcp_port) as conn:
        room = (await conn.request(f.Send(client_msg_id="first", to=bob.user_id, body={"text": "hi"}))).conversation_id
        refused = {
            "send to no such user": f.Send(client_msg_id="s1", to=top_id, body={"text": "x"}),
            "send to no such group": f.Send(client_msg_id="s2", group_id=top_id, body={"text": "x"}),
            "history of a group id past 64 bits": f.History(conversation_id=f"g:{overflowing}"),
            "history of a 1:1 id past 64 bits": f.History(conversation_id=f"d:{overflowing}:1"),
            "recall of a seq never reached": f.Recall(conversation_id=room, seq=top_seq, client_msg_id="r1"),
        }
        for label, frame in refused.items():
            code = await refusal(conn.request(frame))
            assert code not in ("internal", "store_unavailable"), (label, code)

        answered = {
            "sync from the top": f.Sync(cursors={room: top_seq, f"g:{overflowing}": top_seq, "u:1": top_seq}),
            "sync from ids past 64 bits": f.Sync(cursors={f"d:{overflowing}:1": 0, f"g:{overflowing}": 0}),
            "history before the top": f.History(conversation_id=room, before=top_seq),
            "history after the top": f.History(conversation_id=room, after=top_seq),
            "read up to the top": f.Read(conversation_id=room, seq=top_seq),
        }
        for label, frame in answered.items():
            assert not isinstance(await conn.request(frame), f.Error), label

        # Reading "up to the top" stops at the conversation's end, and the next send takes the next seq.
        assert (await conn.request(f.Send(client_msg_id="after", to=bob.user_id, body={"text": "ok"}))).seq == 2
        page = await conn.request(f.History(conversation_id=room, before=top_seq))
        assert [m.seq for m in page.msgs] == [1, 2]
