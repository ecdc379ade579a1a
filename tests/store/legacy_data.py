"""Data for the migration-upgrade tests (test_migrations.py), written and read through the Store interface only, so
that the same code runs on the previous release and on the current one.

Run as a script by a Python whose ``PYTHONPATH`` points at a tree of the previous release (``git archive``), it
creates a database with that release's code and prints what that code reads back from it, as JSON::

    python tests/store/legacy_data.py sqlite /path/to/pica.db
    python tests/store/legacy_data.py postgres postgresql://…/test SCHEMA

Imported by the tests, :func:`snapshot` reads the same things from the upgraded database with the current code.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import sys
from pathlib import Path
from typing import Any

import msgspec

import pica
from pica.store.base import DirectAppend, EventAppend, GroupAction, GroupAppend, Store

NAMES = ("alice", "bob", "carol", "dave")
MANY = 10**6


async def set_last_seen(store: Store, user_id: int, ts: int) -> None:
    """The previous release's ``set_last_seen(user_id, ts)`` took one user; this one's takes a mapping."""
    setter: Any = store.set_last_seen
    if "seen" in inspect.signature(setter).parameters:
        await setter({user_id: ts})
    else:
        await setter(user_id, ts)


def body(text: str) -> bytes:
    return json.dumps({"text": text}).encode()


def direct(a: int, b: int) -> str:
    return f"d:{min(a, b)}:{max(a, b)}"


async def populate(store: Store) -> None:
    """Users, two 1:1 conversations (one edit, one recall), a group with four members (roles changed, one added
    later), cursors moved, a message hidden, contacts accepted and pending, a block, a setting, a ban."""
    alice, bob, carol, dave = [await store.create_user(name, f"hash-{name}", 1_000 + i) for i, name in
                               enumerate(NAMES)]
    ab, ac = direct(alice, bob), direct(alice, carol)
    for i in range(6):
        sender, recipient = (alice, bob) if i % 2 == 0 else (bob, alice)
        await store.append_direct(DirectAppend(ab, sender, recipient, f"ab-{i}", body(f"hello {i}"), 2_000 + i,
                                               f"hello {i}"))
    for i in range(2):
        await store.append_direct(DirectAppend(ac, carol, alice, f"ca-{i}", body(f"ciao {i}"), 2_100 + i,
                                               f"ciao {i}"))
    change = await store.create_group(alice, "book club", [bob, carol], 3_000, 100)
    group_id, group = change.group.group_id, change.group.conversation_id
    for i, sender in enumerate((alice, bob, carol)):
        await store.append_group(GroupAppend(group, sender, f"g-{i}", body(f"chapter {i}"), 3_001 + i,
                                             f"chapter {i}"))
    await store.group_action(GroupAction("add", alice, group_id, 3_100, (dave,), max_members=100))
    await store.group_action(GroupAction("role", alice, group_id, 3_101, (bob,), role="admin"))
    await store.append_group(GroupAppend(group, dave, "g-dave", body("hi all"), 3_102, "hi all"))
    await store.append_event(EventAppend("edit", ab, alice, 1, "edit-1", 4_000, text="hello 0, edited"))
    await store.append_event(EventAppend("recall", ab, bob, 2, "recall-2", 4_001, window_ms=MANY))
    await store.append_direct(DirectAppend(ab, alice, bob, "ab-last", body("are you there"), 4_002))
    # cursors (sending marks read: bob's read cursor is at his recall, 8): delivered 9, read 8
    await store.mark_delivered(bob, ab, 9)
    await store.mark_read(alice, ac, 2)
    await store.mark_read(carol, group, 6)
    await store.mark_delivered(bob, group, 6)
    await store.hide_message(bob, ab, 3, 5_000)
    await store.contact_request(alice, bob, 6_000)
    await store.contact_respond(bob, alice, True, 6_001)
    await store.contact_request(carol, alice, 6_002)
    await store.set_blocked(dave, bob, True, 6_003)
    await store.set_only_contacts(carol, True)
    await set_last_seen(store, alice, 7_000)
    await store.set_banned(dave, True)


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=_fields))


def _fields(value: Any) -> Any:
    """A record's fields: a dataclass's, or a ``msgspec.Struct``'s (the frames a sync page holds since a release
    after the previous one; the frame's ``t`` comes along, which the old records lack and the comparison allows)."""
    if isinstance(value, msgspec.Struct):
        return msgspec.to_builtins(value)
    return dataclasses.asdict(value)


def _audience(audience: Any) -> list[int]:
    """The ids told of a user's presence: a list of them in releases before the presence setting, a
    ``PresenceAudience`` since (this file runs with both)."""
    viewers = getattr(audience, "viewers", None)
    return sorted(audience if viewers is None else (v.user_id for v in viewers))


async def snapshot(store: Store) -> dict[str, Any]:
    """Everything the users of :func:`populate` can read, as plain JSON values."""
    users = {name: await store.get_user_by_name(name) for name in NAMES}
    ids = [u.user_id for u in users.values() if u is not None]
    out: dict[str, Any] = {"users": users}
    for name, user in users.items():
        assert user is not None
        me = user.user_id
        conversations = await store.list_conversations(me, limit=100, before_ts=None)
        groups = await store.list_groups(me)
        out[name] = {
            "conversations": conversations,
            "history": {c.conversation_id: await store.history(me, c.conversation_id, after=None, before=None,
                                                               limit=1_000) for c in conversations},
            "cursors": {c.conversation_id: await store.member_cursors(me, c.conversation_id)
                        for c in conversations if not c.conversation_id.startswith("u:")},
            "sync": await store.sync(me, {}, 1_000),
            "groups": groups,
            "members": {g.group_id: await store.group_members(me, g.group_id) for g in groups},
            "contacts": await store.list_contacts(me),
            "blocked": await store.list_blocked(me),
            "only_contacts": await store.get_only_contacts(me),
            "audience": _audience(await store.presence_audience(me)),
            "presence": await store.presence_of(me, ids),
            "search": await store.search(me, "hello", conversation_id=None, limit=50),
        }
    return dict(_plain(out))


def open_store(kind: str, target: str, schema: str = "") -> Store:
    if kind == "sqlite":
        from pica.store.sqlite import SqliteStore

        return SqliteStore(Path(target))
    from pica.config import PostgresConfig
    from pica.store.postgres import PostgresStore

    return PostgresStore(target, PostgresConfig(schema=schema, pool_size=2, write_lanes=1))


async def _main(argv: list[str]) -> dict[str, Any]:
    store = open_store(*argv)
    await store.open()
    try:
        await populate(store)
        return {"pica": pica.__file__, "snapshot": await snapshot(store)}
    finally:
        await store.close()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(_main(sys.argv[1:]))))
