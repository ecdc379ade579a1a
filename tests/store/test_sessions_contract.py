"""The store's sessions (pica/store/sessions.py), on every backend: creation with its cap, the refresh token's
rotation and reuse detection, revocation, the password change that ends the other sessions, and the poll every node
makes to close the sockets of ended sessions."""

from __future__ import annotations

import asyncio

import pytest

from pica.errors import UserNotFound
from pica.store.base import Refreshed, SessionRecord, Store
from pica.store.sessions import refresh_decision
from tests.store.test_contract import store, users

__all__ = ["store"]  # the fixture, run for every backend

DAY = 86_400_000


def session(session_id: str, user_id: int, now: int, *, ttl: int = DAY, agent: str = "phone") -> SessionRecord:
    return SessionRecord(session_id, user_id, now, now, now + ttl, "10.0.0.1", agent)


async def test_a_session_is_listed_for_its_user_until_it_is_revoked(store: Store) -> None:
    alice, bob = await users(store, "alice", "bob")
    await store.create_session(session("s-phone", alice, 1_000), max_live=10, forget_before=0)
    await store.create_session(session("s-laptop", alice, 2_000, agent="laptop"), max_live=10, forget_before=0)
    await store.create_session(session("s-bob", bob, 3_000), max_live=10, forget_before=0)

    listed = await store.list_sessions(alice, now_ms=5_000)
    assert [s.session_id for s in listed] == ["s-laptop", "s-phone"]  # the most recently used first
    assert listed[0] == SessionRecord("s-laptop", alice, 2_000, 2_000, 2_000 + DAY, "10.0.0.1", "laptop")
    state = await store.session_state("s-phone")
    assert state is not None and (state.user_id, state.revoked, state.banned) == (alice, False, False)

    assert not await store.revoke_session(bob, "s-phone", 6_000, "revoked_by_user")  # not bob's to end
    assert await store.revoke_session(alice, "s-phone", 6_000, "logout")
    assert not await store.revoke_session(alice, "s-phone", 7_000, "logout")  # ended already
    state = await store.session_state("s-phone")
    assert state is not None and state.revoked
    assert [s.session_id for s in await store.list_sessions(alice, 8_000)] == ["s-laptop"]
    assert await store.session_state("nope") is None


async def test_the_refresh_token_rotates_and_an_old_one_coming_back_ends_the_session(store: Store) -> None:
    (alice,) = await users(store, "alice")
    await store.create_session(session("s1", alice, 0), max_live=10, forget_before=0)

    first = await store.refresh_session("s1", 0, now_ms=100_000, ttl_ms=DAY, grace_ms=10_000)
    assert first == Refreshed("rotated", alice, 1, 100_000 + DAY)
    # The answer was lost and the client sends generation 0 again, within the grace: served, not punished.
    again = await store.refresh_session("s1", 0, now_ms=105_000, ttl_ms=DAY, grace_ms=10_000)
    assert again == Refreshed("rotated", alice, 2, 105_000 + DAY)
    listed = await store.list_sessions(alice, 106_000)
    assert listed[0].last_used_at == 105_000 and listed[0].expires_at == 105_000 + DAY

    # Generation 1 is now old, and the grace is past: whoever sends it, the family is ended.
    reused = await store.refresh_session("s1", 1, now_ms=200_000, ttl_ms=DAY, grace_ms=10_000)
    assert reused == Refreshed("reused", alice)
    state = await store.session_state("s1")
    assert state is not None and state.revoked
    # The current token is refused now too: the thief and the owner both log in again.
    assert (await store.refresh_session("s1", 2, 200_001, DAY, 10_000)).outcome == "revoked"
    assert (await store.refresh_session("nope", 0, 200_001, DAY, 10_000)).outcome == "unknown"
    assert [(r.session_id, r.user_id, r.reason) for r in await store.revoked_sessions(200_000)] == [
        ("s1", alice, "refresh_reuse")]


async def test_a_lapsed_session_cannot_be_refreshed_and_a_banned_user_cannot_refresh(store: Store) -> None:
    alice, bob = await users(store, "alice", "bob")
    await store.create_session(session("old", alice, 0, ttl=1_000), max_live=10, forget_before=0)
    await store.create_session(session("bobs", bob, 0), max_live=10, forget_before=0)
    assert (await store.refresh_session("old", 0, 1_000, DAY, 0)).outcome == "expired"
    await store.set_banned(bob, True)
    assert (await store.refresh_session("bobs", 0, 1_000, DAY, 0)).outcome == "banned"
    state = await store.session_state("bobs")
    assert state is not None and state.banned


async def test_beyond_the_cap_the_least_recently_used_sessions_end(store: Store) -> None:
    (alice,) = await users(store, "alice")
    for i in range(3):
        await store.create_session(session(f"s{i}", alice, 1_000 * (i + 1)), max_live=3, forget_before=0)
    await store.refresh_session("s0", 0, 10_000, DAY, 0)  # s0 is used again: s1 is now the least recent
    await store.create_session(session("s3", alice, 20_000), max_live=3, forget_before=0)
    assert sorted(s.session_id for s in await store.list_sessions(alice, 30_000)) == ["s0", "s2", "s3"]
    assert [r.session_id for r in await store.revoked_sessions(0)] == ["s1"]


