"""The cluster bus (pica.cluster) against a real Redis: several Cluster objects in one process, each with its own Hub.

Devices are tiny stand-ins registered in each hub (``user_id`` and ``push``, recording what they were pushed): the
hub and the bus are the real ones. The group fan-out reads members from :class:`MemberTable`, an in-memory table
with the store methods ``GroupFanout`` and group typing use (``group_fanout``, ``conversation_members``), so a test
can commit a membership change "on another node" by editing it.

Shared Redis at 127.0.0.1:6379: every key and channel uses a random prefix, deleted after the test. Tests that stop
Redis start a private redis-server on a free port instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from pica.cluster import Cluster, NodeInfo
from pica.cluster.envelope import (
    BadEnvelope,
    EphemeralEnvelope,
    GroupEnvelope,
    decode_group,
    encode_ephemeral,
    encode_group,
)
from pica.cluster.groups import GroupIndex
from pica.cluster.keys import Keys
from pica.config import LimitsConfig, RedisConfig
from pica.core.chat import ChatService
from pica.core.ports import SystemClock
from pica.errors import ConversationNotFound
from pica.gateway.hub import Hub
from pica.protocol import frames as f
from pica.protocol.codec import Encoding
from pica.protocol.outbound import OutboundFrame
from pica.store.base import GroupChange, GroupRecord, MessageRecord
from tests.cluster.conftest import PrivateRedis, free_port

SHARED_PORT = 6379


# ---------------------------------------------------------------------------------------------- stand-ins


class Device:
    """A READY connection as the hub sees it."""

    def __init__(self, user_id: int) -> None:
        self.user_id = user_id
        self.closed = False
        self.frames: list[Any] = []

    def push(self, frame: OutboundFrame) -> None:
        self.frames.append(frame.frame)

    def seqs(self) -> list[int]:
        return [frame.seq for frame in self.frames if isinstance(frame, f.Msg)]

    def typists(self) -> list[int | None]:
        return [frame.user_id for frame in self.frames if isinstance(frame, f.Typing)]


class MemberTable:
    """Group memberships as the store would answer ``group_fanout``: (version, {member: joined_seq})."""

    def __init__(self) -> None:
        self.groups: dict[str, tuple[int, dict[int, int]]] = {}
        self.loads = 0
        self.group_lists = 0
        self.member_reads = 0

    async def group_fanout(self, conversation_id: str) -> tuple[int, dict[int, int]]:
        self.loads += 1
        version, members = self.groups[conversation_id]
        return version, dict(members)

    async def conversation_members(self, conversation_id: str) -> list[int]:
        self.member_reads += 1
        return list(self.groups[conversation_id][1]) if conversation_id in self.groups else []

    async def list_groups(self, user_id: int) -> list[GroupRecord]:
        self.group_lists += 1
        return [group_record(cid, version) for cid, (version, members) in self.groups.items() if user_id in members]


@dataclass
class Node:
    cluster: Cluster
    hub: Hub
    transitions: list[tuple[int, bool]] = field(default_factory=list)
    resyncs: int = 0

    @property
    def node_id(self) -> str:
        return self.cluster.node.node_id

    async def connect(self, user_id: int) -> Device:
        """What the gateway does: before_ready, then register."""
        await self.cluster.before_ready(user_id)
        device = Device(user_id)
        self.hub.register(device)  # type: ignore[arg-type]
        return device

    def disconnect(self, device: Device) -> None:
        self.hub.unregister(device)  # type: ignore[arg-type]


def msg(seq: int, conversation_id: str = "d:1:7") -> OutboundFrame:
    return OutboundFrame(f.Msg(conversation_id=conversation_id, seq=seq, sender=1, client_msg_id=f"m{seq}", ts=seq,
                               body={"text": f"message {seq}"}))


def dedup(seqs: list[int]) -> list[int]:
    return list(dict.fromkeys(seqs))


async def eventually(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.02)


# ---------------------------------------------------------------------------------------------- Redis


def delete_prefix(prefix: str, port: int) -> None:
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=500))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start:start + 500])
    finally:
        client.close()


def keys_of(prefix: str, port: int) -> list[bytes]:
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)
    try:
        return sorted(client.scan_iter(match=f"{prefix}*", count=500))
    finally:
        client.close()


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix of this test alone on the shared Redis (skips, loudly, when that Redis is unreachable)."""
    try:
        redis.Redis(host="127.0.0.1", port=SHARED_PORT, socket_timeout=2).ping()
    except Exception as exc:
        pytest.skip(f"CLUSTER BUS TESTS NEED Redis at 127.0.0.1:{SHARED_PORT}, which is not reachable: {exc!r}")
    value = f"pica-test-{secrets.token_hex(6)}:"
    yield value
    delete_prefix(value, SHARED_PORT)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path / "redis")
    try:
        yield server
    finally:
        server.kill()


