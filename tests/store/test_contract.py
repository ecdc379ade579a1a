"""The store contract. Every backend runs this suite: the ``store`` fixture yields each backend in turn (SQLite in a
temporary file; PostgreSQL in a schema of its own, see conftest.py). Tests that look inside one backend's files are
named for it and take no ``store``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sqlite3
import threading
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any, Literal

import psutil
import pytest

from pica.config import SqliteConfig
from pica.errors import (
    BadRequest,
    ConversationNotFound,
    Forbidden,
    GroupNotFound,
    IdempotencyConflict,
    MessageNotFound,
    NotFound,
    PicaError,
    UsernameTaken,
    UserNotFound,
)
from pica.protocol.ids import direct_conversation_id
from pica.protocol.tokens import document
from pica.store import messages
from pica.store.append_rules import Original, Recipient
from pica.store.base import (
    DirectAppend,
    EventAppend,
    GroupAction,
    GroupAppend,
    GroupChange,
    MessageRecord,
    Page,
    PresenceAudience,
    PresenceRecord,
    ReadCursors,
    SessionRecord,
    Store,
    UserSettings,
    Viewer,
)
from pica.store.sql_store import SqlStore
from pica.store.sqlite import SqliteStore
from pica.store.sqlite_process import WriterProcess
from tests.store.conftest import pg_store, temporary_schema


@pytest.fixture(params=["sqlite", "sqlite-process", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """Every backend, and SQLite with its writer on a thread of the test's process or in a process of its own."""
    if request.param == "postgresql":
        async with temporary_schema() as schema, pg_store(schema) as backend:
            yield backend
        return
    writer: Literal["process", "thread"] = "process" if request.param == "sqlite-process" else "thread"
    sqlite = SqliteStore(tmp_path / "pica.db", SqliteConfig(max_batch=64, writer=writer))
    await sqlite.open()
    try:
        yield sqlite
    finally:
        await sqlite.close()


async def users(store: Store, *names: str) -> list[int]:
    return [await store.create_user(name, "hash", 0) for name in names]


def notice(change: GroupChange) -> MessageRecord:
    """The notice of a change that has one (every change but an add that only invited)."""
    assert change.notice is not None
    return change.notice


def msg(conversation: str, sender: int, recipient: int, cmid: str, text: str = "hi", ts: int = 1) -> DirectAppend:
    return DirectAppend(conversation, sender, recipient, cmid, json.dumps({"text": text}).encode(), ts)


async def test_usernames_are_unique(store: Store) -> None:
    (alice,) = await users(store, "alice")
    with pytest.raises(UsernameTaken):
        await store.create_user("alice", "other", 0)
    record = await store.get_user_by_name("alice")
    assert record is not None and record.user_id == alice
    assert await store.get_user(alice) == record
    assert await store.get_user(alice + 100) is None


async def test_concurrent_appends_get_gap_free_seqs_in_submission_order(store: Store) -> None:
    alice, bob = await users(store, "alice", "bob")
    results = await asyncio.gather(*(store.append_direct(msg("d:1:2", alice, bob, f"m{i}")) for i in range(300)))
    assert [r.seq for r in results] == list(range(1, 301))
    page = await store.history(bob, "d:1:2", after=None, before=None, limit=1000)
    assert [m.client_msg_id for m in page.messages] == [f"m{i}" for i in range(300)]


async def test_duplicate_returns_original_and_stores_nothing(store: Store) -> None:
    alice, bob = await users(store, "alice", "bob")
    first = await store.append_direct(msg("d:1:2", alice, bob, "x", "first", ts=10))
    again = await store.append_direct(msg("d:1:2", alice, bob, "x", "first", ts=20))
    assert (again.seq, again.ts, again.duplicate, first.duplicate) == (first.seq, 10, True, False)
    # The same id for another body is no retry: refused, and nothing is stored.
    with pytest.raises(IdempotencyConflict):
        await store.append_direct(msg("d:1:2", alice, bob, "x", "changed", ts=30))
    page = await store.history(alice, "d:1:2", after=None, before=None, limit=10)
    assert [m.body for m in page.messages] == [{"text": "first"}]


async def test_a_retry_matches_by_value_and_an_edited_original_takes_any_retry(store: Store) -> None:
    alice, bob = await users(store, "alice", "bob")
    body = b'{"text":"hi","mentions":[2]}'
    first = await store.append_direct(DirectAppend("d:1:2", alice, bob, "k", body, 1))
    reordered = await store.append_direct(DirectAppend("d:1:2", alice, bob, "k", b'{"mentions":[2],"text":"hi"}', 2))
    assert (reordered.seq, reordered.duplicate) == (first.seq, True)  # JSON values compared, not bytes
    await store.append_event(EventAppend("edit", "d:1:2", alice, first.seq, "e1", 3, text="hi!"))
    # Once edited, the stored body no longer says what was sent: a retry to the same conversation gets the ack.
    late = await store.append_direct(DirectAppend("d:1:2", alice, bob, "k", body, 4))
    assert (late.seq, late.duplicate) == (first.seq, True)
    racing = await asyncio.gather(store.append_direct(msg("d:1:2", alice, bob, "twin", "one")),
                                  store.append_direct(msg("d:1:2", alice, bob, "twin", "two")),
                                  return_exceptions=True)
    assert sum(isinstance(r, IdempotencyConflict) for r in racing) == 1  # in one batch or two, one of them wins


async def test_failed_operation_does_not_undo_its_batch(store: Store) -> None:
    alice, bob = await users(store, "alice", "bob")
    ok_before, bad, ok_after = await asyncio.gather(
        store.append_direct(msg("d:1:2", alice, bob, "a")),
        store.append_direct(msg("d:1:999", alice, 999, "b")),
        store.append_direct(msg("d:1:2", alice, bob, "c")),
        return_exceptions=True,
    )
    assert isinstance(bad, UserNotFound)
    assert (ok_before.seq, ok_after.seq) == (1, 2)  # type: ignore[union-attr]
    assert await store.conversation_members("d:1:999") == []


async def test_one_batch_answers_each_send_as_if_sent_alone(store: Store) -> None:
    """Submitted together, these land in one batch transaction: a repeat inside the batch, a refusal between accepted
    messages, and a conversation that both people start in the same batch."""
    alice, bob, carol = await users(store, "alice", "bob", "carol")
    await store.set_blocked(carol, alice, True, 1)
    first, repeat, blocked, bob_starts, alice_answers, after = await asyncio.gather(
        store.append_direct(msg("d:1:2", alice, bob, "same", "one")),
        store.append_direct(msg("d:1:2", alice, bob, "same", "one")),
        store.append_direct(msg("d:1:3", alice, carol, "refused")),
        store.append_direct(msg("d:2:3", bob, carol, "b1")),
        store.append_direct(msg("d:1:2", alice, bob, "a2")),
        store.append_direct(msg("d:2:3", bob, carol, "b2")),
        return_exceptions=True,
    )
    assert isinstance(blocked, Forbidden)
    assert (first.seq, first.duplicate) == (1, False)  # type: ignore[union-attr]
    assert (repeat.seq, repeat.duplicate) == (1, True)  # type: ignore[union-attr]
    assert (alice_answers.seq, bob_starts.seq, after.seq) == (2, 1, 2)  # type: ignore[union-attr]
    page = await store.history(bob, "d:1:2", after=None, before=None, limit=10)
    assert [(m.client_msg_id, m.body) for m in page.messages] == [("same", {"text": "one"}), ("a2", {"text": "hi"})]
    assert await store.conversation_members("d:2:3") == [bob, carol]
    assert await store.conversation_members("d:1:3") == []
    listed = await store.list_conversations(bob, limit=10, before_ts=None)
    (summary,) = [c for c in listed if c.conversation_id == "d:2:3"]
    assert summary.read_seq == 2  # sending marks read, up to the sender's last message of the batch


async def test_history_is_for_members_only(store: Store) -> None:
    alice, bob, eve = await users(store, "alice", "bob", "eve")
    await store.append_direct(msg("d:1:2", alice, bob, "a"))
    with pytest.raises(ConversationNotFound):
        await store.history(eve, "d:1:2", after=None, before=None, limit=10)
    with pytest.raises(ConversationNotFound):
        await store.history(eve, "d:404:405", after=None, before=None, limit=10)


async def test_sync_pages_across_conversations(store: Store) -> None:
    alice, bob, carol = await users(store, "alice", "bob", "carol")
    for i in range(5):
        await store.append_direct(msg("d:1:2", alice, bob, f"ab{i}"))
        await store.append_direct(msg("d:2:3", carol, bob, f"cb{i}"))
    seen: list[tuple[str, int]] = []
    cursors: dict[str, int] = {"d:1:2": 1}
    while True:
        page = await store.sync(bob, cursors, 3)
        assert len(page.messages) <= 3
        for m in page.messages:
            seen.append((m.conversation_id, m.seq))
            cursors[m.conversation_id] = m.seq
        if not page.more:
            break
    assert seen == [("d:1:2", s) for s in range(2, 6)] + [("d:2:3", s) for s in range(1, 6)]
    assert (await store.sync(alice, {"d:1:2": 5}, 10)).messages == []


async def test_a_streamed_sync_reads_what_its_plan_saw_and_no_more(store: Store) -> None:
    """``sync_plan`` once, then ``sync_after`` page by page: the messages after the cursors as :meth:`Store.sync`
    gives them, and nothing committed after the plan (a streamed sync ends at what the user could see then)."""
    alice, bob, carol = await users(store, "alice", "bob", "carol")
    for i in range(5):
        await store.append_direct(msg("d:1:2", alice, bob, f"ab{i}"))
        await store.append_direct(msg("d:2:3", carol, bob, f"cb{i}"))
    pending = await store.sync_plan(bob, {"d:1:2": 1})
    assert pending == [("d:1:2", 1, 5), ("d:2:3", 0, 5)]
    for i in range(3):  # after the plan: pushed live, never streamed
        await store.append_direct(msg("d:1:2", alice, bob, f"late-ab{i}"))
        await store.append_direct(msg("d:2:3", carol, bob, f"late-cb{i}"))
    first = await store.sync_after(bob, pending, 6)
    assert first.more and [(m.conversation_id, m.seq) for m in first.messages] == (
        [("d:1:2", s) for s in range(2, 6)] + [("d:2:3", 1), ("d:2:3", 2)])
    rest = await store.sync_after(bob, [("d:2:3", 2, 5)], 6)
    assert not rest.more and [(m.conversation_id, m.seq) for m in rest.messages] == [("d:2:3", s) for s in (3, 4, 5)]
    assert await store.sync_plan(alice, {"d:1:2": 8}) == []


