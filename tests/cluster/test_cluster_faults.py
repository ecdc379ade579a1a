"""Faults under load: a node killed with -9, the Redis bus restarted, PostgreSQL restarted, each while SDK clients
on every node send. Whatever happens, no acked message is lost or stored twice, each conversation's seqs run 1..N,
every reader ends with every message once and in the stored order, and re-sending every id stores nothing new.

Each test keeps a record of every send (its client id, its target, the ack) and checks it against the history the
cluster serves afterwards, the way Jepsen's queue checker does for lost, duplicated and reordered writes.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from pica.client import Backoff, Login, PicaClient, PicaConnection, PicaHttp, PicaHttpError, RequestFailed
from pica.protocol import frames as f
from tests.cluster.conftest import (
    REDIS_PORT,
    SHARED_PG,
    SHARED_REDIS,
    ChatLoad,
    Chatter,
    Cluster,
    NodeProcess,
    PrivatePostgres,
    PrivateRedis,
    close_all,
    cluster_on,
    eventually,
    pairs_and_group,
    pg_execute,
    register,
    register_many,
    require_postgres,
    require_redis,
)

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(120)]

QUICK_RECONNECT = Backoff(base=0.1, cap=1.0)


async def make_group(url: str, owner: Login, members: list[Login]) -> int:
    async with PicaHttp(url, token=owner.token) as http:
        group = await http.request("POST", "/v1/groups", json={"name": "everyone",
                                                               "members": [m.user_id for m in members]})
    return int(group["group_id"])


async def chatters_on(nodes: list[NodeProcess], logins: list[Login], *, dispatch: bool) -> list[Chatter]:
    """One SDK client per user; user i starts from node i mod len(nodes) (with dispatch the cluster may place it
    elsewhere; without, it stays there)."""
    urls = [n.url for n in nodes]
    chatters = []
    for i, login in enumerate(logins):
        home = urls[i % len(urls)]
        client = PicaClient(home, token=login.token, dispatch=dispatch, seeds=[u for u in urls if u != home],
                            backoff=QUICK_RECONNECT, transport="tcp" if i % 2 else "ws",
                            tcp_port=nodes[i % len(nodes)].tcp_port, connect_timeout=5.0)
        chatters.append(Chatter(f"c{i}", login, client))
    await asyncio.gather(*(c.client.start() for c in chatters))
    return chatters


async def wait_acked(load: ChatLoad, count: int, timeout: float) -> None:
    async def enough() -> bool:
        return len(load.acked) >= count

    await eventually(enough, timeout, f"{count} messages acked", step=0.02)


async def verify(load: ChatLoad, url: str, cluster: Cluster) -> None:
    """The issue's checks, in order: all acked, stored exactly once at the acked seq with gap-free timelines (over
    the API and in PostgreSQL), every reader has every message in the stored order, re-sending every id stores
    nothing new."""
    failed = [failure for c in load.chatters for failure in c.failures]
    assert not failed, f"{len(failed)} sends never acked, e.g. {failed[:3]}"
    histories = await load.stored(url)
    load.check_stored(histories)
    await load.check_database(cluster.spec, histories)
    await load.wait_readers(histories, 20.0)
    load.check_readers(histories)
    await load.resend_everything()
    after = await load.stored(url)
    assert {cid: len(h) for cid, h in after.items()} == {cid: len(h) for cid, h in histories.items()}, \
        "re-sending stored something new"


# ------------------------------------------------------------------------------------------------ kill -9


CLIENTS = 15
PER_CLIENT = 100


async def test_a_node_killed_mid_load_loses_nothing_and_its_clients_move(cluster: Cluster) -> None:
    nodes = cluster.start("n1", "n2", "n3")
    logins = await register_many([n.url for n in nodes], CLIENTS, "k")
    await cluster.formed(logins[0].token)
    group_id = await make_group(nodes[0].url, logins[0], logins[1:])
    chatters = await chatters_on(nodes, logins, dispatch=True)
    try:
        placed = Counter(c.node_id for c in chatters)
        assert set(placed) <= {"n1", "n2", "n3"} and "" not in placed, placed
        victim = cluster.node(placed.most_common(1)[0][0])
        moved = [c for c in chatters if c.node_id == victim.node_id]

        load = ChatLoad(chatters, pairs_and_group(chatters, group_id))
        sending = asyncio.create_task(load.run(PER_CLIENT, window=4, pause=0.01))
        await wait_acked(load, CLIENTS * PER_CLIENT // 3, 30.0)
        victim.kill9()
        killed_at = time.monotonic()
        acked_before = len(load.acked)
        assert not sending.done() and acked_before < CLIENTS * PER_CLIENT, "the kill came after the load"
        await asyncio.wait_for(sending, 60)
        print(f"{victim.node_id} killed after {acked_before} acks, holding {len(moved)} of {CLIENTS} clients; "
              f"{len(load.acked)} acked in all")

        for chatter in moved:
            assert chatter.node_id not in ("", victim.node_id), f"{chatter.name} still on the dead node"
            assert any(c.reconnect for c in chatter.connects), f"{chatter.name} did not reconnect"
        survivor = next(n for n in nodes if n.alive)
        async with PicaHttp(survivor.url, token=logins[0].token) as http:
            listed = {n.node_id for n in await http.gateway()}
        assert victim.node_id not in listed or time.monotonic() - killed_at < 2.0

        await verify(load, survivor.url, cluster)
    finally:
        await close_all(chatters)


# ------------------------------------------------------------------------------------------------ Redis restart


async def test_redis_restarted_mid_load(tmp_path: Path, private_redis: PrivateRedis) -> None:
    await require_postgres()
    async with cluster_on(tmp_path, SHARED_PG, private_redis.url, redis_port=private_redis.port) as cluster:
        nodes = cluster.start("n1", "n2", "n3")
        logins = await register_many([n.url for n in nodes], 9, "r")
        group_id = await make_group(nodes[0].url, logins[0], logins[1:])
        chatters = await chatters_on(nodes, logins, dispatch=False)  # fixed places: peers sit on other nodes
        watcher_login = await register(nodes[2].url, "watcher")
        watcher = await PicaConnection.open(nodes[2].url, watcher_login.token)
        try:
            load = ChatLoad(chatters, pairs_and_group(chatters, group_id))
            sending = asyncio.create_task(load.run(60, window=2, pause=0.05))
            await wait_acked(load, 100, 30.0)
            private_redis.restart(down_for=1.5)  # a kill -9 of the bus: pub/sub messages in flight are gone
            acked_at_restart = len(load.acked)
            assert not sending.done(), "the restart came after the load"
            await asyncio.wait_for(sending, 60)
            print(f"Redis restarted after {acked_at_restart} acks; {len(load.acked)} acked in all")
            resync = await watcher.next_event(f.Resync, timeout=10)
            assert resync.reason, "nodes tell their clients to resync once the bus is back"
            assert all(n.alive for n in nodes), cluster.logs()
            await verify(load, nodes[1].url, cluster)

            # Live delivery works again: a message from n1 to a user on n2 arrives promptly.
            sender, receiver = chatters[0], chatters[1]
            before = len(receiver.received)
            await sender.client.send(to=receiver.login.user_id, text="after the restart")

            async def arrived() -> bool:
                return any(m.body.get("text") == "after the restart" for m in receiver.received[before:])

            await eventually(arrived, 5.0, "a message crosses nodes after Redis came back")
        finally:
            await watcher.close()
            await close_all(chatters)


# ------------------------------------------------------------------------------------------------ PostgreSQL restart


async def test_postgres_restarted_mid_load(tmp_path: Path, private_postgres: PrivatePostgres) -> None:
    require_redis()
    async with cluster_on(tmp_path, private_postgres.dsn, SHARED_REDIS, redis_port=REDIS_PORT) as cluster:
        nodes = cluster.start("n1", "n2", "n3")
        logins = await register_many([n.url for n in nodes], 9, "p")
        group_id = await make_group(nodes[0].url, logins[0], logins[1:])
        probe_user, probe_peer = await asyncio.gather(register(nodes[0].url, "probe"),
                                                      register(nodes[1].url, "peer"))
        probe = await PicaConnection.open(nodes[0].url, probe_user.token, transport="tcp",
                                          tcp_port=nodes[0].tcp_port)
        chatters = await chatters_on(nodes, logins, dispatch=False)
        try:
            load = ChatLoad(chatters, pairs_and_group(chatters, group_id))
            sending = asyncio.create_task(load.run(60, window=2, pause=0.05, send_timeout=60.0))
            await wait_acked(load, 100, 30.0)
            private_postgres.crash()
            crashed_at = time.monotonic()

            # While the database is down, a send fails with a retryable store_unavailable, and is never acked.
            refused: list[RequestFailed] = []
            for k in range(3):
                with pytest.raises(RequestFailed) as failed:
                    await asyncio.wait_for(probe.send(probe_peer.user_id, {"text": f"probe {k}"},
                                                      client_msg_id=f"probe-{k}"), 20)
                refused.append(failed.value)
            assert [(e.code, e.retryable) for e in refused] == [("store_unavailable", True)] * 3
            acked_while_down = len(load.acked)
            assert not sending.done(), "the restart came after the load"

            await asyncio.sleep(max(0.0, 2.0 - (time.monotonic() - crashed_at)))  # down for 2 s at least
            private_postgres.start()
            restarted_at = time.monotonic()
            # The nodes recover by themselves: the same probe ids now commit (the failed tries stored nothing).
            deadline = time.monotonic() + 20
            for k in range(3):
                while True:
                    try:
                        ack = await asyncio.wait_for(probe.send(probe_peer.user_id, {"text": f"probe {k}"},
                                                                client_msg_id=f"probe-{k}"), 20)
                        break
                    except RequestFailed as exc:
                        assert exc.retryable and time.monotonic() < deadline, f"no recovery: {exc}"
                        await asyncio.sleep(0.2)
                assert not ack.duplicate, "a send refused while the database was down had been stored"
                assert ack.seq == k + 1
            recovered_at = time.monotonic()

            await asyncio.wait_for(sending, 60)
            print(f"PostgreSQL down with {acked_while_down} acked, for {restarted_at - crashed_at:.1f} s; sends "
                  f"commit again {recovered_at - restarted_at:.1f} s after its restart; {len(load.acked)} acked "
                  f"in all, {time.monotonic() - restarted_at:.1f} s after the restart")
            assert len(load.acked) > acked_while_down, "senders carried on after the restart"
            assert all(n.alive for n in nodes), cluster.logs()
            await verify(load, nodes[2].url, cluster)
        finally:
            await probe.close()
            await close_all(chatters)


async def test_backends_terminated_during_reads_and_writes_answer_store_unavailable(cluster: Cluster) -> None:
    """Protocol 19: a node whose PostgreSQL connections are cut mid-query answers ``store_unavailable`` (retryable)
    on every path, sockets and HTTP, reads and writes, and logs no error; its clients never see ``internal``."""
    (n1,) = cluster.start("n1")
    alice, bob = await register(n1.url, "alice"), await register(n1.url, "bob")
    codes: Counter[str] = Counter()
    stop = asyncio.Event()

    async def attempt(op: Any) -> None:
        try:
            await op
        except (RequestFailed, PicaHttpError) as exc:
            codes[exc.code] += 1
            if isinstance(exc, RequestFailed):
                assert exc.retryable, exc
        else:
            codes["ok"] += 1

    async with await PicaConnection.open(n1.url, alice.token, transport="tcp", tcp_port=n1.tcp_port) as a, \
            PicaHttp(n1.url, token=bob.token) as http:
        conversation_id = (await a.send(bob.user_id, {"text": "first"})).conversation_id
        history = f"/v1/conversations/{conversation_id}/messages"

        async def load() -> None:
            i = 0
            while not stop.is_set():
                i += 1
                await asyncio.gather(
                    attempt(a.send(bob.user_id, {"text": f"m{i}"})),
                    attempt(a.history(conversation_id)),
                    attempt(a.sync({})),
                    attempt(http.request("GET", "/v1/conversations")),
                    attempt(http.request("GET", history)),
                    attempt(http.request("POST", f"/v1/conversations/{conversation_id}/read", json={"seq": i})),
                )

        loader = asyncio.create_task(load())
        # Six kills at least; more (up to 30) until one catches a request in flight: a kill between two round
        # trips cuts only idle connections, which the node replaces without an error, and a request is in flight
        # only part of the time.
        for kills in range(1, 31):
            await asyncio.sleep(0.2)
            await pg_execute(SHARED_PG, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                                        f" WHERE application_name LIKE 'pica-% {cluster.spec.schema}'")
            if kills >= 6 and codes["store_unavailable"]:
                break
        stop.set()
        await loader
        assert set(codes) <= {"ok", "store_unavailable"}, codes
        assert codes["store_unavailable"], f"no request was caught by a kill: the test proved nothing ({codes})"
        await a.send(bob.user_id, {"text": "after"})  # and the node works again by itself
    assert "Traceback" not in n1.log_tail(2_000) and "internal" not in n1.log_tail(2_000)
