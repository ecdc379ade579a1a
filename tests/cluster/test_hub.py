"""The workers' hub (pica.cluster.hub): the cluster bus of ``pica serve --workers N`` on the embedded store.

First its state alone (sans-I/O: messages in, frames out), then the real thing: a :class:`HubThread` on a Unix socket
and several :class:`~pica.cluster.Cluster` objects in this process joined to it through ``hub+unix://``, each with
its own gateway hub, told the same stories as on Redis (tests/cluster/test_bus.py): the node code is the same, only
the transport differs.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pica.cluster import hub_wire
from pica.cluster.hub import HubState, HubThread, Peer
from pica.config import HUB_SCHEME
from tests.cluster.test_bus import MemberTable, bus_config, dedup, eventually, msg, nodes

# ---------------------------------------------------------------------------------------------- the state alone


def frames(peer: Peer) -> list[list[Any]]:
    reader = hub_wire.Reader()
    return [message for data in peer.take() for message in reader.feed(data)]


def greeted(state: HubState, node_id: str) -> Peer:
    peer = Peer()
    state.connect(peer)
    state.receive(peer, ["call", 0, "hello", [node_id, {"node_id": node_id}]])
    assert frames(peer) == [["reply", 0, {"reaped": False, "nodes": [
        p.fields for p in state.peers if p.node_id is not None]}]]
    return peer


def test_a_publish_reaches_every_subscriber_of_its_channel_the_publisher_included_in_order() -> None:
    state = HubState()
    a, b, c = greeted(state, "a"), greeted(state, "b"), greeted(state, "c")
    state.receive(a, ["sub", [b"u:1"]])
    state.receive(b, ["sub", [b"u:1", b"u:2"]])
    state.receive(a, ["pub", [b"u:1", b"one", b"u:2", b"two", b"u:1", b"three", b"u:3", b"nobody"]])
    assert frames(a) == [["msg", [b"u:1", b"one", b"u:1", b"three"]]]
    assert frames(b) == [["msg", [b"u:1", b"one", b"u:2", b"two", b"u:1", b"three"]]]
    assert frames(c) == []
    state.receive(b, ["unsub", [b"u:1"]])
    state.receive(c, ["pub", [b"u:1", b"four"]])
    assert (frames(a), frames(b)) == ([["msg", [b"u:1", b"four"]]], [])
    assert set(state.channels) == {b"u:1", b"u:2"}


def test_presence_verdicts_say_first_and_last_worker_anywhere() -> None:
    state = HubState()
    a, b = greeted(state, "a"), greeted(state, "b")
    state.receive(a, ["call", 1, "apply", [5, 1, 6, 1]])
    assert frames(a) == [["reply", 1, [5, 1, 6, 1]]]  # both alone: first anywhere
    state.receive(b, ["call", 2, "apply", [5, 1]])
    assert frames(b) == [["reply", 2, [5, 0]]]  # a holds 5 already
    state.receive(b, ["call", 3, "online", [5, 6, 7]])
    assert frames(b) == [["reply", 3, [5, 6]]]  # held by a worker other than the asker
    state.receive(a, ["call", 4, "apply", [5, 0]])
    assert frames(a) == [["reply", 4, [5, 0]]]  # b still holds 5
    state.receive(b, ["call", 5, "apply", [5, 0]])
    assert frames(b) == [["reply", 5, [5, 1]]]  # the last one anywhere


def test_a_worker_whose_connection_closes_is_reaped_and_the_oldest_survivor_announces_its_users() -> None:
    state = HubState()
    a, b, c = greeted(state, "a"), greeted(state, "b"), greeted(state, "c")
    state.receive(c, ["sub", [b"u:9"]])
    state.receive(c, ["call", 1, "apply", [9, 1, 10, 1]])
    state.receive(b, ["call", 2, "apply", [10, 1]])
    frames(b), frames(c)
    state.disconnect(c)
    assert frames(a) == [["gone", [9]]]  # 10 is still held by b
    assert frames(b) == []
    assert b"u:9" not in state.channels
    back = Peer()
    state.connect(back)
    state.receive(back, ["call", 0, "hello", ["c", {"node_id": "c"}]])
    assert frames(back)[0][2]["reaped"] is True  # it must announce its users online again


def test_shared_buckets_are_one_bucket_for_every_worker() -> None:
    now = [100.0]
    state = HubState(clock=lambda: now[0])
    a, b = greeted(state, "a"), greeted(state, "b")
    for peer, number in ((a, 1), (b, 2), (a, 3)):
        state.receive(peer, ["call", number, "bucket", ["login:x", 2, 60, 1, "take"]])
    assert [m[2] for m in frames(a)] == [0.0, 30.0]  # the third take waits for a token (2 per minute)
    assert [m[2] for m in frames(b)] == [0.0]
    now[0] += 30
    state.receive(b, ["call", 4, "bucket", ["login:x", 2, 60, 1, "take"]])
    assert frames(b) == [["reply", 4, 0.0]]


def test_bad_messages_are_refused_and_a_node_id_is_held_once() -> None:
    state = HubState()
    a = greeted(state, "a")
    for bad in ([], ["pub", [b"odd"]], ["sub", "u:1"], ["call", "x", "ping", []], ["nonsense"]):
        with pytest.raises(ValueError):
            state.receive(a, bad)
    state.receive(a, ["call", 7, "apply", [1]])
    assert frames(a)[0][:2] == ["fail", 7]
    twin = Peer()
    state.connect(twin)
    state.receive(twin, ["call", 0, "hello", ["a", {}]])
    state.receive(twin, ["call", 1, "apply", [1, 1]])
    assert [m[:2] for m in frames(twin)] == [["fail", 0], ["fail", 1]]  # not greeted: refused


# ---------------------------------------------------------------------------------------------- over the socket


@pytest.fixture
def hub_path() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="pica-hub-"))  # short: a Unix socket's path has a 108-byte limit
    yield folder / "hub.sock"
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def hub(hub_path: Path) -> Iterator[HubThread]:
    thread = HubThread(hub_path)
    thread.start()
    yield thread
    thread.stop()


def url(path: Path) -> str:
    return HUB_SCHEME + str(path)


async def test_a_thousand_frames_reach_a_remote_user_once_in_order(hub: HubThread) -> None:
    async with nodes(url(hub.path), bus_config(""), 2) as (a, b):
        sender = await a.connect(7)
        other_local = await a.connect(7)
        remote = await b.connect(7)
        for seq in range(1, 1001):
            a.cluster.delivery.deliver([7], msg(seq), exclude=sender)
        await eventually(lambda: len(remote.frames) >= 1000, 10, "1,000 frames on node B")
        await asyncio.sleep(0.2)
        assert remote.seqs() == list(range(1, 1001))
        assert other_local.seqs() == list(range(1, 1001)) and sender.frames == []
        assert a.cluster.dropped == b.cluster.dropped == 0
        assert {n.node_id for n in await a.cluster.live_nodes()} == {a.node_id, b.node_id}


async def test_group_frames_reach_members_on_other_workers_and_presence_fires_once(hub: HubThread) -> None:
    table = MemberTable()
    table.groups["g:1"] = (1, {1: 0, 2: 0})
    async with nodes(url(hub.path), bus_config(""), 3, store=table) as (a, b, c):
        member = await b.connect(2)
        a.cluster.fanout.deliver("g:1", 1, 1, msg(1, "g:1"))
        await eventually(lambda: member.seqs() == [1], 5, "the group frame on B")

        def fired() -> list[tuple[int, bool]]:
            return a.transitions + b.transitions + c.transitions

        on_a, on_c = await a.connect(5), await c.connect(5)
        await eventually(lambda: fired().count((5, True)) == 1, 5, "online once")
        assert await b.cluster.presence.online([5, 6]) == {5}
        a.disconnect(on_a)
        await asyncio.sleep(0.2)
        assert (5, False) not in fired()
        c.disconnect(on_c)
        await eventually(lambda: fired().count((5, False)) == 1, 5, "offline once")


async def test_a_worker_that_dies_is_reaped_at_once_and_one_that_stops_announces_its_users(hub: HubThread) -> None:
    async with nodes(url(hub.path), bus_config(""), 3) as (a, b, c):
        await c.connect(9)
        await b.connect(11)
        await eventually(lambda: (9, True) in c.transitions and (11, True) in b.transitions, 5, "online")
        for task in c.cluster._tasks:  # white box: C's loops stop as in a crash; the kernel closes its socket
            task.cancel()
        await eventually(lambda: (9, False) in a.transitions, 3, "the oldest survivor announced user 9 offline")
        await b.cluster.stop()
        assert (11, False) in b.transitions  # a worker that stops announces its users itself
        assert await a.cluster.presence.online([9, 11]) == set()


async def test_a_hub_restart_resyncs_the_workers_and_everything_comes_back(hub: HubThread) -> None:
    async with nodes(url(hub.path), bus_config("", timeout=0.5), 2) as (a, b):
        remote = await b.connect(3)
        await eventually(lambda: (3, True) in b.transitions, 5, "user 3 online")
        a.cluster.delivery.deliver([3], msg(1))
        await eventually(lambda: remote.seqs() == [1], 5, "live delivery before the restart")
        resyncs = b.resyncs

        hub.stop()
        for seq in range(2, 22):
            a.cluster.delivery.deliver([3], msg(seq))  # queued in A's outbox, no error, no wait
        await eventually(lambda: not b.cluster.healthy, 5, "B notices")
        again = HubThread(hub.path)
        again.start()
        try:
            await eventually(lambda: b.resyncs > resyncs, 5, "B resyncs its clients after resubscribing")
            await eventually(lambda: a.cluster.healthy and b.cluster.healthy, 5, "healthy again")
            received = dedup(remote.seqs())
            assert received == sorted(received) and received[0] == 1  # in order; the rest by the resync
            assert b.transitions.count((3, True)) == 1  # re-registered, not re-announced
            await eventually(lambda: 3 in again.state.online, 5, "user 3 registered on the new hub")
            a.cluster.delivery.deliver([3], msg(100))
            await eventually(lambda: remote.seqs()[-1:] == [100], 5, "live delivery after the restart")
        finally:
            again.stop()


async def test_shared_rate_buckets_span_the_workers(hub: HubThread) -> None:
    async with nodes(url(hub.path), bus_config(""), 2) as (a, b):
        assert await a.cluster.buckets.take("login:alice", 2, 60, 1) == 0.0
        assert await b.cluster.buckets.take("login:alice", 2, 60, 1) == 0.0
        assert await a.cluster.buckets.take("login:alice", 2, 60, 1) > 29