async def test_delivered_cursor_only_moves_forward_and_is_clamped(store: Store) -> None:
    alice, bob = await users(store, "alice", "bob")
    for i in range(3):
        await store.append_direct(msg("d:1:2", alice, bob, f"m{i}"))
    assert await store.mark_delivered(bob, "d:1:2", 2) == 2
    assert await store.mark_delivered(bob, "d:1:2", 1) is None
    assert await store.mark_delivered(bob, "d:1:2", 1_000) == 3  # acking more than was sent
    assert await store.mark_delivered(bob, "d:1:2", 1_000) is None
    assert await store.mark_delivered(999, "d:1:2", 1) is None
    (summary,) = await store.list_conversations(bob, limit=10, before_ts=None)
    assert (summary.conversation_id, summary.last_seq, summary.delivered_seq) == ("d:1:2", 3, 3)


async def test_sqlite_file_is_a_plain_wal_database(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "pica.db")
    await store.open()
    alice, bob = await users(store, "alice", "bob")
    await store.append_direct(msg("d:1:2", alice, bob, "a"))
    await store.close()
    conn = sqlite3.connect(tmp_path / "pica.db")
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert conn.execute("SELECT count(*) FROM messages").fetchone() == (1,)
    conn.close()


async def test_an_operation_failing_unexpectedly_fails_alone_and_the_store_goes_on(store: Store) -> None:
    alice, bob = await users(store, "alice", "bob")
    good, bad = await asyncio.gather(
        store.append_direct(msg("d:1:2", alice, bob, "ok")),
        store.append_direct(msg("d:1:x", alice, 2**70, "overflow")),  # no driver stores a 71-bit integer
        return_exceptions=True,
    )
    assert not isinstance(good, BaseException) and good.seq == 1
    assert isinstance(bad, PicaError)
    assert (await store.append_direct(msg("d:1:2", alice, bob, "after"))).seq == 2


# ------------------------------------------------------------------------------------------------ more helpers


def body(text: str) -> bytes:
    return json.dumps({"text": text}).encode()


def gmsg(conversation: str, sender: int, cmid: str, text: str = "hi", ts: int = 1, search: str | None = None
         ) -> GroupAppend:
    words = document({"text": text if search is None else search})
    return GroupAppend(conversation, sender, cmid, body(text), ts, words)


def smsg(conversation: str, sender: int, recipient: int, cmid: str, text: str, ts: int = 1) -> DirectAppend:
    """A searchable 1:1 message."""
    return DirectAppend(conversation, sender, recipient, cmid, body(text), ts, document({"text": text}))


def action(kind: str, actor: int, group_id: int, ts: int = 5, **fields: Any) -> GroupAction:
    return GroupAction(kind, actor, group_id, ts, **fields)


async def texts(page: Page | list[MessageRecord]) -> list[str]:
    messages = page.messages if isinstance(page, Page) else page
    return [str(m.body.get("text", m.body)) for m in messages]


async def cursors_of(store: Store, user_id: int, conversation_id: str) -> dict[int, tuple[int, int]]:
    return {m.user_id: (m.delivered_seq, m.read_seq) for m in await store.member_cursors(user_id, conversation_id)}


# ------------------------------------------------------------------------------------------------ accounts, admin


async def test_users_list_in_pages_and_bans_show(store: Store) -> None:
    ids = await users(store, "u1", "u2", "u3", "u4")
    first = await store.list_users(2)
    assert [u.user_id for u in first] == ids[:2]
    assert [u.user_id for u in await store.list_users(10, after_id=first[-1].user_id)] == ids[2:]
    await store.set_banned(ids[1], True)
    await store.set_banned(ids[3], True)
    assert [u.username for u in await store.list_users(10, banned_only=True)] == ["u2", "u4"]
    await store.set_banned(ids[3], False)
    record = await store.get_user(ids[1])
    assert record is not None and record.banned and record.username == "u2" and record.password_hash == "hash"
    assert [u.user_id for u in await store.list_users(10, banned_only=True)] == [ids[1]]
    with pytest.raises(UserNotFound):
        await store.set_banned(ids[3] + 100, True)
    assert await store.get_user_by_name("nobody") is None


# ------------------------------------------------------------------------------------------------ 1:1 messages


async def test_first_message_creates_the_conversation_and_marks_it_read_for_the_sender(store: Store) -> None:
    alice, bob = await users(store, "alice", "bob")
    assert await store.conversation_members("d:1:2") == []
    first = await store.append_direct(msg("d:1:2", alice, bob, "a", ts=7))
    assert (first.conversation_id, first.seq, first.ts, first.duplicate) == ("d:1:2", 1, 7, False)
    assert await store.conversation_members("d:1:2") == [alice, bob]
    await store.append_direct(msg("d:1:2", bob, alice, "b", ts=8))
    assert await cursors_of(store, alice, "d:1:2") == {alice: (1, 1), bob: (2, 2)}
    with pytest.raises(ConversationNotFound):
        await store.member_cursors(999, "d:1:2")


async def test_a_user_can_write_to_themself(store: Store) -> None:
    (alice,) = await users(store, "alice")
    result = await store.append_direct(msg("d:1:1", alice, alice, "note"))
    assert result.seq == 1
    assert await store.conversation_members("d:1:1") == [alice]
    page = await store.history(alice, "d:1:1", after=None, before=None, limit=10)
    assert await texts(page) == ["hi"]


async def test_duplicates_are_per_sender_forever_and_across_conversations(store: Store) -> None:
    alice, bob, carol = await users(store, "alice", "bob", "carol")
    first = await store.append_direct(msg("d:1:2", alice, bob, "same", ts=3))
    with pytest.raises(IdempotencyConflict):  # the id is alice's forever: not reusable for another conversation
        await store.append_direct(msg("d:1:3", alice, carol, "same", ts=9))
    again = await store.append_direct(msg("d:1:2", alice, bob, "same", ts=9))
    assert (again.conversation_id, again.seq, again.ts, again.duplicate) == ("d:1:2", first.seq, 3, True)
    assert await store.conversation_members("d:1:3") == []
    other = await store.append_direct(msg("d:1:2", bob, alice, "same"))  # another sender may use the same id
    assert (other.seq, other.duplicate) == (2, False)
    both = await asyncio.gather(store.append_direct(msg("d:2:3", bob, carol, "twice")),
                                store.append_direct(msg("d:2:3", bob, carol, "twice")))
    assert [(r.seq, r.duplicate) for r in both] == [(1, False), (1, True)]


async def test_blocked_senders_and_strangers_of_contacts_only_users_are_refused(store: Store) -> None:
    alice, bob, carol = await users(store, "alice", "bob", "carol")
    await store.set_blocked(bob, alice, True, 1)
    with pytest.raises(Forbidden, match="does not accept messages from you"):
        await store.append_direct(msg("d:1:2", alice, bob, "a"))
    assert await store.conversation_members("d:1:2") == []
    assert (await store.append_direct(msg("d:2:3", bob, carol, "b"))).seq == 1  # the blocker still writes
    await store.set_blocked(bob, alice, False, 2)
    assert (await store.append_direct(msg("d:1:2", alice, bob, "c"))).seq == 1

    await store.set_only_contacts(carol, True)
    assert await store.get_only_contacts(carol) and not await store.get_only_contacts(alice)
    with pytest.raises(Forbidden):
        await store.append_direct(msg("d:1:3", alice, carol, "d"))
    assert await store.contact_request(alice, carol, 3) == "outgoing"
    with pytest.raises(Forbidden):  # a request is not enough
        await store.append_direct(msg("d:1:3", alice, carol, "e"))
    assert await store.contact_respond(carol, alice, True, 4) == "accepted"
    assert (await store.append_direct(msg("d:1:3", alice, carol, "f"))).seq == 1