def bus_config(prefix: str, **changes: Any) -> RedisConfig:
    # Fast heartbeats so that death and recovery show within a second; see RedisConfig for the defaults.
    base = RedisConfig(prefix=prefix, heartbeat_interval=0.1, node_ttl=0.6, outbox_size=10_000, timeout=1.0)
    return dataclasses.replace(base, **changes)


@contextlib.asynccontextmanager
async def nodes(url: str, config: RedisConfig, count: int, store: MemberTable | None = None,
                start: bool = True) -> AsyncIterator[list[Node]]:
    table = store or MemberTable()
    made: list[Node] = []
    for index in range(count):
        hub = Hub()
        info = NodeInfo(node_id=f"node-{'abcdefgh'[index]}", http=f"http://127.0.0.1:{8000 + index}",
                        ws=f"ws://127.0.0.1:{8000 + index}/v1/ws", tcp="", connections=0,
                        started_at=SystemClock().now_ms())
        node = Node(Cluster(url, config, info, hub, table, SystemClock()), hub)  # type: ignore[arg-type]

        def on_resync(node: Node = node) -> None:
            node.resyncs += 1

        node.cluster.on_resync = on_resync

        def on_presence(user_id: int, online: bool, node: Node = node) -> None:
            node.transitions.append((user_id, online))

        node.cluster.set_presence_listener(on_presence)
        made.append(node)
    try:
        if start:
            await asyncio.gather(*(node.cluster.start() for node in made))
        yield made
    finally:
        await asyncio.gather(*(node.cluster.stop() for node in made))


async def live(node: Node) -> set[str]:
    return {n.node_id for n in await node.cluster.live_nodes()}


async def eventually_async(check: Callable[[], Any], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.02)


def user_channel(prefix: str, user_id: int) -> str:
    return Keys(prefix, RedisConfig().channel_buckets).user_channel(user_id).decode()


def group_channel(prefix: str, conversation_id: str) -> str:
    return Keys(prefix, RedisConfig().channel_buckets).group_channel(conversation_id).decode()


def shared_url() -> str:
    return f"redis://127.0.0.1:{SHARED_PORT}/0"


# ---------------------------------------------------------------------------------------------- users


async def test_a_thousand_frames_reach_a_remote_user_once_in_order(prefix: str) -> None:
    async with nodes(shared_url(), bus_config(prefix), 2) as (a, b):
        sender = await a.connect(7)  # the sending device, excluded
        other_local = await a.connect(7)  # another device of the same user on the origin node
        remote = await b.connect(7)
        for seq in range(1, 1001):
            a.cluster.delivery.deliver([7], msg(seq), exclude=sender)
        await eventually(lambda: len(remote.frames) >= 1000, 10, "1,000 frames on node B")
        await asyncio.sleep(0.3)  # room for any duplicate to show up
        assert remote.seqs() == list(range(1, 1001))
        # Delivered locally once, not a second time from its own envelopes; nothing to the excluded device.
        assert other_local.seqs() == list(range(1, 1001))
        assert sender.frames == []
        assert a.cluster.published >= 1000
        assert b.cluster.received >= 1000
        assert a.cluster.dropped == b.cluster.dropped == 0


async def test_a_frame_to_several_users_is_decoded_once_per_node(prefix: str) -> None:
    async with nodes(shared_url(), bus_config(prefix), 2) as (a, b):
        devices = [await b.connect(user_id) for user_id in (1, 2, 3)]
        frame = msg(1)
        a.cluster.delivery.deliver([1, 2, 3], frame)
        await eventually(lambda: all(d.frames for d in devices), 5, "the frame on node B")
        assert len({id(d.frames[0]) for d in devices}) == 1  # one decoded frame, shared
        assert [d.seqs() for d in devices] == [[1], [1], [1]]


async def test_the_channel_is_released_when_the_last_local_device_leaves(prefix: str) -> None:
    channel = user_channel(prefix, 42)
    client = redis.Redis(host="127.0.0.1", port=SHARED_PORT, socket_timeout=5)

    def subscribers() -> int:
        return int(client.pubsub_shardnumsub(channel)[0][1])

    async with nodes(shared_url(), bus_config(prefix), 2) as (a, b):
        first, second = await b.connect(42), await b.connect(42)
        assert subscribers() == 1  # before_ready returned: Redis has the subscription
        b.disconnect(first)
        a.cluster.delivery.deliver([42], msg(1))
        await eventually(lambda: second.seqs() == [1], 5, "delivery to the remaining device")
        b.disconnect(second)
        await eventually(lambda: subscribers() == 0, 5, "node B unsubscribed")
        a.cluster.delivery.deliver([42], msg(2))
        await asyncio.sleep(0.2)
        assert first.seqs() == [] and second.seqs() == [1]
    client.close()


async def test_before_ready_for_a_connection_that_never_registers_leaves_no_subscription(prefix: str) -> None:
    channel = user_channel(prefix, 43)
    client = redis.Redis(host="127.0.0.1", port=SHARED_PORT, socket_timeout=5)
    async with nodes(shared_url(), bus_config(prefix), 1) as (a,):
        await a.cluster.before_ready(43)  # the client then disconnects before its ready
        await eventually(lambda: int(client.pubsub_shardnumsub(channel)[0][1]) == 0, 5, "subscription released")
    client.close()


