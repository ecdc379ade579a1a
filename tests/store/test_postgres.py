"""PostgreSQL-only behaviour: migrations run by several nodes at once, two stores ("nodes") writing to one schema,
and connections killed under load. Behaviour shared with SQLite lives in test_contract.py."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import pytest

from pica.config import PostgresConfig
from pica.errors import Forbidden, InternalError, StoreUnavailable
from pica.protocol.tokens import document
from pica.store import sql_postgres
from pica.store.base import AppendResult, DirectAppend, EventAppend, GroupAction, GroupAppend
from pica.store.postgres import PostgresStore, migrate
from pica.store.postgres_lanes import LaneOp
from tests.store.conftest import PG_DSN, connect_admin, pg_config, pg_store

DEADLINE = 15.0
T = TypeVar("T")


def msg(conversation: str, sender: int, recipient: int, cmid: str, text: str = "hi") -> DirectAppend:
    return DirectAppend(conversation, sender, recipient, cmid, json.dumps({"text": text}).encode(), 1,
                        document({"text": text}))


def gmsg(conversation: str, sender: int, cmid: str) -> GroupAppend:
    return GroupAppend(conversation, sender, cmid, b'{"text":"hi"}', 1)


async def rows(schema: str, query: str, *args: Any) -> list[Any]:
    admin = await connect_admin()
    try:
        await admin.execute(f'SET search_path = "{schema}"')
        return list(await admin.fetch(query, *args))
    finally:
        await admin.close()


async def stored(schema: str, conversation: str) -> dict[str, int]:
    """client_msg_id -> seq of every committed message of a conversation, read behind the store's back."""
    found = await rows(schema, "SELECT client_msg_id, seq FROM messages WHERE conversation_id = $1", conversation)
    return {r["client_msg_id"]: r["seq"] for r in found}


# ------------------------------------------------------------------------------------------------ the pool


async def test_a_released_connection_skips_the_reset_round_trip_but_not_the_rollback(pg_schema: str) -> None:
    """The store keeps no session state on a pooled connection, so asyncpg's reset statement (RESET ALL and the
    rest, a round trip per release) is not sent; a transaction left open is still rolled back on release."""
    async with pg_store(pg_schema, pool_size=1) as store:
        pool = store._pool
        assert pool is not None
        async with pool.acquire() as conn:
            await conn.execute("SET work_mem = '7MB'")
        async with pool.acquire() as conn:
            assert await conn.fetchval("SHOW work_mem") == "7MB"  # no RESET ALL came between
            await conn.execute("BEGIN; CREATE TABLE left_open (id int)")
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT to_regclass('left_open')") is None
            assert await conn.fetchval("SELECT count(*) FROM users") == 0


# ------------------------------------------------------------------------------------------------ migrations


async def test_migrations_are_idempotent_and_safe_to_run_concurrently(pg_schema: str) -> None:
    config = PostgresConfig(schema=pg_schema)
    versions = await asyncio.gather(*(migrate(PG_DSN, config) for _ in range(4)))
    assert len(set(versions)) == 1 and versions[0] >= 1
    assert await migrate(PG_DSN, config) == versions[0]
    applied = await rows(pg_schema, "SELECT version FROM schema_migrations ORDER BY version")
    assert [r["version"] for r in applied] == list(range(1, versions[0] + 1))
    async with pg_store(pg_schema) as store:  # open() on a migrated schema changes nothing
        assert await store.create_user("alice", "h", 0) == 1
    assert len(await rows(pg_schema, "SELECT version FROM schema_migrations")) == versions[0]


async def test_nodes_starting_together_on_a_new_schema_share_it(pg_schema: str) -> None:
    stores = [PostgresStore(PG_DSN, pg_config(pg_schema, write_lanes=1, pool_size=1)) for _ in range(3)]
    try:
        await asyncio.gather(*(s.open() for s in stores))
        ids = await asyncio.gather(*(s.create_user(f"u{i}", "h", 0) for i, s in enumerate(stores)))
        assert sorted(ids) == [1, 2, 3]
        assert [u.username for u in await stores[0].list_users(10)] == [f"u{ids.index(i)}" for i in (1, 2, 3)]
    finally:
        for store in stores:
            await store.close()