async def test_one_read_answers_a_batchs_originals_recipients_and_locked_seqs(store: Store) -> None:
    """``append_facts``, the read a batch is planned on (one statement on PostgreSQL, with the conversations' locks),
    answers each kind of fact right, whatever else the read asks: a blocked sender, a contacts-only recipient
    towards a stranger and towards a contact, a missing recipient, re-sent client ids (one of an edited original),
    and the last seqs of existing conversations only."""
    alice, bob, carol, dave, eve = await users(store, "alice", "bob", "carol", "dave", "eve")
    await store.set_blocked(bob, alice, True, 1)
    for contacts_only in (carol, dave):
        await store.set_only_contacts(contacts_only, True)
    await store.contact_request(alice, dave, 2)
    await store.contact_respond(dave, alice, True, 3)
    to_eve = direct_conversation_id(alice, eve)
    kept = await store.append_direct(msg(to_eve, alice, eve, "kept", "first", ts=10))
    edited = await store.append_direct(msg(to_eve, alice, eve, "edited", "second", ts=11))
    await store.append_event(EventAppend("edit", to_eve, alice, edited.seq, "e1", 12, text="changed"))
    group = notice(await store.create_group(alice, "team", [eve], 13, 10)).conversation_id
    assert isinstance(store, SqlStore)
    originals, recipients, last_seqs = await store._read_txn(partial(
        messages.append_facts, [(alice, "edited"), (alice, "kept"), (alice, "new"), (eve, "kept")],
        [(bob, alice), (carol, alice), (dave, alice), (eve, alice), (eve + 100, alice)],
        sorted([to_eve, direct_conversation_id(alice, bob), group])))
    assert originals == {(alice, "kept"): Original(to_eve, kept.seq, 10, {"text": "first"}),
                         (alice, "edited"): Original(to_eve, edited.seq, 11, None)}
    assert recipients == {(bob, alice): Recipient(blocks_sender=True, only_contacts_refuses=False),
                          (carol, alice): Recipient(blocks_sender=False, only_contacts_refuses=True),
                          (dave, alice): Recipient(blocks_sender=False, only_contacts_refuses=False),
                          (eve, alice): Recipient(blocks_sender=False, only_contacts_refuses=False)}
    assert last_seqs == {to_eve: 3, group: 1}
    # The same facts through the batch: one submission of every case at once.
    outcomes = await asyncio.gather(
        store.append_direct(msg(direct_conversation_id(alice, bob), alice, bob, "to-bob")),
        store.append_direct(msg(direct_conversation_id(alice, carol), alice, carol, "to-carol")),
        store.append_direct(msg(direct_conversation_id(alice, dave), alice, dave, "to-dave")),
        store.append_direct(msg(to_eve, alice, eve, "kept", "first", ts=20)),
        store.append_direct(msg(to_eve, alice, eve, "edited", "anything", ts=21)),
        store.append_direct(msg(to_eve, alice, eve, "new", ts=22)),
        store.append_group(GroupAppend(group, eve, "in-group", b'{"text":"hi"}', 23)),
        store.append_direct(msg(direct_conversation_id(alice, eve + 100), alice, eve + 100, "nobody")),
        return_exceptions=True)
    assert [type(o).__name__ for o in outcomes[:3]] == ["Forbidden", "Forbidden", "AppendResult"]
    assert [(o.seq, o.duplicate) for o in outcomes[2:7] if not isinstance(o, BaseException)] == [
        (1, False), (kept.seq, True), (edited.seq, True), (4, False), (2, False)]
    assert isinstance(outcomes[7], UserNotFound)


async def test_bodies_round_trip_exactly(store: Store) -> None:
    alice, bob = await users(store, "alice", "bob")
    original = {"text": "héllo 🦜 \u0000 \\ \"q\" 'a'", "n": [1, -2.5, 9007199254740991, None, True],
                "nested": {"k": {"deep": ["x", {}]}}, "empty": "", "zero": 0.0, "unicode_key_é": "\u2028"}
    raw = json.dumps(original, ensure_ascii=False).encode()
    await store.append_direct(DirectAppend("d:1:2", alice, bob, "b", raw, 1))
    (message,) = (await store.history(bob, "d:1:2", after=None, before=None, limit=10)).messages
    assert message.body == original
    assert (message.sender, message.client_msg_id, message.ts) == (alice, "b", 1)


# ------------------------------------------------------------------------------------------------ history, cursors


async def test_history_pages_both_ways(store: Store) -> None:
    alice, bob = await users(store, "alice", "bob")
    for i in range(10):
        await store.append_direct(msg("d:1:2", alice, bob, f"m{i}"))
    newest = await store.history(bob, "d:1:2", after=None, before=None, limit=4)
    assert ([m.seq for m in newest.messages], newest.more) == ([7, 8, 9, 10], True)
    older = await store.history(bob, "d:1:2", after=None, before=7, limit=4)
    assert ([m.seq for m in older.messages], older.more) == ([3, 4, 5, 6], True)
    oldest = await store.history(bob, "d:1:2", after=None, before=3, limit=4)
    assert ([m.seq for m in oldest.messages], oldest.more) == ([1, 2], False)
    forward = await store.history(bob, "d:1:2", after=5, before=None, limit=3)
    assert ([m.seq for m in forward.messages], forward.more) == ([6, 7, 8], True)
    end = await store.history(bob, "d:1:2", after=8, before=None, limit=3)
    assert ([m.seq for m in end.messages], end.more) == ([9, 10], False)
    between = await store.history(bob, "d:1:2", after=2, before=6, limit=10)
    assert [m.seq for m in between.messages] == [3, 4, 5]


async def test_read_cursor_moves_forward_clamped_and_carries_delivered(store: Store) -> None:
    alice, bob, eve = await users(store, "alice", "bob", "eve")
    for i in range(4):
        await store.append_direct(msg("d:1:2", alice, bob, f"m{i}"))
    assert await store.mark_read(bob, "d:1:2", 2) == ReadCursors(delivered=2, read=2)
    assert await cursors_of(store, bob, "d:1:2") == {alice: (4, 4), bob: (2, 2)}
    assert await store.mark_read(bob, "d:1:2", 1) is None
    assert await store.mark_delivered(bob, "d:1:2", 4) == 4
    assert await store.mark_read(bob, "d:1:2", 3) == ReadCursors(delivered=4, read=3)
    assert await store.mark_read(bob, "d:1:2", 99) == ReadCursors(delivered=4, read=4)
    assert await store.mark_read(bob, "d:1:2", 99) is None
    assert await cursors_of(store, bob, "d:1:2") == {alice: (4, 4), bob: (4, 4)}
    with pytest.raises(ConversationNotFound):
        await store.mark_read(eve, "d:1:2", 1)
    (summary,) = await store.list_conversations(bob, limit=10, before_ts=None)
    assert summary.unread == 0


# ------------------------------------------------------------------------------------------------ conversation list


async def test_conversation_list_is_newest_first_with_peer_and_last_message(store: Store) -> None:
    alice, bob, carol, dan = await users(store, "alice", "bob", "carol", "dan")
    await store.append_direct(msg("d:1:2", alice, bob, "a", "to bob", ts=10))
    await store.append_direct(msg("d:1:3", carol, alice, "b", "from carol", ts=30))
    await store.append_direct(msg("d:1:4", alice, dan, "c", "to dan", ts=20))
    await store.append_direct(msg("d:1:4", dan, alice, "d", "from dan", ts=30))
    change = await store.create_group(alice, "team", [bob], 5, 100)
    await store.mark_read(bob, "d:1:2", 1)

    listed = await store.list_conversations(alice, limit=10, before_ts=None)
    assert [c.conversation_id for c in listed] == ["d:1:3", "d:1:4", "d:1:2", change.group.conversation_id]
    by_id = {c.conversation_id: c for c in listed}
    to_bob = by_id["d:1:2"]
    assert (to_bob.kind, to_bob.name, to_bob.peer_id, to_bob.peer_delivered_seq, to_bob.peer_read_seq) == (
        "direct", "bob", bob, 1, 1)
    assert to_bob.last_message is not None and to_bob.last_message.body == {"text": "to bob"}
    dan_chat = by_id["d:1:4"]
    assert (dan_chat.last_seq, dan_chat.last_ts, dan_chat.read_seq, dan_chat.unread, dan_chat.name) == (
        2, 30, 1, 1, "dan")
    group = by_id[change.group.conversation_id]
    assert (group.kind, group.name, group.group_id, group.last_seq) == ("group", "team", change.group.group_id, 1)
    assert group.last_message is not None and "system" in group.last_message.body

    first = await store.list_conversations(alice, limit=1, before_ts=None)
    second = await store.list_conversations(alice, limit=2, before_ts=first[-1].last_ts,
                                            before_id=first[-1].conversation_id)
    assert [c.conversation_id for c in first + second] == ["d:1:3", "d:1:4", "d:1:2"]
    assert [c.conversation_id for c in await store.list_conversations(alice, limit=10, before_ts=30)] == [
        "d:1:2", change.group.conversation_id]
    assert await store.list_conversations(999, limit=10, before_ts=None) == []


async def test_the_list_shows_the_last_message_its_reader_can_see(store: Store) -> None:
    """Recall and edit events, recalled messages and messages deleted for the reader never stand for a conversation
    in the list: the newest message the timeline shows does, and never one from before the reader joined."""
    alice, bob, carol = await users(store, "alice", "bob", "carol")
    await store.append_direct(msg("d:1:2", alice, bob, "a1", "see you at 6", ts=10))
    await store.append_direct(msg("d:1:2", alice, bob, "a2", "wrong chat", ts=11))
    await store.append_event(event("recall", "d:1:2", alice, 2, "r1", ts=12))

    async def last_of(user: int, conversation: str) -> MessageRecord | None:
        listed = {c.conversation_id: c for c in await store.list_conversations(user, limit=10, before_ts=None)}
        return listed[conversation].last_message

    for reader in (alice, bob):
        last = await last_of(reader, "d:1:2")
        assert last is not None and (last.seq, last.body) == (1, {"text": "see you at 6"})

    # Edits are events too: the edited message stands, with its new text, however many edits came after it.
    for n in range(25):
        await store.append_event(event("edit", "d:1:2", alice, 1, f"e{n}", ts=20 + n, text=f"see you at {n}"))
    last = await last_of(bob, "d:1:2")
    assert last is not None and last.seq == 1 and last.body["text"] == "see you at 24"
    await store.hide_message(bob, "d:1:2", 1, 60)
    assert await last_of(bob, "d:1:2") is None  # nothing left that bob can see
    last = await last_of(alice, "d:1:2")
    assert last is not None and last.seq == 1  # deleted for bob only

    # A group: carol joins after a message she must never see, even in the list.
    team = await store.create_group(alice, "team", [bob], 5, 100)
    conversation, group_id = team.group.conversation_id, team.group.group_id
    await store.append_group(gmsg(conversation, alice, "g1", "before carol", ts=6))
    added = notice(await store.group_action(action("add", alice, group_id, ts=7, user_ids=(carol,), max_members=10)))
    await store.append_group(gmsg(conversation, alice, "g2", "welcome carol", ts=8))
    await store.append_event(event("recall", conversation, alice, added.seq + 1, "r2", ts=9))
    last = await last_of(carol, conversation)
    assert last is not None and last.seq == added.seq and last.body["system"]["event"] == "members_added"
    await store.hide_message(carol, conversation, added.seq, 10)
    assert await last_of(carol, conversation) is None
    last = await last_of(bob, conversation)
    assert last is not None and last.seq == added.seq  # the notice is still bob's to see