# ---------------------------------------------------------------------------------------------- groups


def group_record(conversation_id: str, version: int) -> GroupRecord:
    return GroupRecord(group_id=int(conversation_id[2:]), conversation_id=conversation_id, name="g", owner_id=1,
                       muted_all=False, dissolved=False, created_at=0, member_count=0, members_version=version)


def change(version: int, seq: int, added: tuple[int, ...] = (), removed: tuple[int, ...] = (),
           conversation_id: str = "g:1") -> GroupChange:
    group = group_record(conversation_id, version)
    notice = MessageRecord(conversation_id, seq, 1, f"~n{seq}", seq, {"system": {"event": "members_removed"}})
    return GroupChange(group=group, notice=notice, added=added, removed=removed)


async def test_group_frames_reach_members_on_other_nodes_through_their_fanout(prefix: str) -> None:
    table = MemberTable()
    table.groups["g:1"] = (1, {1: 0, 2: 0, 3: 0})
    async with nodes(shared_url(), bus_config(prefix), 3, store=table) as (a, b, c):
        author = await a.connect(1)
        on_b = await b.connect(2)
        on_c = await c.connect(3)
        a.cluster.fanout.deliver("g:1", 1, 5, msg(5, "g:1"), exclude=author)
        await eventually(lambda: on_b.seqs() == [5] and on_c.seqs() == [5], 5, "seq 5 on B and C")
        assert author.frames == []

        # Committed "on another node": user 4 joined after seq 5, user 3 left. Version 2 makes every node reload.
        table.groups["g:1"] = (2, {1: 0, 2: 0, 4: 5})
        newcomer = await b.connect(4)
        a.cluster.fanout.deliver("g:1", 2, 6, msg(6, "g:1"))
        await eventually(lambda: newcomer.seqs() == [6] and on_b.seqs() == [5, 6], 5, "seq 6 on B")
        assert author.seqs() == [6]
        await asyncio.sleep(0.2)
        assert on_c.seqs() == [5]  # removed: nothing after

        # A change applied on A: user 2 removed at seq 7. The store has it; B reloads and reaches 2 via ``also``.
        table.groups["g:1"] = (3, {1: 0, 4: 5})
        a.cluster.fanout.apply(change(3, 7, removed=(2,)))
        await eventually(lambda: on_b.seqs() == [5, 6, 7] and newcomer.seqs() == [6, 7], 5, "notice 7 on B")
        a.cluster.fanout.deliver("g:1", 3, 8, msg(8, "g:1"))
        await eventually(lambda: newcomer.seqs() == [6, 7, 8], 5, "seq 8 on B")
        await asyncio.sleep(0.2)
        assert on_b.seqs() == [5, 6, 7]
        assert author.seqs() == [6, 7, 8]


def subscribers(channel: str, port: int = SHARED_PORT) -> int:
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)
    try:
        return int(client.pubsub_shardnumsub(channel)[0][1])
    finally:
        client.close()


def resyncs_of(device: Device) -> int:
    return sum(isinstance(frame, f.Resync) for frame in device.frames)


def test_group_channel_envelopes_of_both_kinds_decode_and_garbage_is_refused() -> None:
    typing = OutboundFrame(f.Typing(conversation_id="g:1", user_id=3)).payload(Encoding.MSGPACK)
    ephemeral = decode_group(encode_ephemeral("node-a", "g:1", 3, 7, typing))
    assert ephemeral == EphemeralEnvelope("node-a", "g:1", (3, 7), f.Typing(conversation_id="g:1", user_id=3))
    timeline = decode_group(encode_group("node-a", "g:1", 2, 7, (4,), msg(7, "g:1").payload(Encoding.MSGPACK)))
    assert isinstance(timeline, GroupEnvelope) and (timeline.version, timeline.seq, timeline.also) == (2, 7, (4,))
    for bad in (b"\x95", b"\x95\xa1e", encode_ephemeral("node-a", "g:1", 3, 7, typing)[:-1], b"\x96\x01", b""):
        with pytest.raises(BadEnvelope):
            decode_group(bad)


def test_the_group_index_reports_first_and_last_local_members() -> None:
    index = GroupIndex()
    assert index.load(1, ["g:1", "g:2"]) == ["g:1", "g:2"]
    assert index.loaded(1) and not index.loaded(2)
    assert index.join(2, "g:1") is False  # already held through user 1
    assert index.join(2, "g:3") is True and not index.loaded(2)
    assert index.join(2, "g:3") is False
    assert index.leave(1, "g:1") is False and index.members("g:1") == {2}
    assert index.leave(1, "g:9") is False
    assert sorted(index.drop(2)) == ["g:1", "g:3"]
    assert index.load(2, ["g:2"]) == []  # user 1 still holds it
    assert sorted(index.drop(1)) == [] and index.drop(2) == ["g:2"]
    assert index.group_count == 0 and not index.loaded(1)