async def test_open_fails_fast_and_retryably_without_a_database() -> None:
    store = PostgresStore("postgresql://postgres@127.0.0.1:1/test", PostgresConfig(schema="t_unused",
                                                                                   connect_timeout=2))
    with pytest.raises(StoreUnavailable):
        await store.open()
    await store.close()


# ------------------------------------------------------------------------------------------------ two nodes


async def test_two_nodes_appending_to_one_conversation_get_unique_gap_free_seqs(pg_schema: str) -> None:
    async with pg_store(pg_schema) as one, pg_store(pg_schema) as two:
        alice, bob = await one.create_user("alice", "h", 0), await two.create_user("bob", "h", 0)
        conv = f"d:{alice}:{bob}"
        group = await one.create_group(alice, "team", [bob], 1, 10)
        gconv = group.group.conversation_id
        futures: dict[str, list[asyncio.Future[AppendResult]]] = {"one": [], "two": [], "g1": [], "g2": []}
        for i in range(400):
            futures["one"].append(one.append_direct(msg(conv, alice, bob, f"a{i}")))
            futures["two"].append(two.append_direct(msg(conv, bob, alice, f"b{i}")))
            futures["g1"].append(one.append_group(gmsg(gconv, alice, f"ga{i}")))
            futures["g2"].append(two.append_group(gmsg(gconv, bob, f"gb{i}")))
            if i % 50 == 0:
                await asyncio.sleep(0)  # let batches of both nodes interleave
        results = {name: [r.seq for r in await asyncio.gather(*fs)] for name, fs in futures.items()}

    for first, second, expected in (("one", "two", range(1, 801)), ("g1", "g2", range(2, 802))):
        seqs = results[first] + results[second]
        assert sorted(seqs) == list(expected), (first, second)
        assert results[first] == sorted(results[first]) and results[second] == sorted(results[second])
    messages = await stored(pg_schema, conv)
    assert sorted(messages.values()) == list(range(1, 801))
    assert all(messages[f"a{i}"] == seq for i, seq in enumerate(results["one"]))
    (last,) = await rows(pg_schema, "SELECT last_seq FROM conversations WHERE conversation_id = $1", gconv)
    assert last["last_seq"] == 801


async def test_the_same_message_through_two_nodes_at_once_is_stored_once(pg_schema: str) -> None:
    async with pg_store(pg_schema) as one, pg_store(pg_schema) as two:
        alice, bob, carol = [await one.create_user(n, "h", 0) for n in ("alice", "bob", "carol")]
        to_bob, to_carol = f"d:{alice}:{bob}", f"d:{alice}:{carol}"
        pairs = []
        for i in range(300):
            # Same conversation (the seq lock serializes them) and, for every third id, another conversation too
            # (only the idempotency index stands between the two).
            other = to_carol if i % 3 == 0 else to_bob
            pairs.append((one.append_direct(msg(to_bob, alice, bob, f"x{i}")),
                          two.append_direct(msg(other, alice, carol if other == to_carol else bob, f"x{i}"))))
            if i % 20 == 0:
                await asyncio.sleep(0)
        outcomes = [await asyncio.gather(a, b, return_exceptions=True) for a, b in pairs]

    for i, (a, b) in enumerate(outcomes):
        if i % 3 == 0:  # the same id for two conversations: one is stored, the other is no retry of it
            assert sorted(type(r).__name__ for r in (a, b)) == ["AppendResult", "IdempotencyConflict"], (i, a, b)
            continue
        assert isinstance(a, AppendResult) and isinstance(b, AppendResult), (i, a, b)
        assert sorted([a.duplicate, b.duplicate]) == [False, True], i
        assert (a.conversation_id, a.seq) == (b.conversation_id, b.seq), i
    bob_messages, carol_messages = await stored(pg_schema, to_bob), await stored(pg_schema, to_carol)
    assert len(bob_messages) + len(carol_messages) == 300
    for messages in (bob_messages, carol_messages):
        assert sorted(messages.values()) == list(range(1, len(messages) + 1))
    conversations = await rows(pg_schema, "SELECT conversation_id, last_seq FROM conversations")
    assert {r["conversation_id"]: r["last_seq"] for r in conversations} == {
        c: len(m) for c, m in ((to_bob, bob_messages), (to_carol, carol_messages)) if m}