# ------------------------------------------------------------------------------------------------ delete for me


async def test_hidden_messages_read_as_tombstones_for_that_user_only(store: Store) -> None:
    alice, bob = await users(store, "alice", "bob")
    for i in range(3):
        await store.append_direct(msg("d:1:2", alice, bob, f"m{i}", f"text{i}", ts=i))
    notice = await store.hide_message(bob, "d:1:2", 3, 50)
    assert (notice.conversation_id, notice.seq, notice.sender, notice.client_msg_id, notice.ts) == (
        f"u:{bob}", 1, bob, "~d:d:1:2:3", 50)
    assert notice.body == {"system": {"event": "deleted", "conversation_id": "d:1:2", "seq": 3}}
    again = await store.hide_message(bob, "d:1:2", 3, 60)
    assert (again.seq, again.ts, again.body) == (1, 50, notice.body)
    second = await store.hide_message(bob, "d:1:2", 1, 70)
    assert second.seq == 2

    bobs = await store.history(bob, "d:1:2", after=None, before=None, limit=10)
    assert [m.body for m in bobs.messages] == [{"deleted": True}, {"text": "text1"}, {"deleted": True}]
    assert bobs.messages[0].sender == alice and bobs.messages[0].client_msg_id == "m0"
    alices = await store.history(alice, "d:1:2", after=None, before=None, limit=10)
    assert await texts(alices) == ["text0", "text1", "text2"]
    (summary,) = await store.list_conversations(bob, limit=10, before_ts=None)  # the u: timeline is not listed
    assert summary.last_message is not None and summary.last_message.body == {"text": "text1"}  # not the hidden #3
    synced = await store.sync(bob, {}, 100)
    assert [(m.conversation_id, m.seq) for m in synced.messages] == [
        ("d:1:2", 1), ("d:1:2", 2), ("d:1:2", 3), (f"u:{bob}", 1), (f"u:{bob}", 2)]
    assert synced.messages[0].body == {"deleted": True}

    with pytest.raises(MessageNotFound):
        await store.hide_message(bob, "d:1:2", 4, 80)
    with pytest.raises(MessageNotFound):
        await store.hide_message(bob, "d:1:2", 0, 80)
    with pytest.raises(ConversationNotFound):
        await store.hide_message(999, "d:1:2", 1, 80)


async def test_a_sync_reads_the_readers_hidden_messages_as_tombstones_on_every_page(store: Store) -> None:
    """Pages of a sync and of a streamed sync that cut conversations in the middle: every message the reader hid
    reads as a tombstone on the page it falls on (first, last, across two conversations), and only the reader's
    (SQLite reads the page's hidden seqs apart from its rows)."""
    alice, bob, carol = await users(store, "alice", "bob", "carol")
    for i in range(6):
        await store.append_direct(msg("d:1:2", alice, bob, f"ab{i}", f"ab text {i}"))
        await store.append_direct(msg("d:2:3", carol, bob, f"cb{i}", f"cb text {i}"))
    hidden_by_bob = {("d:1:2", 1), ("d:1:2", 3), ("d:1:2", 4), ("d:1:2", 6), ("d:2:3", 1), ("d:2:3", 5)}
    for conversation, seq in sorted(hidden_by_bob):
        await store.hide_message(bob, conversation, seq, 50)
    await store.hide_message(alice, "d:1:2", 2, 50)  # alice's own choice: bob still sees it
    await store.hide_message(carol, "d:2:3", 2, 50)
    own = f"u:{bob}"

    def expected(conversation: str, seq: int) -> dict[str, Any]:
        if (conversation, seq) in hidden_by_bob:
            return {"deleted": True}
        return {"text": f"{'ab' if conversation == 'd:1:2' else 'cb'} text {seq - 1}"}

    for limit in (1, 3, 4, 5, 100):
        seen: list[tuple[str, int, dict[str, Any]]] = []
        cursors: dict[str, int] = {}
        while True:
            page = await store.sync(bob, cursors, limit)
            seen.extend((m.conversation_id, m.seq, m.body) for m in page.messages)
            cursors.update({m.conversation_id: m.seq for m in page.messages})
            if not page.more:
                break
        streamed: list[tuple[str, int, dict[str, Any]]] = []
        pending = [p for p in await store.sync_plan(bob, {}) if p[0] != own]
        while pending:
            part = await store.sync_after(bob, pending, limit)
            streamed.extend((m.conversation_id, m.seq, m.body) for m in part.messages)
            last = part.messages[-1]
            pending = [(c, last.seq if c == last.conversation_id else start, until)
                       for c, start, until in pending if c >= last.conversation_id]
            if not part.more:
                break
        wanted = [(c, s, expected(c, s)) for c in ("d:1:2", "d:2:3") for s in range(1, 7)]
        assert [m for m in seen if m[0] != own] == wanted, limit
        assert streamed == wanted, limit
    alices = await store.sync(alice, {}, 100)
    assert [m.body for m in alices.messages if m.conversation_id == "d:1:2"][:3] == [
        {"text": "ab text 0"}, {"deleted": True}, {"text": "ab text 2"}]


# ------------------------------------------------------------------------------------------------ recall and edit


def event(kind: str, conversation: str, user: int, target: int, cmid: str, ts: int = 100, text: str = "",
          window_ms: int = 1_000) -> EventAppend:
    return EventAppend(kind, conversation, user, target, cmid, ts, text, window_ms)


async def test_recall_replaces_the_body_and_appends_an_event(store: Store) -> None:
    alice, bob = await users(store, "alice", "bob")
    await store.append_direct(msg("d:1:2", alice, bob, "a", "oops", ts=50))
    await store.append_direct(msg("d:1:2", bob, alice, "b", "what?", ts=60))
    result, record = await store.append_event(event("recall", "d:1:2", alice, 1, "r1", ts=500))
    assert (result.conversation_id, result.seq, result.ts, result.duplicate) == ("d:1:2", 3, 500, False)
    assert (record.seq, record.sender, record.client_msg_id, record.body) == (3, alice, "r1",
                                                                            {"recall": {"seq": 1}})
    page = await store.history(bob, "d:1:2", after=None, before=None, limit=10)
    assert [m.body for m in page.messages] == [{"recalled": True}, {"text": "what?"}, {"recall": {"seq": 1}}]
    assert (page.messages[0].sender, page.messages[0].client_msg_id, page.messages[0].ts) == (alice, "a", 50)
    assert await cursors_of(store, alice, "d:1:2") == {alice: (3, 3), bob: (2, 2)}

    repeat, repeat_record = await store.append_event(event("recall", "d:1:2", alice, 1, "r1", ts=900))
    assert (repeat.seq, repeat.ts, repeat.duplicate, repeat_record.body) == (3, 500, True, {"recall": {"seq": 1}})
    with pytest.raises(Forbidden, match="recalled"):
        await store.append_event(event("recall", "d:1:2", alice, 1, "r2"))
    with pytest.raises(Forbidden, match="recalled"):
        await store.append_event(event("edit", "d:1:2", alice, 1, "e2", text="new"))


async def test_events_are_checked_before_anything_is_written(store: Store) -> None:
    alice, bob, eve = await users(store, "alice", "bob", "eve")
    await store.append_direct(msg("d:1:2", alice, bob, "a", "hello", ts=50))
    await store.append_direct(DirectAppend("d:1:2", alice, bob, "f", json.dumps(
        {"file": {"id": "x", "name": "a.pdf", "mime": "application/pdf", "size": 1}}).encode(), 60))
    cases: list[tuple[EventAppend, type[PicaError], str]] = [
        (event("recall", "d:1:2", bob, 1, "x1"), Forbidden, "only the author"),
        (event("recall", "d:1:2", alice, 1, "x2", ts=50 + 1_001), Forbidden, "window"),
        (event("recall", "d:1:2", alice, 9, "x3"), MessageNotFound, ""),
        (event("recall", "d:1:2", eve, 1, "x4"), ConversationNotFound, ""),
        (event("edit", "d:1:2", alice, 2, "x5", text="t"), BadRequest, "only text messages"),
        (event("recall", "d:4:5", alice, 1, "x6"), ConversationNotFound, ""),
    ]
    for request, error, text in cases:
        with pytest.raises(error, match=text or None):
            await store.append_event(request)
    _, recall = await store.append_event(event("recall", "d:1:2", alice, 2, "ok", ts=70))
    assert recall.seq == 3
    with pytest.raises(Forbidden, match="cannot be edited"):  # an event is not a message to edit
        await store.append_event(event("edit", "d:1:2", alice, 3, "x7", text="t"))
    assert [m.seq for m in (await store.history(alice, "d:1:2", after=None, before=None, limit=10)).messages] == [
        1, 2, 3]


async def test_edit_keeps_other_keys_and_search_follows_the_new_text(store: Store) -> None:
    alice, bob = await users(store, "alice", "bob")
    raw = json.dumps({"text": "papaya juice", "reply_to": 7}).encode()
    await store.append_direct(DirectAppend("d:1:2", alice, bob, "a", raw, 50, "papaya juice"))
    result, record = await store.append_event(event("edit", "d:1:2", alice, 1, "e1", ts=80, text="guava smoothie"))
    assert record.body == {"edit": {"seq": 1, "text": "guava smoothie"}} and result.seq == 2
    (edited, _) = (await store.history(bob, "d:1:2", after=None, before=None, limit=10)).messages
    assert edited.body == {"text": "guava smoothie", "reply_to": 7, "edited": 80}
    assert await store.search(bob, "papaya", conversation_id=None, limit=10) == []
    assert [m.seq for m in await store.search(bob, "guava", conversation_id=None, limit=10)] == [1]
    await store.append_event(event("edit", "d:1:2", alice, 1, "e2", ts=90, text="mango"))
    (edited, _, _) = (await store.history(bob, "d:1:2", after=None, before=None, limit=10)).messages
    assert edited.body == {"text": "mango", "reply_to": 7, "edited": 90}