async def test_a_node_without_a_member_of_a_group_receives_nothing_of_it(prefix: str) -> None:
    table = MemberTable()
    table.groups["g:1"] = (1, {1: 0, 2: 0})
    channel = group_channel(prefix, "g:1")
    async with nodes(shared_url(), bus_config(prefix), 3, store=table) as (a, b, c):
        author, member = await a.connect(1), await b.connect(2)
        bystander = await c.connect(3)  # connected, in no group
        assert subscribers(channel) == 2  # A and B, confirmed before their before_ready returned
        received = c.cluster.received
        for seq in range(1, 21):
            a.cluster.fanout.deliver("g:1", 1, seq, msg(seq, "g:1"), exclude=author)
        await eventually(lambda: member.seqs() == list(range(1, 21)), 5, "20 group frames on B")
        await asyncio.sleep(0.2)
        assert c.cluster.received == received  # not one envelope reached C
        assert c.cluster.fanout.membership("g:1") is None  # and C cached nothing of the group
        assert bystander.frames == [] and author.frames == []
        # The broadcast channel of the old design is gone.
        client = redis.Redis(host="127.0.0.1", port=SHARED_PORT, socket_timeout=5)
        assert client.pubsub_shardchannels(f"{prefix}groups") == []
        assert sorted(client.pubsub_shardchannels(f"{prefix}g:*")) == [channel.encode()]
        client.close()


async def test_a_member_connecting_subscribes_before_ready_and_releases_on_leaving(prefix: str) -> None:
    table = MemberTable()
    table.groups["g:1"] = (1, {1: 0, 2: 0})
    table.groups["g:2"] = (1, {2: 0})
    async with nodes(shared_url(), bus_config(prefix), 2, store=table) as (a, b):
        await a.connect(1)
        assert subscribers(group_channel(prefix, "g:1")) == 1
        first = await b.connect(2)
        # before_ready returned: Redis has B's subscriptions to both groups of user 2.
        assert subscribers(group_channel(prefix, "g:1")) == 2 and subscribers(group_channel(prefix, "g:2")) == 1
        a.cluster.fanout.deliver("g:1", 1, 1, msg(1, "g:1"))
        a.cluster.fanout.deliver("g:2", 1, 1, msg(1, "g:2"))
        await eventually(lambda: len(first.frames) == 2, 5, "both group frames on B")
        lists = table.group_lists
        second = await b.connect(2)  # a second device: the groups are known, no store read
        assert table.group_lists == lists
        b.disconnect(first)
        await asyncio.sleep(0.1)
        assert subscribers(group_channel(prefix, "g:1")) == 2  # the other device holds them
        b.disconnect(second)
        g1, g2 = group_channel(prefix, "g:1"), group_channel(prefix, "g:2")
        await eventually(lambda: subscribers(g1) == 1 and subscribers(g2) == 0, 5, "B unsubscribed from both groups")
        assert b.cluster.fanout.membership("g:1") is None  # its member cache went with them


async def test_a_member_added_where_the_group_had_no_member_gets_it_live_from_then_on(prefix: str) -> None:
    table = MemberTable()
    table.groups["g:1"] = (1, {1: 0, 2: 0})
    channel = group_channel(prefix, "g:1")
    async with nodes(shared_url(), bus_config(prefix), 3, store=table) as (a, b, c):
        owner = await a.connect(1)
        member = await b.connect(2)  # B holds a member already
        joining_b = await b.connect(5)
        joining_c, joining_c2 = await c.connect(6), await c.connect(7)  # C holds none
        assert subscribers(channel) == 2
        # Committed on A: users 5, 6 and 7 added with notice seq 4.
        table.groups["g:1"] = (2, {1: 0, 2: 0, 5: 3, 6: 3, 7: 3})
        a.cluster.fanout.apply(change(2, 4, added=(5, 6, 7)))
        await eventually(lambda: subscribers(channel) == 3, 5, "C subscribed to the group")
        await eventually(lambda: all(d.seqs() == [4] for d in (owner, member, joining_b, joining_c, joining_c2)), 5,
                         "the notice everywhere")
        # On C the subscription was new: frames published before Redis confirmed it may have been missed.
        await eventually(lambda: resyncs_of(joining_c) == 1 and resyncs_of(joining_c2) == 1, 5, "C's users resync")
        a.cluster.fanout.deliver("g:1", 2, 5, msg(5, "g:1"))
        await eventually(lambda: joining_c.seqs() == [4, 5] and joining_c2.seqs() == [4, 5], 5, "seq 5 on C")
        await eventually(lambda: joining_b.seqs() == [4, 5] and member.seqs() == [4, 5], 5, "seq 5 on B")
        await asyncio.sleep(0.2)
        # Exactly once each (no second copy from the join), and no resync where the channel was already live.
        assert [d.seqs() for d in (member, joining_b, joining_c, joining_c2)] == [[4, 5]] * 4
        assert resyncs_of(joining_b) == resyncs_of(member) == 0
        assert c.cluster.fanout.join_resyncs == 2 and b.cluster.fanout.join_resyncs == 0


