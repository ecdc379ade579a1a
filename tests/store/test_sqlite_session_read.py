"""The session-state read SQLite answers on the event loop (``SqliteStore.session_states``): it reads the store
every time, with nothing cached, so a session ended or a user banned by another process (``pica user revoke``,
another worker) is refused at the next read."""

from __future__ import annotations

import sqlite3

import pytest

from pica.store.base import SessionRecord
from pica.store.sqlite import SqliteStore

DAY = 86_400_000


@pytest.fixture
def store(sqlite_store: SqliteStore) -> SqliteStore:
    return sqlite_store


async def a_session(store: SqliteStore) -> tuple[int, str]:
    user = await store.create_user("alice", "x", 0)
    await store.create_session(SessionRecord("s-phone", user, 0, 0, DAY, "10.0.0.1", "phone"), 10, 0)
    return user, "s-phone"


async def test_a_session_ended_or_a_user_banned_by_another_process_is_seen_at_the_next_read(
        store: SqliteStore) -> None:
    user, session_id = await a_session(store)
    state = (await store.session_states([session_id]))[session_id]
    assert (state.user_id, state.revoked, state.banned) == (user, False, False)

    other = sqlite3.connect(store.path, isolation_level=None)  # as a CLI command or another worker writes
    try:
        other.execute("UPDATE sessions SET revoked_at = 1, revoked_reason = 'logout' WHERE session_id = ?",
                      (session_id,))
        assert (await store.session_states([session_id]))[session_id].revoked
        other.execute("UPDATE users SET banned = 1 WHERE user_id = ?", (user,))
        assert (await store.session_states([session_id]))[session_id].banned
    finally:
        other.close()
    assert await store.session_states(["nope"]) == {}