async def test_a_recall_scrubs_the_text_of_every_earlier_edit(store: Store) -> None:
    alice, bob = await users(store, "alice", "bob")
    await store.append_direct(smsg("d:1:2", alice, bob, "a", "papaya secret", ts=50))
    await store.append_direct(smsg("d:1:2", alice, bob, "b", "kiwi", ts=51))
    await store.append_event(event("edit", "d:1:2", alice, 1, "e1", ts=60, text="guava secret"))
    await store.append_event(event("edit", "d:1:2", alice, 2, "e2", ts=61, text="kiwi fruit"))
    await store.append_event(event("edit", "d:1:2", alice, 1, "e3", ts=62, text="mango secret"))
    await store.append_direct(smsg("d:1:2", bob, alice, "c", "what secret?", ts=63))
    await store.append_event(event("recall", "d:1:2", alice, 1, "r1", ts=70))
    expected = [{"recalled": True}, {"text": "kiwi fruit", "edited": 61}, {"edit": {"seq": 1, "recalled": True}},
                {"edit": {"seq": 2, "text": "kiwi fruit"}}, {"edit": {"seq": 1, "recalled": True}},
                {"text": "what secret?"}, {"recall": {"seq": 1}}]
    for reader in (alice, bob):  # history and sync, for every reader
        assert [m.body for m in (await store.history(reader, "d:1:2", after=None, before=None, limit=10)).messages
                ] == expected
        assert [m.body for m in (await store.sync(reader, {}, 20)).messages] == expected
    for word in ("papaya", "guava", "mango"):
        assert await store.search(bob, word, conversation_id=None, limit=10) == []
    assert [m.client_msg_id for m in await store.search(bob, "secret", conversation_id=None, limit=10)] == ["c"]
    assert [m.client_msg_id for m in await store.search(bob, "fruit", conversation_id=None, limit=10)] == ["b"]


async def test_editing_a_caption_keeps_the_file_name_searchable(store: Store) -> None:
    alice, bob = await users(store, "alice", "bob")
    file = {"file": {"id": "f1", "name": "budget-2027.xlsx", "mime": "application/vnd.ms-excel", "size": 9},
            "text": "draft"}
    await store.append_direct(DirectAppend("d:1:2", alice, bob, "f", json.dumps(file).encode(), 50,
                                           "draft budget-2027.xlsx"))
    await store.append_event(event("edit", "d:1:2", alice, 1, "e1", ts=60, text="final numbers"))

    async def found(query: str) -> list[str]:
        return [m.client_msg_id for m in await store.search(bob, query, conversation_id=None, limit=10)]

    assert await found("budget") == await found("xlsx final") == await found("numbers") == ["f"]
    assert await found("draft") == []


# ------------------------------------------------------------------------------------------------ groups


async def test_group_creation_posts_a_notice_and_counts_members(store: Store) -> None:
    alice, bob, carol = await users(store, "alice", "bob", "carol")
    change = await store.create_group(alice, "  team  ", [bob, carol, bob], 10, 10)
    group = change.group
    assert (group.name, group.owner_id, group.muted_all, group.dissolved, group.created_at) == (
        "team", alice, False, False, 10)
    assert (group.member_count, group.members_version, group.conversation_id) == (
        3, 1, f"g:{group.group_id}")
    assert change.added == (alice, bob, carol) and change.removed == ()
    assert (notice(change).seq, notice(change).sender, notice(change).client_msg_id) == (
        1, alice, f"~n:{group.conversation_id}:1")
    assert notice(change).body == {"system": {"event": "created", "by": alice, "name": "team",
                                             "user_ids": [alice, bob, carol]}}
    assert await store.group_fanout(group.conversation_id) == (1, {alice: 0, bob: 0, carol: 0})
    assert await store.get_group(bob, group.group_id) == group
    members = await store.group_members(carol, group.group_id)
    assert [(m.user_id, m.role, m.username) for m in members] == [
        (alice, "owner", "alice"), (bob, "member", "bob"), (carol, "member", "carol")]
    assert await store.list_groups(bob) == [group]
    assert [g.group_id for g in await store.list_all_groups(10)] == [group.group_id]

    with pytest.raises(UserNotFound):
        await store.create_group(alice, "x", [bob, 999], 10, 10)
    with pytest.raises(BadRequest):
        await store.create_group(alice, "x", [bob, carol], 10, 2)
    with pytest.raises(BadRequest):
        await store.create_group(alice, "   ", [bob], 10, 10)
    assert len(await store.list_all_groups(10)) == 1


async def test_group_messages_check_membership_mutes_and_dissolution(store: Store) -> None:
    alice, bob, carol, eve = await users(store, "alice", "bob", "carol", "eve")
    group = (await store.create_group(alice, "team", [bob, carol], 10, 10)).group
    conv = group.conversation_id
    sent = await store.append_group(gmsg(conv, bob, "b1"))
    assert (sent.seq, sent.members_version, sent.duplicate) == (2, 1, False)
    again = await store.append_group(gmsg(conv, bob, "b1"))
    assert (again.seq, again.duplicate) == (2, True)
    assert (await cursors_of(store, bob, conv))[bob] == (2, 2)
    for outsider, conversation in ((eve, conv), (alice, "g:999")):
        with pytest.raises(Forbidden, match="you cannot send to this group"):
            await store.append_group(gmsg(conversation, outsider, f"x{outsider}"))

    await store.group_action(action("mute", alice, group.group_id, user_ids=(carol,), flag=True))
    with pytest.raises(Forbidden, match="muted"):
        await store.append_group(gmsg(conv, carol, "c1"))
    await store.group_action(action("mute", alice, group.group_id, user_ids=(carol,), flag=False))
    assert (await store.append_group(gmsg(conv, carol, "c2"))).seq == 5

    await store.group_action(action("role", alice, group.group_id, user_ids=(bob,), role="admin"))
    await store.group_action(action("mute_all", bob, group.group_id, flag=True))
    with pytest.raises(Forbidden, match="muted"):
        await store.append_group(gmsg(conv, carol, "c3"))
    assert (await store.append_group(gmsg(conv, bob, "b2"))).seq == 8  # admins still speak
    await store.group_action(action("dissolve", alice, group.group_id))
    with pytest.raises(Forbidden, match="dissolved"):
        await store.append_group(gmsg(conv, alice, "a1"))
    with pytest.raises(Forbidden, match="dissolved"):
        await store.group_action(action("rename", alice, group.group_id, name="again"))
    page = await store.history(carol, conv, after=None, before=None, limit=100)
    assert [m.seq for m in page.messages] == list(range(1, 10))
    assert page.messages[-1].body == {"system": {"event": "dissolved", "by": alice}}
    assert (await store.get_group(carol, group.group_id)).dissolved


async def test_new_members_see_from_their_notice_and_removed_ones_lose_access(store: Store) -> None:
    alice, bob, carol, dan = await users(store, "alice", "bob", "carol", "dan")
    group = (await store.create_group(alice, "team", [bob, carol], 10, 3)).group
    conv = group.conversation_id
    await store.append_group(gmsg(conv, alice, "a1", "before dan"))
    with pytest.raises(BadRequest):
        await store.group_action(action("add", alice, group.group_id, user_ids=(dan,), max_members=3))
    with pytest.raises(Forbidden):
        await store.group_action(action("add", bob, group.group_id, user_ids=(dan,), max_members=10))
    removed = await store.group_action(action("remove", alice, group.group_id, user_ids=(carol,)))
    assert (removed.removed, notice(removed).seq, removed.group.members_version) == ((carol,), 3, 2)
    assert notice(removed).body == {"system": {"event": "members_removed", "by": alice, "user_ids": [carol]}}
    ((told_user, told),) = removed.told  # carol's own timeline says so, for a device of hers that was offline
    removal = {"system": {"event": "removed_from_group", "group_id": group.group_id, "conversation_id": conv,
                          "name": "team", "by": alice, "seq": 3}}
    assert (told_user, told.conversation_id, told.seq, told.sender, told.body) == (carol, f"u:{carol}", 1, alice,
                                                                                   removal)
    added = await store.group_action(action("add", alice, group.group_id, user_ids=(dan, bob), max_members=3))
    assert (added.added, notice(added).seq, added.group.members_version, added.group.member_count) == (
        (dan,), 4, 3, 3)
    assert await store.group_fanout(conv) == (3, {alice: 0, bob: 0, dan: 3})
    await store.append_group(gmsg(conv, bob, "b1", "after dan"))

    page = await store.history(dan, conv, after=None, before=None, limit=10)
    assert [m.seq for m in page.messages] == [4, 5]
    assert [m.seq for m in (await store.sync(dan, {}, 10)).messages] == [4, 5]
    assert [m.seq for m in (await store.sync(dan, {conv: 1}, 10)).messages] == [4, 5]
    assert (await cursors_of(store, dan, conv))[dan] == (3, 3)
    with pytest.raises(MessageNotFound):
        await store.hide_message(dan, conv, 3, 1)
    for read in (store.history(carol, conv, after=None, before=None, limit=10), store.member_cursors(carol, conv)):
        with pytest.raises(ConversationNotFound):
            await read
    with pytest.raises(GroupNotFound):
        await store.get_group(carol, group.group_id)
    with pytest.raises(GroupNotFound):
        await store.group_members(carol, group.group_id)
    assert await store.list_groups(carol) == []
    assert [(m.conversation_id, m.body) for m in (await store.sync(carol, {}, 10)).messages] == [
        (f"u:{carol}", removal)]
    assert (await store.sync(carol, {f"u:{carol}": 1}, 10)).messages == []