async def test_a_member_added_on_the_origin_node_subscribes_there(prefix: str) -> None:
    table = MemberTable()
    table.groups["g:1"] = (1, {1: 0})
    channel = group_channel(prefix, "g:1")
    async with nodes(shared_url(), bus_config(prefix), 2, store=table) as (a, b):
        newcomer = await a.connect(9)  # A holds no member of the group
        owner = await b.connect(1)
        assert subscribers(channel) == 1
        table.groups["g:1"] = (2, {1: 0, 9: 2})
        a.cluster.fanout.apply(change(2, 3, added=(9,)))  # the change is committed through A
        assert a.cluster.fanout.index.members("g:1") == {9}  # synchronously
        await eventually(lambda: subscribers(channel) == 2, 5, "A subscribed")
        await eventually(lambda: newcomer.seqs() == [3] and owner.seqs() == [3], 5, "the notice")
        await eventually(lambda: resyncs_of(newcomer) == 1, 5, "the newcomer resyncs")
        b.cluster.fanout.deliver("g:1", 2, 4, msg(4, "g:1"))
        await eventually(lambda: newcomer.seqs() == [3, 4], 5, "seq 4 from B on A")


async def test_a_removed_member_s_node_unsubscribes_unless_it_holds_another(prefix: str) -> None:
    table = MemberTable()
    table.groups["g:1"] = (1, {1: 0, 2: 0, 3: 0, 4: 0})
    channel = group_channel(prefix, "g:1")
    async with nodes(shared_url(), bus_config(prefix), 3, store=table) as (a, b, c):
        owner = await a.connect(1)
        alone = await b.connect(2)
        leaving, staying = await c.connect(3), await c.connect(4)
        assert subscribers(channel) == 3
        table.groups["g:1"] = (2, {1: 0, 4: 0})
        a.cluster.fanout.apply(change(2, 6, removed=(2, 3)))
        await eventually(lambda: all(d.seqs() == [6] for d in (owner, alone, leaving, staying)), 5, "the notice")
        await eventually(lambda: subscribers(channel) == 2, 5, "B unsubscribed, C not")
        assert b.cluster.fanout.index.group_count == 0 and c.cluster.fanout.index.members("g:1") == {4}
        received = b.cluster.received
        a.cluster.fanout.deliver("g:1", 2, 7, msg(7, "g:1"))
        await eventually(lambda: staying.seqs() == [6, 7], 5, "seq 7 to the remaining member")
        await asyncio.sleep(0.2)
        assert alone.seqs() == [6] and leaving.seqs() == [6] and owner.seqs() == [6, 7]
        assert b.cluster.received == received


async def test_a_typing_notice_never_reaches_a_member_removed_where_the_typist_typed(prefix: str) -> None:
    """The typist's node has applied a removal that another node has not yet: the notice carries the membership
    version the typist's node checked, and the other node reloads its older member list before serving it."""
    table = MemberTable()
    table.groups["g:1"] = (1, {1: 0, 2: 0, 3: 0})
    async with nodes(shared_url(), bus_config(prefix), 2, store=table) as (a, b):
        await a.connect(1)
        on_b, removed_on_b = await b.connect(2), await b.connect(3)
        chat = ChatService(table, a.cluster.delivery, SystemClock(), LimitsConfig(),  # type: ignore[arg-type]
                           a.cluster.fanout)
        await chat.typing(1, "g:1")  # both nodes now cache version 1
        await eventually(lambda: on_b.typists() == [1] and removed_on_b.typists() == [1], 5, "the first notice")
        assert b.cluster.fanout.membership("g:1") is not None

        # Member 3 is removed (version 2). A learns of it; B's notice of it is still on its way.
        table.groups["g:1"] = (2, {1: 0, 2: 0})
        a.cluster.fanout.local.forget("g:1")
        loads = table.loads
        await chat.typing(1, "g:1")
        await eventually(lambda: on_b.typists() == [1, 1], 5, "the second notice, for member 2")
        await asyncio.sleep(0.2)
        assert removed_on_b.typists() == [1]  # served from B's reloaded list, not from its cached version 1
        assert table.loads >= loads + 2  # A checked against the store, B reloaded
        version, members = b.cluster.fanout.membership("g:1") or (0, ())
        assert (version, sorted(members)) == (2, [1, 2])