async def test_events_through_two_nodes_apply_once_and_in_seq_order(pg_schema: str) -> None:
    async with pg_store(pg_schema) as one, pg_store(pg_schema) as two:
        alice, bob = await one.create_user("alice", "h", 0), await one.create_user("bob", "h", 0)
        conv = f"d:{alice}:{bob}"
        for i in range(20):
            await one.append_direct(msg(conv, alice, bob, f"m{i}", f"text {i}"))
        futures = []
        for target in range(1, 11):  # the same recall through both nodes at once
            request = EventAppend("recall", conv, alice, target, f"r{target}", 5, "", 60_000)
            futures += [one.append_event(request), two.append_event(request)]
        for target in range(11, 21):  # two different edits of one message, one through each node
            for node, name in ((one, "one"), (two, "two")):
                futures.append(node.append_event(EventAppend("edit", conv, alice, target, f"e{target}{name}", 5,
                                                             f"{name} {target}")))
        outcomes = await asyncio.gather(*futures)
        page = await one.history(bob, conv, after=None, before=None, limit=1000)

    recalls = outcomes[:20]
    for first, second in zip(recalls[::2], recalls[1::2], strict=True):
        assert sorted([first[0].duplicate, second[0].duplicate]) == [False, True]
        assert first[0].seq == second[0].seq and first[1] == second[1]
    by_seq = {m.seq: m for m in page.messages}
    assert sorted(by_seq) == list(range(1, 20 + 10 + 20 + 1))  # 20 messages, 10 recalls, 20 edits: no gap
    assert all(by_seq[t].body == {"recalled": True} for t in range(1, 11))
    for target in range(11, 21):
        edits = [m for m in page.messages if m.body.get("edit", {}).get("seq") == target]
        assert len(edits) == 2
        assert by_seq[target].body["text"] == edits[-1].body["edit"]["text"]  # the later edit wins


async def test_crossing_batches_of_two_nodes_do_not_deadlock(pg_schema: str, caplog: pytest.LogCaptureFixture
                                                              ) -> None:
    caplog.set_level(logging.INFO, logger="pica.store.postgres_lanes")
    async with pg_store(pg_schema, write_lanes=1) as one, pg_store(pg_schema, write_lanes=1) as two:
        ids = [await one.create_user(f"u{i}", "h", 0) for i in range(5)]
        convs = [(f"d:{ids[0]}:{peer}", peer) for peer in ids[1:]]
        futures = []
        for round_ in range(100):
            for conv, peer in convs:  # one node walks the conversations forwards, the other backwards
                futures.append(one.append_direct(msg(conv, ids[0], peer, f"f{round_}{conv}")))
            for conv, peer in reversed(convs):
                futures.append(two.append_direct(msg(conv, peer, ids[0], f"r{round_}{conv}")))
            await asyncio.sleep(0)
        results = await asyncio.gather(*futures)
    assert len(results) == 800 and not any(r.duplicate for r in results)
    # Batches lock conversations in one global order: no deadlock even needs the retry.
    assert not [r for r in caplog.records if "deadlock" in r.getMessage()]
    for conv, _ in convs:
        assert sorted((await stored(pg_schema, conv)).values()) == list(range(1, 201))


async def test_a_member_removed_through_another_node_never_posts_after_the_notice(pg_schema: str) -> None:
    async with pg_store(pg_schema, max_batch=8) as one, pg_store(pg_schema, max_batch=8) as two:
        alice, bob = await one.create_user("alice", "h", 0), await one.create_user("bob", "h", 0)
        group = (await one.create_group(alice, "team", [bob], 1, 10)).group
        sends = [two.append_group(gmsg(group.conversation_id, bob, f"b{i}")) for i in range(400)]
        await sends[0]  # the removal lands while bob's later messages are still queued or committing
        change = await one.group_action(GroupAction("remove", alice, group.group_id, 2, user_ids=(bob,)))
        outcomes = await asyncio.gather(*sends, return_exceptions=True)
    accepted = [o.seq for o in outcomes if isinstance(o, AppendResult)]
    refused = [o for o in outcomes if not isinstance(o, AppendResult)]
    assert all(isinstance(o, Forbidden) for o in refused)
    assert accepted and refused
    assert change.notice is not None
    assert accepted == list(range(2, change.notice.seq))  # all before the notice, in order, no gap


# ------------------------------------------------------------------------------------------------ round trips