async def test_accounts_and_sessions_made_in_bulk_are_the_ones_made_one_by_one(store: Store) -> None:
    (alice,) = await users(store, "alice")
    made = await store.create_users(["bob", "alice", "carol"], "hash", 5)
    bob, taken, carol = made
    assert taken is None and bob is not None and carol is not None  # the taken name made nothing, the rest went on
    assert len({alice, bob, carol}) == 3
    record = await store.get_user_by_name("carol")
    assert record is not None and (record.user_id, record.password_hash, record.created_at) == (carol, "hash", 5)

    await store.create_session(session("old", bob, 1_000), max_live=2, forget_before=0)
    await store.create_sessions([session("b1", bob, 2_000), session("c1", carol, 2_000),
                                 session("b2", bob, 3_000)], max_live=2, forget_before=0)
    # The cap applies within the batch as it does across logins: bob's least recently used session ended.
    assert [s.session_id for s in await store.list_sessions(bob, 4_000)] == ["b2", "b1"]
    assert [s.session_id for s in await store.list_sessions(carol, 4_000)] == ["c1"]
    assert [r.session_id for r in await store.revoked_sessions(0)] == ["old"]
    await store.create_sessions([], max_live=2, forget_before=0)  # nothing to do is no error


async def test_a_password_change_ends_every_other_session_in_the_same_commit(store: Store) -> None:
    alice, bob = await users(store, "alice", "bob")
    for sid, user in (("here", alice), ("there", alice), ("elsewhere", alice), ("bobs", bob)):
        await store.create_session(session(sid, user, 0), max_live=10, forget_before=0)
    assert await store.set_password(alice, "new-hash", 5_000, keep="here") == 2
    record = await store.get_user(alice)
    assert record is not None and record.password_hash == "new-hash"
    assert [s.session_id for s in await store.list_sessions(alice, 6_000)] == ["here"]
    assert [s.session_id for s in await store.list_sessions(bob, 6_000)] == ["bobs"]
    # An administrator's reset keeps none.
    assert await store.set_password(alice, "reset-hash", 7_000) == 1
    assert await store.list_sessions(alice, 8_000) == []
    assert await store.revoke_user_sessions(bob, 9_000, "admin") == 1
    with pytest.raises(UserNotFound):
        await store.set_password(alice + bob + 100, "x", 0)


async def test_ended_and_lapsed_sessions_are_forgotten_after_a_while(store: Store) -> None:
    (alice,) = await users(store, "alice")
    await store.create_session(session("ended", alice, 0), max_live=10, forget_before=0)
    await store.create_session(session("lapsed", alice, 0, ttl=500), max_live=10, forget_before=0)
    await store.create_session(session("live", alice, 0), max_live=10, forget_before=0)
    await store.revoke_session(alice, "ended", 1_000, "logout")
    assert await store.forget_sessions(before_ms=900) == 1  # only "lapsed" ended before 900
    assert await store.forget_sessions(before_ms=2_000) == 1
    assert await store.session_state("ended") is None and await store.session_state("lapsed") is None
    # A login forgets its user's long-ended rows too.
    await store.create_session(session("gone", alice, 3_000), max_live=10, forget_before=0)
    await store.revoke_session(alice, "gone", 4_000, "logout")
    await store.create_session(session("new", alice, 9_000), max_live=10, forget_before=5_000)
    assert await store.session_state("gone") is None
    assert {s.session_id for s in await store.list_sessions(alice, 9_000)} == {"live", "new"}


async def test_two_refreshes_of_one_token_at_once_rotate_once(store: Store) -> None:
    """Two nodes (or two tabs) racing with the same refresh token: one rotates, the other, with no grace, is a
    reuse. Never two rotations from one token."""
    (alice,) = await users(store, "alice")
    await store.create_session(session("s1", alice, 0), max_live=10, forget_before=0)
    results = await asyncio.gather(*(store.refresh_session("s1", 0, 1_000, DAY, 0) for _ in range(2)))
    assert sorted(r.outcome for r in results) == ["reused", "rotated"]


@pytest.mark.parametrize(("presented", "now", "expected"), [
    (5, 0, None), (4, 9, None), (4, 10, "reused"), (3, 0, "reused"), (6, 0, "unknown"),
])
def test_the_refresh_rule(presented: int, now: int, expected: str | None) -> None:
    assert refresh_decision(current=5, rotated_at=0, expires_at=1_000, revoked=False, banned=False,
                            presented=presented, now_ms=now, grace_ms=10) == expected
    assert refresh_decision(5, 0, 1_000, True, False, 5, 0, 10) == "revoked"
    assert refresh_decision(5, 0, 1_000, False, False, 5, 1_000, 10) == "expired"