async def test_a_group_typing_notice_is_one_publish_and_reaches_each_other_member_once(prefix: str) -> None:
    table = MemberTable()
    table.groups["g:1"] = (1, {1: 0, 2: 0, 3: 0, 4: 0})
    channel = group_channel(prefix, "g:1")
    async with nodes(shared_url(), bus_config(prefix), 4, store=table) as (a, b, c, d):
        typist, typist_other = await a.connect(1), await a.connect(1)
        local = await a.connect(4)
        typist_on_b, on_b = await b.connect(1), await b.connect(2)
        on_c, on_c2 = await c.connect(3), await c.connect(3)
        bystander = await d.connect(9)  # connected, in no group
        assert subscribers(channel) == 3
        chat = ChatService(table, a.cluster.delivery, SystemClock(), LimitsConfig(),  # type: ignore[arg-type]
                           a.cluster.fanout)
        await eventually(lambda: len(a.cluster._outbox) == 0, 5, "A's outbox empty")
        published, received_d = a.cluster.published, d.cluster.received

        # No node has the group cached: A's typing reads the store for the check, each fan-out loads its members.
        await chat.typing(1, "g:1")
        members = (local, on_b, on_c, on_c2)
        await eventually(lambda: all(dev.typists() == [1] for dev in members), 5, "the notice on A, B and C")
        await eventually(lambda: a.cluster.published - published >= 1, 5, "the publish")
        await asyncio.sleep(0.3)  # room for duplicates and further publishes to show up
        assert [dev.typists() for dev in members] == [[1]] * 4  # once each
        assert typist.frames == typist_other.frames == typist_on_b.frames == []  # not the typist's devices
        assert a.cluster.published - published == 1  # one envelope for the group, not one per member
        assert d.cluster.received == received_d and bystander.frames == []
        assert d.cluster.fanout.membership("g:1") is None
        # No seq: the group channel's "highest seq received" (joins rely on it) is untouched.
        assert "g:1" not in b.cluster.fanout._seen and "g:1" not in c.cluster.fanout._seen

        # Now cached everywhere: no store read at all, still one publish.
        loads, reads = table.loads, table.member_reads
        await chat.typing(1, "g:1")
        await eventually(lambda: all(dev.typists() == [1, 1] for dev in members), 5, "the second notice")
        await eventually(lambda: a.cluster.published - published >= 2, 5, "the second publish")
        assert (table.loads, table.member_reads) == (loads, reads)

        # A non-member is refused as before, and nothing is published.
        with pytest.raises(ConversationNotFound):
            await chat.typing(9, "g:1")

        # Timeline frames and their seq tracking carry on as before.
        a.cluster.fanout.deliver("g:1", 1, 5, msg(5, "g:1"))
        await eventually(lambda: on_b.seqs() == [5] and on_c.seqs() == [5], 5, "seq 5 on B and C")
        assert b.cluster.fanout._seen["g:1"] == 5
        await asyncio.sleep(0.2)
        assert a.cluster.published - published == 3
        assert bystander.frames == []
        assert typist_on_b.seqs() == typist_other.seqs() == [5]
        assert typist_on_b.typists() == typist_other.typists() == []


# ---------------------------------------------------------------------------------------------- presence


async def test_presence_transitions_fire_once_cluster_wide(prefix: str) -> None:
    async with nodes(shared_url(), bus_config(prefix), 3) as (a, b, c):

        def fired() -> list[tuple[int, bool]]:
            return a.transitions + b.transitions + c.transitions

        on_a = await a.connect(5)
        await eventually(lambda: fired() == [(5, True)], 5, "online once")
        assert a.transitions == [(5, True)]
        assert await c.cluster.presence.online([5, 6]) == {5}
        on_b = await b.connect(5)
        await asyncio.sleep(0.3)
        assert fired() == [(5, True)]
        a.disconnect(on_a)
        await asyncio.sleep(0.3)
        assert fired() == [(5, True)]
        assert await c.cluster.presence.online([5]) == {5}
        b.disconnect(on_b)
        await eventually(lambda: fired() == [(5, True), (5, False)], 5, "offline once")
        assert b.transitions == [(5, False)]
        assert await c.cluster.presence.online([5]) == set()

        # Both nodes at once: still one transition each way.
        devices = await asyncio.gather(a.connect(9), b.connect(9))
        await eventually(lambda: fired().count((9, True)) == 1, 5, "user 9 online")
        a.disconnect(devices[0])
        b.disconnect(devices[1])
        await eventually(lambda: fired().count((9, False)) == 1, 5, "user 9 offline")
        await asyncio.sleep(0.3)
        assert fired().count((9, True)) == 1 and fired().count((9, False)) == 1


async def test_presence_falls_back_to_local_devices_when_redis_is_unreachable(prefix: str) -> None:
    port = free_port()  # nothing listens there
    config = bus_config(prefix, timeout=0.3)
    async with nodes(f"redis://127.0.0.1:{port}/0", config, 1) as (a,):
        started = time.monotonic()
        device = await a.connect(3)
        assert time.monotonic() - started < 1.0  # before_ready does not wait for a bus that is down
        assert await a.cluster.presence.online([3, 4]) == {3}
        a.cluster.delivery.deliver([3, 4], msg(1))  # never raises, still serves the local device
        assert device.seqs() == [1]
        assert not a.cluster.healthy
        assert [n.node_id for n in await a.cluster.live_nodes()] == [a.node_id]


# ---------------------------------------------------------------------------------------------- registry