class Recording:
    """A lane's asyncpg connection that records the statements sent through it, by name (BEGIN and COMMIT as
    they are): a round trip each."""

    def __init__(self, conn: Any, sent: list[str]) -> None:
        self._conn, self._sent = conn, sent
        self._names = {s.sql: name for name, s in sql_postgres.STATEMENTS.items()}

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._conn, name)
        if name not in ("execute", "fetch", "fetchrow", "fetchval", "executemany"):
            return attr

        def recorded(query: str, *args: Any, **kwargs: Any) -> Any:
            self._sent.append(self._names.get(query, query))
            return attr(query, *args, **kwargs)

        return recorded


async def test_a_batch_of_appends_takes_four_round_trips_five_with_a_group(pg_schema: str) -> None:
    """BEGIN, one statement for the facts that need no lock and the conversations' locks, one that stores, COMMIT;
    a group's member rows are read in a statement of their own after the lock (see the next tests)."""
    async with pg_store(pg_schema, write_lanes=1) as store:
        alice, bob, carol = [await store.create_user(n, "h", 0) for n in ("alice", "bob", "carol")]
        to_bob, to_carol = f"d:{alice}:{bob}", f"d:{alice}:{carol}"
        gconv = (await store.create_group(alice, "team", [bob], 1, 10)).group.conversation_id
        await store.append_direct(msg(to_bob, alice, bob, "first"))
        await store.append_direct(msg(to_carol, alice, carol, "second"))
        sent: list[str] = []
        lane = store._lanes[0]
        lane._conn = Recording(lane._conn, sent)
        direct = [msg(to_bob, alice, bob, f"a{i}") for i in range(5)] + [msg(to_carol, carol, alice, "c")]
        results = await asyncio.gather(*(store.append_direct(m) for m in [*direct, direct[0]]))
        assert [r.seq for r in results] == [2, 3, 4, 5, 6, 2, 2] and results[-1].duplicate
        assert sent == ["BEGIN", "append_facts", "store_messages", "COMMIT"]
        sent.clear()
        await asyncio.gather(store.append_group(gmsg(gconv, bob, "g")),
                             store.append_direct(msg(to_bob, bob, alice, "b")))
        assert sent == ["BEGIN", "append_facts", "group_senders", "store_messages", "COMMIT"]


async def test_a_batch_waiting_behind_another_is_begun_by_its_commit_and_an_idle_lane_holds_no_transaction(
        pg_schema: str) -> None:
    """Under load a batch costs three round trips: its BEGIN goes with the previous batch's COMMIT. The last batch
    commits alone, so an idle lane is never left in a transaction."""
    async with pg_store(pg_schema, write_lanes=1, max_batch=2) as store:
        alice, bob = await store.create_user("alice", "h", 0), await store.create_user("bob", "h", 0)
        conv = f"d:{alice}:{bob}"
        await store.append_direct(msg(conv, alice, bob, "first"))
        sent: list[str] = []
        lane = store._lanes[0]
        lane._conn = Recording(lane._conn, sent)
        results = await asyncio.gather(*(store.append_direct(msg(conv, alice, bob, f"m{i}")) for i in range(6)))
        assert [r.seq for r in results] == [2, 3, 4, 5, 6, 7]
        batch = ["append_facts", "store_messages"]
        assert sent == ["BEGIN", *batch, "COMMIT; BEGIN", *batch, "COMMIT; BEGIN", *batch, "COMMIT"]
        assert not lane._conn.is_in_transaction()
        # A batch that fails in a transaction its predecessor began is rolled back and replayed op by op, as usual.
        sent.clear()

        async def failing(conn: Any) -> None:
            await conn.execute("SELECT 1 / 0")

        first = [store.append_direct(msg(conv, alice, bob, f"n{i}")) for i in range(3)]
        broken: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        store._submit(LaneOp(conv, broken, run=failing))
        assert [r.seq for r in await asyncio.gather(*first)] == [8, 9, 10]
        with pytest.raises(InternalError):
            await broken
        assert sent == ["BEGIN", *batch, "COMMIT; BEGIN", *batch, "SELECT 1 / 0", "ROLLBACK",  # n0 n1, then n2 failing
                        "BEGIN", *batch, "COMMIT", "BEGIN", "SELECT 1 / 0", "ROLLBACK"]  # replayed one by one
        assert not lane._conn.is_in_transaction()
    assert sorted((await stored(pg_schema, conv)).values()) == list(range(1, 11))


