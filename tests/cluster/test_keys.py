"""The Redis layout for Redis Cluster, as plain values: which names share a hash slot, how a cluster URL is read,
which shard owns a slot, and the configuration that guards them."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from pica.cluster.driver import Topology
from pica.cluster.keys import Keys
from pica.config import ClusterUrl, ConfigError, is_cluster_url, load_config

CLUSTER_ENV = {"PICA_STORE": "postgresql://127.0.0.1/pica", "PICA_AUTH_TOKEN_SECRET": "s" * 32}


def test_every_registry_and_presence_key_shares_one_slot() -> None:
    keys = Keys("pica:", 256)
    names = [keys.nodes, f"{keys.registry}node:n1", f"{keys.registry}online:42", f"{keys.registry}node_users:n2",
             f"{keys.registry}reap:n3", f"{keys.registry}reaped:n3"]
    assert len({key_slot(name.encode()) for name in names}) == 1
    assert all(name.startswith("pica:") for name in names)  # SCAN pica:* finds a deployment's keys


def test_channels_of_one_bucket_share_a_slot_and_buckets_spread() -> None:
    keys = Keys("pica:", 256)
    assert len({key_slot(keys.user_channel(5 + 256 * k)) for k in range(10)}) == 1
    assert len({key_slot(keys.user_channel(user_id)) for user_id in range(256)}) > 200  # spread over the cluster
    groups = {key_slot(keys.group_channel(f"g:{n}")) for n in range(2_000)}
    assert len(groups) <= 256 and len(groups) > 200
    assert keys.group_channel("g:7") == keys.group_channel("g:7")  # the same name on every node


def test_a_user_channel_gives_back_its_user() -> None:
    keys = Keys("p:", 16)
    assert [keys.user_of(keys.user_channel(user_id)) for user_id in (1, 15, 16, 123456789)] == [1, 15, 16, 123456789]
    assert keys.user_of(b"p:u:{3}x") is None and keys.user_of(b"p:g:{3}g:1") is None and keys.user_of(b"p:u:") is None


def test_a_prefix_with_braces_is_refused() -> None:
    with pytest.raises(ValueError, match="braces"):
        Keys("a{b}:", 256)
    with pytest.raises(ConfigError, match=r"redis\.prefix: must not contain braces"):
        load_config(env={"PICA_REDIS_PREFIX": "x{y}:"})
    with pytest.raises(ConfigError, match=r"redis\.channel_buckets: must be 1\.\.16384"):
        load_config(env={"PICA_REDIS_CHANNEL_BUCKETS": "0"})


def test_a_cluster_url_names_its_seeds_and_credentials() -> None:
    url = "redis+cluster://bus:s%40cret@10.0.0.1:7000,10.0.0.2:7001,[::1]:7002"
    parsed = ClusterUrl.parse(url)
    assert parsed.seeds == (("10.0.0.1", 7000), ("10.0.0.2", 7001), ("::1", 7002))
    assert (parsed.username, parsed.password, parsed.tls) == ("bus", "s@cret", False)
    assert parsed.node_url("10.0.0.3", 7003) == "redis://bus:s%40cret@10.0.0.3:7003/0"
    assert ClusterUrl.parse("rediss+cluster://h:1").tls and ClusterUrl.parse("rediss+cluster://h:1").password is None
    assert is_cluster_url(url) and not is_cluster_url("redis://h:1/0")
    for bad in ("redis+cluster://h", "redis+cluster://h:0", "redis+cluster://h:1,:2", "redis://h:1"):
        with pytest.raises(ValueError):
            ClusterUrl.parse(bad)
    config = load_config(env={**CLUSTER_ENV, "PICA_CLUSTER": "redis+cluster://127.0.0.1:7000,127.0.0.1:7001"})
    assert config.cluster.startswith("redis+cluster://")
    with pytest.raises(ConfigError, match=r"cluster: seed 'db' is not host:port"):
        load_config(env={**CLUSTER_ENV, "PICA_CLUSTER": "redis+cluster://127.0.0.1:7000,db"})


def test_the_topology_finds_the_shard_of_a_slot_and_gaps() -> None:
    topology = Topology([(5461, 10922, "b:2"), (0, 5460, "a:1"), (12000, 16383, "c:3")])
    assert topology.shards == ["a:1", "b:2", "c:3"]
    assert [topology.shard_of(slot) for slot in (0, 5460, 5461, 10922, 12000, 16383)] == \
        ["a:1", "a:1", "b:2", "b:2", "c:3", "c:3"]
    assert topology.shard_of(11000) is None  # a slot nobody serves: the subscriber waits for a primary
