"""The cluster bus on a real Redis Cluster (three primaries, one replica each, started by each test on free ports):
sharded pub/sub across every shard, presence and shared rate limits on hash-tagged keys, and a primary failover
under load that loses no acked message while the clients of the affected nodes resync.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from pica.client import PicaConnection
from pica.cluster.keys import Keys
from pica.config import RedisConfig
from pica.protocol import frames as f
from tests.cli.conftest import pica
from tests.cli.test_doctor import lines
from tests.cluster.conftest import (
    SHARED_PG,
    ChatLoad,
    close_all,
    cluster_on,
    pairs_and_group,
    register,
    register_many,
    require_postgres,
)
from tests.cluster.redis_cluster import PrivateRedisCluster
from tests.cluster.test_bus import bus_config, eventually, msg, nodes
from tests.cluster.test_cluster_faults import chatters_on, make_group, verify, wait_acked
from tests.store.conftest import PG_DSN

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(180)]


@pytest.fixture
def redis_cluster(tmp_path: Path) -> Iterator[PrivateRedisCluster]:
    cluster = PrivateRedisCluster(tmp_path / "redis-cluster")
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def users_on_every_shard(redis_cluster: PrivateRedisCluster, keys: Keys) -> dict[int, int]:
    """One user id per primary (primary port -> user id) whose channel that primary serves."""
    found: dict[int, int] = {}
    for user_id in range(1, 1_000):
        found.setdefault(redis_cluster.primary_of(keys.user_channel(user_id)), user_id)
        if len(found) == 3:
            return found
    raise AssertionError("no user channel found on some shard")


async def test_frames_presence_and_rate_limits_work_across_every_shard(redis_cluster: PrivateRedisCluster) -> None:
    config = bus_config(f"pica-test-{secrets.token_hex(4)}:")
    keys = Keys(config.prefix, config.channel_buckets)
    placed = users_on_every_shard(redis_cluster, keys)
    users = sorted(placed.values())
    async with nodes(redis_cluster.url, config, 2) as (a, b):
        assert a.cluster.stats()["subscriber_shards"] == 3  # one subscriber connection per primary
        devices = [await b.connect(user_id) for user_id in users]
        for seq in range(1, 301):
            a.cluster.delivery.deliver(users, msg(seq))
        await eventually(lambda: all(d.seqs() == list(range(1, 301)) for d in devices), 10,
                         "300 frames, on three shards, in order, once")

        # Presence lives in the registry's slot: A sees B's users, and B's leaving announces them offline.
        assert await a.cluster.presence.online(users) == set(users)
        # A rate-limit bucket is one key anywhere in the cluster: both nodes spend from it.
        assert await a.cluster.buckets.take("login:x", 2, 60, 1) == 0
        assert await b.cluster.buckets.take("login:x", 2, 60, 1) == 0
        assert await a.cluster.buckets.take("login:x", 2, 60, 1) > 0
        await b.cluster.stop()
        for user_id in users:
            assert (user_id, False) in b.transitions
        assert await a.cluster.presence.online(users) == set()


@pytest.mark.parametrize("how", ["failover", "kill -9"])
async def test_a_failover_resubscribes_and_resyncs_and_delivery_goes_on(redis_cluster: PrivateRedisCluster,
                                                                        how: str) -> None:
    """An operator's ``CLUSTER FAILOVER`` (the demoted primary drops its shard subscribers with ``sunsubscribe``),
    or a crash of the primary (its replica is promoted after the node timeout)."""
    config = bus_config(f"pica-test-{secrets.token_hex(4)}:", timeout=1.0)
    keys = Keys(config.prefix, config.channel_buckets)
    placed = users_on_every_shard(redis_cluster, keys)
    victim, user_id = next(iter(placed.items()))
    async with nodes(redis_cluster.url, config, 2) as (a, b):
        device = await b.connect(user_id)
        a.cluster.delivery.deliver([user_id], msg(1))
        await eventually(lambda: device.seqs() == [1], 5, "the first frame")
        resyncs = b.resyncs
        move = redis_cluster.failover if how == "failover" else redis_cluster.kill_primary
        promoted = await asyncio.to_thread(move, victim)
        assert redis_cluster.primary_of(keys.user_channel(user_id)) == promoted
        # B's subscriber lost the shard (told so, or its connection died): B resubscribes on the new primary and
        # tells its clients to resync (frames published meanwhile may have reached nobody).
        await eventually(lambda: b.resyncs > resyncs and b.cluster.healthy, 10, "B resubscribed and resynced")
        # A's command client learns the move on first use (MOVED, or a refused connection): its publisher retries.
        for seq in range(2, 22):
            a.cluster.delivery.deliver([user_id], msg(seq))
        await eventually(lambda: device.seqs()[-1:] == [21], 10, "delivery after the failover")
        assert device.seqs() == sorted(set(device.seqs())), "frames reordered or repeated"


@pytest.mark.parametrize("how", ["failover", "kill -9"])
async def test_a_primary_failover_under_load_loses_nothing_and_clients_resync(
        tmp_path: Path, redis_cluster: PrivateRedisCluster, how: str) -> None:
    """Two Pica nodes on PostgreSQL chat over the Redis Cluster while the primary holding the watcher's channel is
    replaced: every acked message stored once at its seq, every reader handed every message once in order (live,
    or by the sync its resync triggers), and re-sending stores nothing new."""
    await require_postgres()
    async with cluster_on(tmp_path, SHARED_PG, redis_cluster.url, redis_port=0) as cluster:
        nodes_ = cluster.start("n1", "n2")
        logins = await register_many([n.url for n in nodes_], 8, "rc")
        await cluster.formed(logins[0].token)
        group_id = await make_group(nodes_[0].url, logins[0], logins[1:])
        chatters = await chatters_on(nodes_, logins, dispatch=False)  # fixed places: peers sit on the other node
        watcher_login = await register(nodes_[1].url, "watcher")
        watcher = await PicaConnection.open(nodes_[1].url, watcher_login.token)
        try:
            load = ChatLoad(chatters, pairs_and_group(chatters, group_id))
            sending = asyncio.create_task(load.run(120, window=2, pause=0.05))
            await wait_acked(load, 100, 30.0)
            keys = Keys(cluster.spec.prefix, RedisConfig().channel_buckets)
            victim = redis_cluster.primary_of(keys.user_channel(watcher_login.user_id))
            move = redis_cluster.failover if how == "failover" else redis_cluster.kill_primary
            moving = asyncio.create_task(asyncio.to_thread(move, victim))
            acked_at_failover = len(load.acked)
            await moving
            assert not sending.done(), "the load ended before the new primary took over"
            resync = await watcher.next_event(f.Resync, timeout=10)
            assert resync.reason, "the watcher's node tells its clients to resync"
            await asyncio.wait_for(sending, 60)
            print(f"{how} of {victim} after {acked_at_failover} acks; {len(load.acked)} acked in all")
            assert all(n.alive for n in nodes_), cluster.logs()
            await verify(load, nodes_[0].url, cluster)
        finally:
            await watcher.close()
            await close_all(chatters)


def test_pica_doctor_reaches_the_cluster_through_any_live_seed(tmp_path: Path,
                                                              redis_cluster: PrivateRedisCluster) -> None:
    seeds = redis_cluster.url.removeprefix("redis+cluster://")
    env = {"PICA_STORE": PG_DSN, "PICA_CLUSTER": f"redis+cluster://127.0.0.1:1,{seeds}",  # the first seed is down
           "PICA_AUTH_TOKEN_SECRET": "s" * 40, "PICA_PORT": "0", "PICA_TCP_PORT": "0"}
    found = lines(pica("doctor", data_dir=tmp_path / "data", env=env))
    assert found["cluster bus (Redis)"].startswith("ok Redis 7"), found