async def test_registry_lists_live_nodes_and_forgets_stopped_and_dead_ones(prefix: str) -> None:
    config = bus_config(prefix)
    async with nodes(shared_url(), config, 3) as (a, b, c):
        everyone = {a.node_id, b.node_id, c.node_id}
        await eventually_async(lambda: _has(a, everyone), 3, "A sees all three")
        info = {n.node_id: n for n in await a.cluster.live_nodes()}[b.node_id]
        assert info.http == "http://127.0.0.1:8001" and info.ws.endswith("/v1/ws")

        await b.cluster.stop()  # leaves at once
        members = redis.Redis(host="127.0.0.1", port=SHARED_PORT).zrange(Keys(prefix, 1).nodes, 0, -1)
        assert b.node_id.encode() not in members
        await eventually_async(lambda: _has(a, {a.node_id, c.node_id}, exact=True), 1, "B gone from A's view")

        # C stops heartbeating (its process hangs or dies, without leaving) while user 9 is connected there.
        await c.connect(9)
        await eventually(lambda: (9, True) in c.transitions, 5, "user 9 online")
        died = time.monotonic()
        for task in c.cluster._tasks:  # white box: the node's loops stop as in a crash, nothing is cleaned up
            task.cancel()
        await eventually_async(lambda: _has(a, {a.node_id}, exact=True), config.node_ttl + 1, "C gone")
        assert time.monotonic() - died <= config.node_ttl + 0.5
        await eventually(lambda: (9, False) in a.transitions, 3, "the reaper announced user 9 offline")
        assert await a.cluster.presence.online([9]) == set()
        c_users = f"{Keys(prefix, 1).registry}node_users:{c.node_id}".encode()
        await eventually(lambda: c_users not in keys_of(prefix, SHARED_PORT), 3, "C's user set deleted")


async def _has(node: Node, ids: set[str], exact: bool = False) -> bool:
    seen = await live(node)
    return seen == ids if exact else ids <= seen


# ---------------------------------------------------------------------------------------------- Redis outages


async def test_redis_restart_flushes_or_resyncs_and_everything_comes_back(prefix: str, own_redis: PrivateRedis) -> None:
    config = bus_config(prefix, timeout=0.5)
    # Redis is down at boot: start() must return (after the timeout) and the nodes must join once it is up.
    async with nodes(own_redis.url, config, 2, start=False) as (a, b):
        started = time.monotonic()
        await asyncio.gather(a.cluster.start(), b.cluster.start())
        assert time.monotonic() - started < 2.0
        own_redis.start()
        await eventually_async(lambda: _has(a, {a.node_id, b.node_id}), 5, "both registered after a late Redis")
        await eventually(lambda: a.cluster.healthy and b.cluster.healthy, 5, "healthy")

        remote = await b.connect(3)
        await eventually(lambda: (3, True) in b.transitions, 5, "user 3 online")
        a.cluster.delivery.deliver([3], msg(1))
        await eventually(lambda: remote.seqs() == [1], 5, "live delivery before the outage")
        resyncs_before = b.resyncs

        own_redis.kill()
        for seq in range(2, 52):
            a.cluster.delivery.deliver([3], msg(seq))  # queued in A's outbox, no error, no wait
        await eventually(lambda: not b.cluster.healthy, 5, "B notices the outage")
        own_redis.start()  # empty: no persistence

        await eventually(lambda: b.resyncs > resyncs_before, 5, "B resyncs its clients after resubscribing")
        await eventually(lambda: len(a.cluster._outbox) == 0, 5, "A's outbox flushed")
        # Whatever reached B arrived in order; what did not is covered by the resync.
        received = dedup(remote.seqs())
        assert received == sorted(received) and received[0] == 1

        # Registry and presence come back by themselves on the empty Redis.
        await eventually_async(lambda: _has(a, {a.node_id, b.node_id}), 5, "registry back")
        await eventually_async(lambda: _online(a, 3), 5, "user 3 online again in Redis")
        assert b.transitions.count((3, True)) == 1  # re-registered, not re-announced
        await eventually(lambda: a.cluster.healthy and b.cluster.healthy, 5, "healthy again")

        # Live delivery resumes.
        a.cluster.delivery.deliver([3], msg(100))
        await eventually(lambda: remote.seqs()[-1:] == [100], 5, "live delivery after the restart")


async def _online(node: Node, user_id: int) -> bool:
    return user_id in await node.cluster.presence.online([user_id])


async def test_group_channels_are_resubscribed_after_a_redis_restart(prefix: str, own_redis: PrivateRedis) -> None:
    table = MemberTable()
    table.groups["g:1"] = (1, {1: 0, 2: 0})
    table.groups["g:2"] = (1, {2: 0})
    own_redis.start()
    async with nodes(own_redis.url, bus_config(prefix, timeout=0.5), 2, store=table) as (a, b):
        await a.connect(1)
        member = await b.connect(2)
        resyncs = b.resyncs
        own_redis.kill()
        await eventually(lambda: not b.cluster.healthy, 5, "B notices the outage")
        own_redis.start()
        await eventually(lambda: b.resyncs > resyncs and a.cluster.healthy and b.cluster.healthy, 5, "back")
        assert subscribers(group_channel(prefix, "g:1"), own_redis.port) == 2
        assert subscribers(group_channel(prefix, "g:2"), own_redis.port) == 1
        a.cluster.fanout.deliver("g:1", 1, 1, msg(1, "g:1"))
        a.cluster.fanout.deliver("g:2", 1, 1, msg(1, "g:2"))
        await eventually(lambda: len(member.frames) == 2, 5, "group frames after the restart")