async def test_roles_transfer_leave_and_rename_follow_the_rules(store: Store) -> None:
    alice, bob, carol, dan = await users(store, "alice", "bob", "carol", "dan")
    group = (await store.create_group(alice, "team", [bob, carol, dan], 10, 10)).group
    gid = group.group_id
    refused: list[tuple[GroupAction, type[PicaError], str]] = [
        (action("role", bob, gid, user_ids=(carol,), role="admin"), Forbidden, "only the owner"),
        (action("role", alice, gid, user_ids=(carol,), role="owner"), BadRequest, "role must be"),
        (action("role", alice, gid, user_ids=(alice,), role="admin"), Forbidden, "use transfer"),
        (action("leave", alice, gid), Forbidden, "the owner cannot leave"),
        (action("remove", bob, gid, user_ids=(carol,)), Forbidden, "owner or an admin"),
        (action("transfer", alice, gid, user_ids=(bob, carol)), BadRequest, "exactly one"),
        (action("transfer", alice, gid, user_ids=(alice,)), BadRequest, "owner already"),
        (action("mute", alice, gid, user_ids=(999,), flag=True), BadRequest, "not a member"),
        (action("rename", alice, gid, name=""), BadRequest, "group name"),
        (action("explode", alice, gid), BadRequest, "unknown group action"),
        (action("rename", 999, gid, name="x"), GroupNotFound, ""),
        (action("rename", alice, gid + 1, name="x"), GroupNotFound, ""),
    ]
    for request, error, text in refused:
        with pytest.raises(error, match=text or None):
            await store.group_action(request)
    assert (await store.get_group(alice, gid)).members_version == 1

    promoted = await store.group_action(action("role", alice, gid, user_ids=(bob,), role="admin"))
    assert notice(promoted).body == {"system": {"event": "role_changed", "by": alice, "role": "admin",
                                               "user_ids": [bob]}}
    with pytest.raises(Forbidden, match="ranked below"):
        await store.group_action(action("remove", bob, gid, user_ids=(bob,)))
    renamed = await store.group_action(action("rename", bob, gid, name=" crew "))
    assert renamed.group.name == "crew" and notice(renamed).body["system"]["name"] == "crew"
    moved = await store.group_action(action("transfer", alice, gid, user_ids=(carol,)))
    assert moved.group.owner_id == carol
    roles = {m.user_id: m.role for m in await store.group_members(alice, gid)}
    assert roles == {alice: "admin", bob: "admin", carol: "owner", dan: "member"}
    left = await store.group_action(action("leave", dan, gid))
    assert (left.removed, notice(left).body) == ((dan,), {"system": {"event": "member_left", "by": dan,
                                                                    "user_ids": [dan]}})
    assert [n.seq for n in (await store.history(alice, group.conversation_id, after=None, before=None,
                                                limit=10)).messages] == [1, 2, 3, 4, 5]


async def test_concurrent_group_appends_get_gap_free_seqs_in_submission_order(store: Store) -> None:
    alice, bob = await users(store, "alice", "bob")
    conv = (await store.create_group(alice, "team", [bob], 10, 10)).group.conversation_id
    results = await asyncio.gather(*(store.append_group(gmsg(conv, (alice, bob)[i % 2], f"g{i}")) for i in range(200)))
    assert [r.seq for r in results] == list(range(2, 202))
    page = await store.history(bob, conv, after=1, before=None, limit=1000)
    assert [m.client_msg_id for m in page.messages] == [f"g{i}" for i in range(200)]


async def test_many_conversations_at_once_each_stay_in_order(store: Store) -> None:
    ids = await users(store, *(f"u{i}" for i in range(6)))
    futures = []
    for i in range(300):
        a, b = ids[i % 6], ids[(i * 7 + 1) % 6]
        if a == b:
            continue
        low, high = min(a, b), max(a, b)
        futures.append((f"d:{low}:{high}", store.append_direct(msg(f"d:{low}:{high}", a, b, f"m{i}"))))
    results = await asyncio.gather(*(f for _, f in futures))
    seen: dict[str, list[int]] = {}
    for (conversation, _), result in zip(futures, results, strict=True):
        seen.setdefault(conversation, []).append(result.seq)
    for conversation, seqs in seen.items():
        assert seqs == list(range(1, len(seqs) + 1)), conversation


# ------------------------------------------------------------------------------------------------ search


async def test_search_needs_every_word_ignores_case_and_diacritics_matches_prefixes(store: Store) -> None:
    alice, bob, carol = await users(store, "alice", "bob", "carol")
    await store.append_direct(smsg("d:1:2", alice, bob, "s1", "the quick brown fox", ts=1))
    await store.append_direct(smsg("d:1:3", carol, alice, "s2", "a quick grey wolf", ts=2))
    await store.append_direct(smsg("d:1:2", bob, alice, "s3", "Crème brûlée, QUICK!", ts=3))
    await store.append_direct(smsg("d:1:2", bob, alice, "s4", "see quarterly-report.pdf", ts=4))
    await store.append_direct(msg("d:1:2", bob, alice, "s5", "quick but not indexed", ts=5))

    async def found(who: int, query: str, **kwargs: Any) -> list[str]:
        options: dict[str, Any] = {"conversation_id": None, "limit": 10, **kwargs}
        return [m.client_msg_id for m in await store.search(who, query, **options)]

    assert await found(alice, "quick") == ["s3", "s2", "s1"]
    assert await found(alice, "QUICK brown") == ["s1"]
    assert await found(alice, "quick purple") == []
    assert await found(alice, "creme BRULEE") == ["s3"]
    assert await found(alice, "qui") == ["s3", "s2", "s1"]  # the last token of a word is a prefix
    assert await found(alice, "quarterly") == ["s4"]
    assert await found(alice, "quarterly-report") == ["s4"]
    assert await found(alice, "report-quarterly") == []
    assert await found(alice, "pdf see") == ["s4"]
    assert await found(alice, '"fox" OR wolf') == []  # no query syntax: every word is a word
    assert await found(alice, "fox !!!") == ["s1"]
    assert await found(alice, "!!!") == []
    assert await found(alice, "quick", conversation_id="d:1:3") == ["s2"]
    assert await found(alice, "quick", limit=1) == ["s3"]
    assert await found(bob, "quick") == ["s3", "s1"]
    assert await found(bob, "wolf") == await found(bob, "wolf", conversation_id="d:1:3") == []
    for bad in ("", "   ", " ".join(["w"] * 13), "x" * 201):
        with pytest.raises(BadRequest):
            await store.search(alice, bad, conversation_id=None, limit=10)


async def test_search_sees_what_the_user_sees(store: Store) -> None:
    alice, bob, carol, dan = await users(store, "alice", "bob", "carol", "dan")
    group = (await store.create_group(alice, "team", [bob, carol], 10, 10)).group
    conv = group.conversation_id
    await store.append_group(gmsg(conv, alice, "g1", "launch codes ready", ts=20))
    await store.append_group(gmsg(conv, bob, "g2", "launch party", ts=21))
    await store.group_action(action("remove", alice, group.group_id, user_ids=(carol,), ts=22))
    await store.group_action(action("add", alice, group.group_id, user_ids=(dan,), ts=23, max_members=10))
    await store.append_group(gmsg(conv, alice, "g3", "launch tonight", ts=24))
    await store.append_direct(smsg("d:1:2", bob, alice, "d1", "launch banana", ts=25))
    await store.hide_message(alice, conv, 3, 30)
    await store.append_event(event("recall", "d:1:2", bob, 1, "r1", ts=26, window_ms=10_000))

    async def found(who: int) -> list[str]:
        return [m.client_msg_id for m in await store.search(who, "launch", conversation_id=None, limit=10)]

    assert await found(alice) == ["g3", "g1"]  # g2 hidden for alice, d1 recalled
    assert await found(bob) == ["g3", "g2", "g1"]
    assert await found(carol) == []
    assert await found(dan) == ["g3"]
    (hit,) = await store.search(dan, "tonight", conversation_id=conv, limit=10)
    assert (hit.conversation_id, hit.seq, hit.sender, hit.ts, hit.body) == (conv, 6, alice, 24,
                                                                             {"text": "launch tonight"})


async def test_search_orders_by_time_then_seq(store: Store) -> None:
    alice, bob = await users(store, "alice", "bob")
    for i, ts in enumerate((5, 9, 9, 1)):
        await store.append_direct(smsg("d:1:2", alice, bob, f"k{i}", "kiwi", ts=ts))
    assert [m.seq for m in await store.search(bob, "kiwi", conversation_id=None, limit=10)] == [3, 2, 1, 4]


# ------------------------------------------------------------------------------------------------ contacts, presence


async def test_contact_requests_cross_accept_decline_and_remove(store: Store) -> None:
    alice, bob, carol = await users(store, "alice", "bob", "carol")
    assert await store.contact_request(alice, bob, 10) == "outgoing"
    assert await store.contact_request(alice, bob, 11) == "outgoing"
    assert [(c.user_id, c.username, c.state, c.updated_at) for c in await store.list_contacts(bob)] == [
        (alice, "alice", "incoming", 10)]
    assert await store.contact_request(bob, alice, 12) == "accepted"  # asking back accepts
    assert [c.state for c in await store.list_contacts(alice)] == ["accepted"]
    assert await store.contact_request(alice, bob, 13) == "accepted"

    assert await store.contact_request(carol, alice, 14) == "outgoing"
    with pytest.raises(NotFound):
        await store.contact_respond(carol, alice, True, 15)  # only the receiver answers
    assert await store.contact_respond(alice, carol, False, 16) == "none"
    assert [c.user_id for c in await store.list_contacts(alice)] == [bob]
    with pytest.raises(NotFound):
        await store.contact_respond(alice, carol, True, 17)
    await store.contact_remove(bob, alice)
    assert await store.list_contacts(alice) == [] and await store.list_contacts(bob) == []

    with pytest.raises(BadRequest):
        await store.contact_request(alice, alice, 18)
    with pytest.raises(UserNotFound):
        await store.contact_request(alice, 999, 18)