async def lane_waits_for_a_lock(store: PostgresStore) -> None:
    admin = await connect_admin()
    try:
        deadline = time.monotonic() + DEADLINE
        while not await admin.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1::int[])"
                                       " AND wait_event_type = 'Lock'", store.lane_backend_pids()):
            assert time.monotonic() < deadline, "the lane never waited for the lock"
            await asyncio.sleep(0.01)
    finally:
        await admin.close()


async def committed_while_a_lane_waits(store: PostgresStore, schema: str, conv: str,
                                       changes: Sequence[tuple[str, tuple[Any, ...]]],
                                       submit: Callable[[], asyncio.Future[T]]) -> T:
    """``submit()``'s outcome, submitted while another transaction holds ``conv``'s lock and makes ``changes``
    (statements and their arguments); that transaction commits once the lane waits for the lock."""
    holder = await connect_admin()
    try:
        await holder.execute(f'SET search_path = "{schema}"')
        async with holder.transaction():
            await holder.execute("SELECT 1 FROM conversations WHERE conversation_id = $1 FOR UPDATE", conv)
            for statement, args in changes:
                await holder.execute(statement, *args)
            pending = submit()
            await lane_waits_for_a_lock(store)
        return await pending
    finally:
        await holder.close()


def stored_by_holder(conv: str, sender: int, cmid: str, seq: int) -> list[tuple[str, tuple[Any, ...]]]:
    """The changes of a message "hi" stored at ``seq`` (timestamp 7) by a transaction of its own."""
    return [("UPDATE conversations SET last_seq = $2 WHERE conversation_id = $1", (conv, seq)),
            ("INSERT INTO messages (conversation_id, seq, sender, client_msg_id, ts, body)"
             " VALUES ($1, $2, $3, $4, 7, $5)", (conv, seq, sender, cmid, b'{"text":"hi"}'))]


async def test_what_was_committed_while_the_batch_waited_for_its_lock_is_taken_into_account(
        pg_schema: str, caplog: pytest.LogCaptureFixture) -> None:
    """The batch's one read takes its snapshot before it waits for the conversation's lock. The last seq comes from
    the locked row as the lock's holder left it (no failed insert, no replay); a message that holder committed under
    the same client id is missed by the read, found by the insert, and the retry answers with it."""
    caplog.set_level(logging.INFO, logger="pica.store.postgres_lanes")
    async with pg_store(pg_schema, write_lanes=1) as store:
        alice, bob = await store.create_user("alice", "h", 0), await store.create_user("bob", "h", 0)
        conv = f"d:{alice}:{bob}"
        await store.append_direct(msg(conv, alice, bob, "first"))
        after = await committed_while_a_lane_waits(store, pg_schema, conv, stored_by_holder(conv, alice, "w", 2),
                                                   lambda: store.append_direct(msg(conv, bob, alice, "z")))
        assert (after.seq, after.duplicate) == (3, False)
        again = await committed_while_a_lane_waits(store, pg_schema, conv, stored_by_holder(conv, alice, "x", 4),
                                                   lambda: store.append_direct(msg(conv, alice, bob, "x")))
        assert (again.seq, again.ts, again.duplicate) == (4, 7, True)
        assert (await store.append_direct(msg(conv, alice, bob, "y"))).seq == 5
    assert await stored(pg_schema, conv) == {"first": 1, "w": 2, "z": 3, "x": 4, "y": 5}
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_a_group_sender_removed_while_the_batch_waited_for_its_lock_is_refused(pg_schema: str) -> None:
    """Member rows are read after the conversation's lock, in a statement of their own: one fused with the lock would
    see the membership of before the wait."""
    async with pg_store(pg_schema, write_lanes=1) as store:
        alice, bob = await store.create_user("alice", "h", 0), await store.create_user("bob", "h", 0)
        gconv = (await store.create_group(alice, "team", [bob], 1, 10)).group.conversation_id
        removal = [("DELETE FROM members WHERE conversation_id = $1 AND user_id = $2", (gconv, bob))]
        with pytest.raises(Forbidden):
            await committed_while_a_lane_waits(store, pg_schema, gconv, removal,
                                               lambda: store.append_group(gmsg(gconv, bob, "late")))
    assert "late" not in await stored(pg_schema, gconv)


# ------------------------------------------------------------------------------------------------ lost connections


async def kill(pids: Sequence[int | None]) -> None:
    admin = await connect_admin()
    try:
        await admin.execute("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid",
                            [p for p in pids if p is not None])
    finally:
        await admin.close()