async def test_outbox_overflow_tells_other_nodes_to_resync(prefix: str, own_redis: PrivateRedis) -> None:
    # A long node TTL: the pause below blocks heartbeats too, and this test is not about reaping.
    config = bus_config(prefix, timeout=0.4, node_ttl=10.0, outbox_size=20)
    own_redis.start()
    async with nodes(own_redis.url, config, 2) as (a, b):
        remote = await b.connect(3)
        control = own_redis.client()
        # Redis holds every write (PUBLISH and scripts included) for 1.5 s: A's publishes time out and queue.
        control.execute_command("CLIENT", "PAUSE", "1500", "WRITE")
        for seq in range(1, 51):
            a.cluster.delivery.deliver([3], msg(seq))
        assert a.cluster.dropped == 30
        await eventually(lambda: b.resyncs >= 1, 10, "B told to resync by A's control envelope")
        assert dedup(remote.seqs()) == list(range(1, 21))  # the 20 kept, in order; the rest by sync
        assert a.resyncs == 0  # A's own clients missed nothing
        control.close()


async def test_a_node_that_stopped_while_holding_users_announces_them_offline(prefix: str) -> None:
    async with nodes(shared_url(), bus_config(prefix), 2) as (a, b):
        await b.connect(11)
        await eventually(lambda: (11, True) in b.transitions, 5, "user 11 online")
        assert await a.cluster.presence.online([11]) == {11}
        await b.cluster.stop()
        assert (11, False) in b.transitions
        assert await a.cluster.presence.online([11]) == set()
        assert not [k for k in keys_of(prefix, SHARED_PORT) if b.node_id.encode() in k]
        await a.cluster.stop()
        assert keys_of(prefix, SHARED_PORT) == []  # a clean leave leaves nothing behind


async def test_a_silent_subscriber_connection_is_cut_and_resubscribed(prefix: str, own_redis: PrivateRedis) -> None:
    # Redis stops answering anything (as a half-open connection would) for longer than idle + timeout.
    config = bus_config(prefix, timeout=0.3, node_ttl=10.0)
    own_redis.start()
    async with nodes(own_redis.url, config, 2) as (a, b):
        remote = await b.connect(3)
        control = own_redis.client()
        control.execute_command("CLIENT", "PAUSE", "1500", "ALL")
        await eventually(lambda: not b.cluster.healthy, 3, "B's watchdog cuts the silent connection")
        await eventually(lambda: b.resyncs >= 1 and b.cluster.healthy, 10, "B resubscribed and resynced")
        a.cluster.delivery.deliver([3], msg(1))
        await eventually(lambda: remote.seqs() == [1], 5, "live delivery after the pause")
        control.close()


async def test_a_node_declared_dead_that_comes_back_announces_its_users_again(prefix: str) -> None:
    config = bus_config(prefix)
    async with nodes(shared_url(), config, 2) as (a, c):
        await c.connect(12)
        await eventually(lambda: c.transitions == [(12, True)], 5, "user 12 online")
        # C's heartbeats stall (a long pause) while its connections and subscriber live on.
        heartbeats = c.cluster._heartbeats
        assert heartbeats is not None
        heartbeats.cancel()
        await eventually(lambda: (12, False) in a.transitions, config.node_ttl + 2, "A reaps C")
        assert await a.cluster.presence.online([12]) == set()
        # C resumes: the reaper's marker tells it that its users were announced offline; it announces them again.
        resumed = asyncio.get_running_loop().create_task(c.cluster._registry.run())
        c.cluster._tasks.append(resumed)
        await eventually(lambda: c.transitions == [(12, True), (12, True)], 5, "C re-announces user 12")
        assert await a.cluster.presence.online([12]) == {12}
        await eventually_async(lambda: _has(a, {a.node_id, c.node_id}), 2, "C live again")


async def test_stop_is_prompt_even_when_cancelled_mid_command(prefix: str) -> None:
    # With a 1 ms heartbeat, stop() usually lands inside a Redis command, where Python 3.11's wait_for (inside
    # redis-py) can swallow a cancellation; a single cancel-and-await used to hang there.
    config = bus_config(prefix, heartbeat_interval=0.001)
    for _ in range(30):
        async with nodes(shared_url(), config, 1) as (node,):
            await node.connect(1)
            await asyncio.sleep(0.005)
            started = time.monotonic()
            await node.cluster.stop()
            assert time.monotonic() - started < 1.0
    assert keys_of(prefix, SHARED_PORT) == []