async def test_blocks_drop_contacts_and_refuse_requests(store: Store) -> None:
    alice, bob, carol = await users(store, "alice", "bob", "carol")
    await store.contact_request(alice, bob, 1)
    await store.contact_respond(bob, alice, True, 2)
    await store.set_blocked(bob, alice, True, 3)
    await store.set_blocked(bob, alice, True, 4)
    await store.set_blocked(bob, carol, True, 5)
    assert await store.list_blocked(bob) == [alice, carol]
    assert await store.list_contacts(alice) == [] and await store.list_contacts(bob) == []
    with pytest.raises(Forbidden):
        await store.contact_request(alice, bob, 6)
    assert await store.contact_request(bob, alice, 7) == "outgoing"  # the blocker may still ask
    await store.set_blocked(bob, carol, False, 8)
    assert await store.list_blocked(bob) == [alice]
    with pytest.raises(BadRequest):
        await store.set_blocked(bob, bob, True, 9)
    with pytest.raises(UserNotFound):
        await store.set_blocked(bob, 999, True, 9)


async def test_presence_is_for_contacts_and_peers_minus_blocks(store: Store) -> None:
    alice, bob, carol, dan, eve = await users(store, "alice", "bob", "carol", "dan", "eve")
    await store.contact_request(alice, bob, 1)
    await store.contact_respond(bob, alice, True, 2)
    await store.append_direct(msg("d:1:3", carol, alice, "c"))
    await store.contact_request(alice, dan, 3)  # pending: not an audience
    await store.create_group(alice, "team", [eve], 4, 10)  # groups do not share presence
    await store.set_last_seen({alice: 100, bob: 200})  # several users in one write
    await store.set_last_seen({carol: 300, dan: 400})
    assert await store.presence_audience(alice) == PresenceAudience("everyone", (Viewer(bob, True),
                                                                                 Viewer(carol, False)))
    assert await store.presence_of(alice, [bob, carol, dan, eve, alice, bob, 999]) == [
        PresenceRecord(bob, 200, "everyone", True), PresenceRecord(carol, 300), PresenceRecord(alice, 100)]
    await store.set_privacy(bob, presence="contacts")
    assert await store.presence_of(alice, [bob]) == [PresenceRecord(bob, 200, "contacts", True)]
    await store.set_privacy(alice, presence="nobody")
    assert (await store.presence_audience(alice)).presence == "nobody"
    await store.set_blocked(alice, carol, True, 5)
    assert (await store.presence_audience(alice)).viewers == (Viewer(bob, True),)
    assert await store.presence_of(carol, [alice]) == []  # alice blocked carol: carol cannot see her
    assert await store.presence_of(alice, [carol]) == [PresenceRecord(carol, 300)]


async def test_presence_audiences_read_many_users_at_once_as_one_by_one(store: Store) -> None:
    alice, bob, carol, dan = await users(store, "alice", "bob", "carol", "dan")
    await store.contact_request(alice, bob, 1)
    await store.contact_respond(bob, alice, True, 2)
    await store.append_direct(msg("d:1:2", bob, alice, "b"))  # bob is alice's contact and 1:1 peer: told once
    await store.append_direct(msg("d:1:3", carol, alice, "c"))
    await store.set_blocked(carol, alice, True, 3)
    await store.set_privacy(bob, presence="contacts")
    wanted = [carol, alice, dan, bob, alice, 999]  # any order, repeats, an unknown user
    audiences = await store.presence_audiences(wanted)
    assert list(audiences) == [carol, alice, dan, bob, 999]
    for user in (alice, bob, carol, dan, 999):
        assert audiences[user] == await store.presence_audience(user)
    assert audiences[alice] == PresenceAudience("everyone", (Viewer(bob, True), Viewer(carol, False)))
    assert audiences[bob] == PresenceAudience("contacts", (Viewer(alice, True),))
    assert audiences[carol] == PresenceAudience("everyone", ())  # carol blocked her only peer
    assert audiences[dan] == audiences[999] == PresenceAudience("everyone", ())
    assert await store.presence_audiences([]) == {}


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_presence_audiences_batched_match_the_per_user_read_on_a_random_graph(store: Store, seed: int) -> None:
    """The batched read (one statement for all the users' viewers, one for their settings) against the per-user
    definition, on relations of every kind: accepted and pending contacts, 1:1 peers (and a user's conversation with
    themself), group-only relations (no audience), blocks either way (a block with an accepted contact left in place:
    the blocker may ask again and be accepted), and every presence setting."""
    rng = random.Random(seed)
    people = await users(store, *(f"u{i}" for i in range(14)))
    pairs = [(a, b) for i, a in enumerate(people) for b in people[i + 1:]]
    for n, (a, b) in enumerate(rng.sample(pairs, 40)):
        a, b = (a, b) if rng.random() < 0.5 else (b, a)
        kind = rng.choice(["accepted", "pending", "direct", "direct-and-accepted"])
        if kind != "direct":
            await store.contact_request(a, b, n)
            if kind != "pending":
                await store.contact_respond(b, a, True, n)
        if kind.startswith("direct"):
            await store.append_direct(msg(direct_conversation_id(a, b), a, b, f"m{n}"))
    await store.append_direct(msg(direct_conversation_id(people[0], people[0]), people[0], people[0], "self"))
    await store.create_group(people[1], "g", rng.sample(people[2:], 6), 100, 50)
    for n, (a, b) in enumerate(rng.sample(pairs, 12)):
        await store.set_blocked(*((a, b) if rng.random() < 0.5 else (b, a)), True, 200 + n)
    for n, (a, b) in enumerate(rng.sample(pairs, 20)):  # after the blocks: the blocker may still ask
        with contextlib.suppress(Forbidden):
            if await store.contact_request(a, b, 300 + n) == "outgoing" and rng.random() < 0.7:
                await store.contact_respond(b, a, True, 300 + n)
    for user in people:
        await store.set_privacy(user, presence=rng.choice(["everyone", "contacts", "nobody"]))
    wanted = [*rng.sample(people, len(people)), people[3], 10_000]  # any order, a repeat, an unknown user
    audiences = await store.presence_audiences(wanted)
    assert list(audiences) == list(dict.fromkeys(wanted))
    for user in dict.fromkeys(wanted):
        assert audiences[user] == await store.presence_audience(user)
    assert sum(len(a.viewers) for a in audiences.values()) > 20  # the graph is not empty
    assert any(not v.contact for a in audiences.values() for v in a.viewers)  # a 1:1 peer only
    assert any(v.contact for a in audiences.values() for v in a.viewers)
    for user in people[2:5]:  # a part of the users, as one loop turn's read asks for
        assert (await store.presence_audiences([user]))[user] == audiences[user]


async def test_privacy_settings_are_checked_and_kept(store: Store) -> None:
    (alice,) = await users(store, "alice")
    assert await store.get_settings(alice) == UserSettings()
    await store.set_privacy(alice, group_add="contacts")
    await store.set_privacy(alice, presence="nobody")
    await store.set_only_contacts(alice, True)
    assert await store.get_settings(alice) == UserSettings(True, "contacts", "nobody")
    with pytest.raises(BadRequest):
        await store.set_privacy(alice, group_add="friends", presence="everyone")
    assert await store.get_settings(alice) == UserSettings(True, "contacts", "nobody")  # nothing half-done


async def test_group_adds_follow_consent_and_invitations_are_rechecked(store: Store) -> None:
    owner, admin, open_, friend, shy, blocker, late = await users(
        store, "owner", "admin", "open", "friend", "shy", "blocker", "late")
    await store.set_privacy(friend, group_add="contacts")
    await store.set_privacy(shy, group_add="nobody")
    await store.set_privacy(late, group_add="nobody")
    await store.contact_request(owner, friend, 1)
    await store.contact_respond(friend, owner, True, 2)
    await store.set_blocked(blocker, owner, True, 3)
    created = await store.create_group(owner, "team", [admin, shy], 4, 10)
    assert (created.added, created.invited, created.invitations) == ((owner, admin), (shy,), (shy,))
    group = created.group.group_id
    await store.group_action(GroupAction("role", owner, group, 5, (admin,), role="admin"))
    change = await store.group_action(GroupAction("add", owner, group, 6, (open_, friend, blocker, shy, admin),
                                                  max_members=10))
    assert change.added == (open_, friend) and change.invited == (blocker, shy)
    assert change.invitations == (shy,)  # the blocker's is not stored, and the owner cannot tell
    assert change.notice is not None and notice(change).body["system"]["user_ids"] == [open_, friend]
    only_invited = await store.group_action(GroupAction("add", admin, group, 7, (late,), max_members=10))
    assert only_invited.notice is None and only_invited.invited == (late,) and only_invited.added == ()
    assert [(i.group_id, i.inviter_id) for i in await store.list_invitations(shy)] == [(group, owner)]
    assert await store.list_invitations(blocker) == []

    joined = await store.accept_invitation(shy, group, 8, 10)
    assert joined.added == (shy,) and joined.notice is not None
    assert joined.notice.body == {"system": {"event": "members_added", "by": shy, "invited_by": owner,
                                             "user_ids": [shy]}}
    assert shy in [m.user_id for m in await store.group_members(owner, group)]
    assert await store.list_invitations(shy) == []
    with pytest.raises(NotFound):
        await store.accept_invitation(shy, group, 9, 10)  # used up

    # The admin who invited "late" is demoted: the invitation no longer holds.
    await store.group_action(GroupAction("role", owner, group, 10, (admin,), role="member"))
    assert await store.list_invitations(late) == []
    with pytest.raises(NotFound):
        await store.accept_invitation(late, group, 11, 10)
    await store.decline_invitation(late, group)
    with pytest.raises(NotFound):
        await store.decline_invitation(late, group)