async def pool_pids(schema: str) -> list[int]:
    admin = await connect_admin()
    try:
        found = await admin.fetch("SELECT pid FROM pg_stat_activity WHERE application_name = $1", f"pica-pool {schema}")
        return [r["pid"] for r in found]
    finally:
        await admin.close()


async def test_a_batch_cut_by_a_lost_connection_fails_retryably_and_retries_are_exactly_once(pg_schema: str) -> None:
    async with pg_store(pg_schema, write_lanes=1) as store:
        alice, bob = await store.create_user("alice", "h", 0), await store.create_user("bob", "h", 0)
        conv = f"d:{alice}:{bob}"
        await store.append_direct(msg(conv, alice, bob, "first"))
        (lane_pid,) = store.lane_backend_pids()
        holder = await connect_admin()
        try:
            await holder.execute(f'SET search_path = "{pg_schema}"')
            async with holder.transaction():
                # Hold the conversation's row lock: the lane's next batch is in flight, waiting, when it is killed.
                await holder.execute("SELECT 1 FROM conversations WHERE conversation_id = $1 FOR UPDATE", conv)
                cut = [store.append_direct(msg(conv, alice, bob, f"cut{i}")) for i in range(10)]
                deadline = time.monotonic() + DEADLINE
                while (await holder.fetchval("SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1",
                                             lane_pid)) != "Lock":
                    assert time.monotonic() < deadline, "the batch never reached the lock"
                    await asyncio.sleep(0.01)
                await kill([lane_pid])
                outcomes = await asyncio.gather(*cut, return_exceptions=True)
        finally:
            await holder.close()
        assert all(isinstance(o, StoreUnavailable) for o in outcomes), outcomes
        assert await stored(pg_schema, conv) == {"first": 1}  # nothing of the cut batch committed

        retried = await asyncio.gather(*(store.append_direct(msg(conv, alice, bob, f"cut{i}")) for i in range(10)))
        again = await asyncio.gather(*(store.append_direct(msg(conv, alice, bob, f"cut{i}")) for i in range(10)))
        assert [r.seq for r in retried] == [r.seq for r in again] == list(range(2, 12))
        assert not any(r.duplicate for r in retried) and all(r.duplicate for r in again)
        assert store.lane_backend_pids() != [lane_pid]


async def test_connections_killed_under_load_never_ack_without_a_row_and_recover(pg_schema: str) -> None:
    async with pg_store(pg_schema, max_batch=16) as store:
        alice, bob = await store.create_user("alice", "h", 0), await store.create_user("bob", "h", 0)
        conv = f"d:{alice}:{bob}"
        acked: dict[str, int] = {}
        failed: list[str] = []

        async def send(cmid: str) -> None:
            try:
                result = await store.append_direct(msg(conv, alice, bob, cmid))
            except StoreUnavailable:
                failed.append(cmid)
            else:
                acked[cmid] = result.seq

        async def writer(start: int) -> None:
            for i in range(start, start + 300):
                await asyncio.gather(*(send(f"m{i}-{j}") for j in range(5)))

        writers = [asyncio.create_task(writer(k * 1000)) for k in range(3)]
        for _ in range(4):
            await asyncio.sleep(0.05)
            await kill([*store.lane_backend_pids(), *await pool_pids(pg_schema)])
        await asyncio.gather(*writers)

        committed = await stored(pg_schema, conv)
        assert all(committed.get(cmid) == seq for cmid, seq in acked.items())  # no ack without its row
        assert sorted(committed.values()) == list(range(1, len(committed) + 1))

        # The client retries with the same ids: exactly once in the end, and the store works again by itself.
        retried = await asyncio.gather(*(store.append_direct(msg(conv, alice, bob, cmid)) for cmid in failed))
        for cmid, result in zip(failed, retried, strict=True):
            assert result.duplicate == (cmid in committed)
        final = await stored(pg_schema, conv)
        assert set(final) == set(acked) | set(failed)
        assert sorted(final.values()) == list(range(1, len(final) + 1))
        assert (await store.history(bob, conv, after=None, before=None, limit=1)).messages[0].seq == len(final)