async def test_account_deletion_leaves_a_tombstone_and_hands_groups_on(store: Store) -> None:
    alice, bob, carol, dan = await users(store, "alice", "bob", "carol", "dan")
    await store.contact_request(alice, bob, 1)
    await store.contact_respond(bob, alice, True, 2)
    await store.set_blocked(dan, alice, True, 3)
    sent = await store.append_direct(msg(direct_conversation_id(alice, bob), alice, bob, "a1", "hello bob"))
    await store.append_direct(msg(direct_conversation_id(alice, bob), bob, alice, "b1", "hi alice"))
    await store.hide_message(alice, sent.conversation_id, 2, 4)
    team = await store.create_group(alice, "team", [bob, carol], 5, 10)
    await store.group_action(GroupAction("role", alice, team.group.group_id, 6, (carol,), role="admin"))
    solo = await store.create_group(alice, "solo", [], 7, 10)
    await store.append_group(GroupAppend(team.group.conversation_id, alice, "g1", b'{"text":"bye"}', 8))
    await store.set_privacy(alice, presence="nobody")
    await store.create_session(SessionRecord("s-alice", alice, 1, 1, 10**13, "", ""), max_live=10, forget_before=0)

    changes = await store.delete_account(alice, 9)
    events = [(c.group.group_id, c.notice.body["system"]["event"] if c.notice else None, c.removed)
              for c in changes]
    assert events == [(team.group.group_id, "owner_changed", ()), (team.group.group_id, "member_left", (alice,)),
                      (solo.group.group_id, "dissolved", (alice,))]
    team_now = await store.get_group(carol, team.group.group_id)
    assert team_now.owner_id == carol  # the admin, ranked above bob
    assert (await store.get_group(bob, team.group.group_id)).member_count == 2

    tombstone = await store.get_user(alice)
    assert tombstone is not None and tombstone.deleted and tombstone.username == "" and tombstone.password_hash == ""
    assert await store.get_user_by_name("alice") is None
    assert await store.create_user("alice", "new", 10) != alice  # the name is free again
    assert await store.get_settings(alice) == UserSettings()
    assert await store.list_contacts(bob) == []
    assert await store.list_blocked(dan) == []
    # What alice sent stays in bob's timeline, from her id; bob can no longer write to her.
    page = await store.history(bob, sent.conversation_id, after=None, before=None, limit=10)
    assert [(m.sender, m.body) for m in page.messages] == [(alice, {"text": "hello bob"}), (bob, {"text": "hi alice"})]
    (summary,) = [c for c in await store.list_conversations(bob, limit=10, before_ts=None) if c.kind == "direct"]
    assert (summary.peer_id, summary.name) == (alice, "")
    with pytest.raises(UserNotFound):
        await store.append_direct(msg(sent.conversation_id, bob, alice, "b2"))
    with pytest.raises(UserNotFound):
        await store.contact_request(bob, alice, 11)
    with pytest.raises(UserNotFound):
        await store.delete_account(alice, 12)
    assert [(r.session_id, r.reason) for r in await store.revoked_sessions(0)] == [("s-alice", "account_deleted")]


async def test_sent_messages_page_through_everything_a_user_sent(store: Store) -> None:
    alice, bob = await users(store, "alice", "bob")
    conversation = direct_conversation_id(alice, bob)
    for i in range(7):
        await store.append_direct(msg(conversation, alice, bob, f"a{i}", f"text {i}"))
    await store.append_direct(msg(conversation, bob, alice, "b0"))
    pages, after = [], ""
    while page := await store.sent_messages(alice, after, 3):
        pages.append([m.client_msg_id for m in page])
        after = page[-1].client_msg_id
    assert pages == [["a0", "a1", "a2"], ["a3", "a4", "a5"], ["a6"]]


async def test_sqlite_commit_delay_still_commits_everything_in_order_and_closes(tmp_path: Path) -> None:
    """With a commit delay the writer waits for more work under steady traffic; sends spread over many loop turns
    are all committed, in order, and close() does not wait on the delay."""
    store = SqliteStore(tmp_path / "pica.db", SqliteConfig(commit_delay_ms=20))
    await store.open()
    alice, bob = await users(store, "alice", "bob")
    pending = []
    for i in range(200):
        pending.append(store.append_direct(msg("d:1:2", alice, bob, f"m{i}")))
        await asyncio.sleep(0)  # one send per loop turn: steady traffic, each a separate hand-off
    results = await asyncio.gather(*pending)
    assert [r.seq for r in results] == list(range(1, 201))
    late = store.append_direct(msg("d:1:2", alice, bob, "last"))
    await asyncio.wait_for(store.close(), 5)
    assert (await late).seq == 201


def messages_in_main_file(path: Path) -> int:
    """Messages in the database file alone, as if its WAL were gone: what checkpoints have copied so far."""
    copy = path.with_name("main-only.db")
    copy.write_bytes(path.read_bytes())
    with contextlib.closing(sqlite3.connect(copy)) as conn:
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'messages'").fetchone() is None:
            return 0
        return int(conn.execute("SELECT count(*) FROM messages").fetchone()[0])


async def fifty_messages_then_wait(path: Path, checkpoint_interval: float, wait: float,
                                   writer: Literal["process", "thread"] = "process") -> SqliteStore:
    """An open store that committed 50 messages ``wait`` seconds ago."""
    store = SqliteStore(path, SqliteConfig(checkpoint_interval=checkpoint_interval, writer=writer))
    await store.open()
    alice, bob = await users(store, "alice", "bob")
    await asyncio.gather(*(store.append_direct(msg("d:1:2", alice, bob, f"m{i}")) for i in range(50)))
    await asyncio.sleep(wait)
    return store


@pytest.mark.parametrize("writer", ["process", "thread"])
async def test_sqlite_checkpoints_run_off_the_commit_path(tmp_path: Path, writer: Literal["process", "thread"]) -> None:
    """The writer never checkpoints (a commit that did would wait for the copy and its fsync); a thread of the
    writer's process copies the WAL into the database file every checkpoint_interval seconds, and stops with it."""
    path = tmp_path / "pica.db"
    store = await fifty_messages_then_wait(path, checkpoint_interval=0.05, wait=0.5, writer=writer)
    assert messages_in_main_file(path) == 50
    child = store._writer.pid if isinstance(store._writer, WriterProcess) else None
    await store.close()
    assert not any(t.name == "pica-sqlite-checkpoint" for t in threading.enumerate())
    assert child is None or not psutil.pid_exists(child)


async def test_sqlite_without_the_checkpoint_thread_leaves_a_small_wal_to_sqlite(tmp_path: Path) -> None:
    """The control for the test above: with checkpoint_interval 0, SQLite checkpoints only past 1,000 WAL pages, so a
    few messages are still only in the WAL."""
    path = tmp_path / "pica.db"
    store = await fifty_messages_then_wait(path, checkpoint_interval=0, wait=0.3)
    assert messages_in_main_file(path) == 0
    await store.close()


def frames_in_wal(path: Path) -> int:
    """Frames in the WAL since SQLite last started it over (a PASSIVE checkpoint's second number), read from a
    connection of the test's own."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return int(conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1])


@pytest.mark.parametrize("writer", ["process", "thread"])
async def test_sqlite_wal_starts_over_under_steady_writes(tmp_path: Path, writer: Literal["process", "thread"]) -> None:
    """Three senders commit one message after another without a pause, about 36 MiB of WAL in all. The checkpoint
    thread alone never finds every frame copied when a write begins, so SQLite never started the WAL over and it
    held every commit since the first; now the writer completes a checkpoint once the WAL passes wal_max_mb, and the
    WAL holds no more than the last stretch."""
    path = tmp_path / "pica.db"
    config = SqliteConfig(checkpoint_interval=0.02, wal_max_mb=1, synchronous="NORMAL", writer=writer)
    store = SqliteStore(path, config)
    await store.open()
    alice, bob, carol, dave = await users(store, "alice", "bob", "carol", "dave")

    async def sender(me: int, peer: int, conversation: str) -> None:
        for i in range(800):
            await store.append_direct(msg(conversation, me, peer, f"{me}-{i}", text="x" * 200))

    await asyncio.gather(sender(alice, bob, "d:1:2"), sender(carol, dave, "d:3:4"), sender(bob, carol, "d:2:3"))
    # Without the bound the WAL ends with every frame since the first commit (36 MiB here); with it, the frames of
    # the last few rounds at most, however slow a loaded machine makes the checkpoint thread.
    assert frames_in_wal(path) * 4096 < 16 * 1024 * 1024
    await store.close()


async def test_an_invite_pays_for_its_uses_until_it_expires_and_a_refused_registration_spends_nothing(
    store: Store,
) -> None:
    await store.create_invite("hash-a", uses=2, expires_at=10_000, now_ms=0)
    await store.create_invite("hash-old", uses=5, expires_at=1_000, now_ms=0)
    first = await store.register_with_invite("hash-a", "alice", "h", 100)
    with pytest.raises(UsernameTaken):
        await store.register_with_invite("hash-a", "alice", "h", 200)  # refused: the invite keeps its use
    second = await store.register_with_invite("hash-a", "bob", "h", 300)
    assert second > first
    for code, name, now in [("hash-a", "carol", 400), ("hash-old", "dave", 2_000), ("unknown", "erin", 0)]:
        with pytest.raises(Forbidden, match="invite"):
            await store.register_with_invite(code, name, "h", now)  # used up, expired, unknown
    assert await store.get_user_by_name("carol") is None and await store.get_user_by_name("dave") is None


async def test_the_writer_reports_each_commit_before_answering_it(store: Store) -> None:
    """What /metrics shows of the store (pica_store_commit_*): every transaction of the writer (SQLite's, in a
    thread or its own process; PostgreSQL's write lanes) with its operations and timings, told before its callers
    are answered, and the operations still waiting."""
    reports: list[tuple[int, float, float]] = []
    store.observe_commits(lambda operations, seconds, commit: reports.append((operations, seconds, commit)))
    alice, bob = await users(store, "alice", "bob")
    reports.clear()
    sends = [asyncio.ensure_future(store.append_direct(msg("d:1:2", alice, bob, f"m{i}"))) for i in range(200)]
    await asyncio.sleep(0)
    assert store.write_backlog() > 0
    first = await sends[0]
    assert reports, "the commit holding the first send was reported before its answer"
    await asyncio.gather(*sends)
    assert first.seq == 1 and store.write_backlog() == 0
    assert sum(operations for operations, _, _ in reports) == 200
    for operations, seconds, commit in reports:
        assert 1 <= operations <= 64 and 0 < commit <= seconds < 30  # max_batch is 64 in these stores
    store.observe_commits(None)
    await store.append_direct(msg("d:1:2", alice, bob, "after"))
    assert sum(operations for operations, _, _ in reports) == 200