async def test_an_unreachable_database_fails_appends_at_once_and_the_lanes_come_back(pg_schema: str) -> None:
    async with pg_store(pg_schema) as store:
        alice, bob = await store.create_user("alice", "h", 0), await store.create_user("bob", "h", 0)
        conv = f"d:{alice}:{bob}"
        assert (await store.append_direct(msg(conv, alice, bob, "before"))).seq == 1
        real_dsn, store.dsn = store.dsn, "postgresql://postgres@127.0.0.1:1/test"  # lanes reconnect here: refused
        await kill(store.lane_backend_pids())
        for attempt in range(100):
            with pytest.raises(StoreUnavailable):
                await store.append_direct(msg(conv, alice, bob, f"down{attempt}"))
            if None in store.lane_backend_pids():
                break
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):  # while the lane is down, an append fails at once
            await store.append_direct(msg(conv, alice, bob, "fast"))
        assert time.monotonic() - started < 0.5

        store.dsn = real_dsn
        deadline = time.monotonic() + DEADLINE
        while True:
            try:
                result = await store.append_direct(msg(conv, alice, bob, "after"))
                break
            except StoreUnavailable:
                assert time.monotonic() < deadline, "the lane did not reconnect"
                await asyncio.sleep(0.05)
        assert not result.duplicate
        assert await stored(pg_schema, conv) == {"before": 1, "after": 2}


async def test_close_commits_everything_already_submitted(pg_schema: str) -> None:
    store = PostgresStore(PG_DSN, pg_config(pg_schema))
    await store.open()
    alice, bob = await store.create_user("alice", "h", 0), await store.create_user("bob", "h", 0)
    conv = f"d:{alice}:{bob}"
    futures = [store.append_direct(msg(conv, alice, bob, f"m{i}")) for i in range(500)]
    await store.close()
    assert all(f.done() and not f.cancelled() and f.exception() is None for f in futures)
    assert [f.result().seq for f in futures] == list(range(1, 501))
    with pytest.raises(StoreUnavailable):
        store.append_direct(msg(conv, alice, bob, "late"))
    assert len(await stored(pg_schema, conv)) == 500


async def test_backends_terminated_during_reads_and_writes_answer_store_unavailable_or_succeed(
        pg_schema: str, caplog: pytest.LogCaptureFixture) -> None:
    """Protocol 19: a broken connection is ``store_unavailable`` (retryable), never ``internal``, whatever state the
    driver was caught in; a read is retried once on a fresh connection, so one kill between reads costs nothing."""
    async with pg_store(pg_schema, pool_size=4) as store:
        alice, bob = await store.create_user("alice", "h", 0), await store.create_user("bob", "h", 0)
        conv = f"d:{alice}:{bob}"
        for i in range(20):
            await store.append_direct(msg(conv, alice, bob, f"seed{i}"))
        outcomes: list[BaseException | None] = []
        stop = asyncio.Event()

        async def attempt(op: Any) -> None:
            try:
                await op
            except Exception as exc:
                outcomes.append(exc)
            else:
                outcomes.append(None)

        async def worker(n: int) -> None:
            i = 0
            while not stop.is_set():
                i += 1
                await asyncio.gather(
                    attempt(store.history(bob, conv, after=None, before=None, limit=50)),
                    attempt(store.sync(bob, {}, 50)),
                    attempt(store.list_conversations(bob, limit=10, before_ts=None)),
                    attempt(store.search(bob, "hi", conversation_id=None, limit=10)),
                    attempt(store.mark_read(bob, conv, i)),
                    attempt(store.append_direct(msg(conv, alice, bob, f"w{n}-{i}"))),
                )

        workers = [asyncio.create_task(worker(n)) for n in range(3)]
        with caplog.at_level(logging.ERROR, logger="pica"):
            for _ in range(8):
                await asyncio.sleep(0.05)
                await kill([*store.lane_backend_pids(), *await pool_pids(pg_schema)])
            stop.set()
            await asyncio.gather(*workers)
        failures = [o for o in outcomes if o is not None]
        assert failures, "no operation was caught by a kill: the test proved nothing"
        assert all(isinstance(o, StoreUnavailable) for o in failures), {type(o).__name__ for o in failures}
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "a lost connection is not a bug"

        # Idle connections killed between reads: the next read retries on a fresh connection and succeeds.
        await kill(await pool_pids(pg_schema))
        page = await store.history(bob, conv, after=None, before=None, limit=1)
        assert page.messages and await store.list_conversations(bob, limit=10, before_ts=None)
