"""Presence announcements in batches (``SocialService``): the changes of one loop turn, or of ``presence_delay``,
are announced together, with one audience read and one look at who is online; each user's audience is still exactly
the presence rule's (blocks, the ``presence`` setting), and a user who went offline has their last seen stored."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence

import pytest

from pica.core.ports import SystemClock
from pica.core.social import MAX_ANNOUNCEMENTS_PER_BATCH, SocialService
from pica.protocol import frames as f
from pica.protocol.ids import direct_conversation_id
from pica.protocol.outbound import OutboundFrame
from pica.store.base import DirectAppend, PresenceAudience
from pica.store.sqlite import SqliteStore


class Wire:
    """Delivery and presence: records who was told what, and answers who is online."""

    def __init__(self) -> None:
        self.online_users: set[int] = set()
        self.told: list[tuple[list[int], f.Presence]] = []
        self.lookups = 0

    def deliver(self, user_ids: Iterable[int], frame: OutboundFrame, exclude: object | None = None) -> None:
        assert isinstance(frame.frame, f.Presence)
        self.told.append((list(user_ids), frame.frame))

    def is_online(self, user_id: int) -> bool:
        return user_id in self.online_users

    async def online(self, user_ids: Iterable[int]) -> set[int]:
        self.lookups += 1
        return {u for u in user_ids if u in self.online_users}

    def of(self, user_id: int) -> list[tuple[list[int], bool, int]]:
        return [(sorted(to), p.online, p.last_seen) for to, p in self.told if p.user_id == user_id]


class CountingStore:
    """The store's audience read and last-seen write, counted (and the write made to fail on demand)."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.audience_reads: list[list[int]] = []
        self.fail_last_seen = False

    async def presence_audiences(self, user_ids: Sequence[int]) -> dict[int, PresenceAudience]:
        self.audience_reads.append(list(user_ids))
        return await self.store.presence_audiences(user_ids)

    async def set_last_seen(self, seen: Mapping[int, int]) -> None:
        if self.fail_last_seen:
            raise OSError("disk gone")
        await self.store.set_last_seen(seen)


async def make(store: SqliteStore, delay: float = 0.0) -> tuple[SocialService, Wire, CountingStore]:
    wire = Wire()
    counting = CountingStore(store)
    social = SocialService(counting, wire, SystemClock(), wire, None, delay)  # type: ignore[arg-type]
    return social, wire, counting


async def people(store: SqliteStore, *names: str) -> list[int]:
    return [await store.create_user(name, "x", 0) for name in names]


async def befriend(store: SqliteStore, a: int, b: int) -> None:
    await store.contact_request(a, b, 1)
    await store.contact_respond(b, a, True, 1)


async def chat(store: SqliteStore, a: int, b: int) -> None:
    await store.append_direct(DirectAppend(direct_conversation_id(a, b), a, b, f"m{a}-{b}", b'{"text":"hi"}', 1))


async def settle(social: SocialService) -> None:
    await asyncio.sleep(0)  # the batch starts at the end of the turn
    await social.drain()


async def test_the_changes_of_one_turn_share_one_read_and_each_audience_follows_the_rule(
        sqlite_store: SqliteStore) -> None:
    store = sqlite_store
    alice, bob, carol, dan, eve, mallory = await people(store, "alice", "bob", "carol", "dan", "eve", "mallory")
    await befriend(store, alice, bob)
    await chat(store, alice, carol)  # a 1:1 peer, not a contact
    await befriend(store, alice, mallory)
    await store.set_blocked(alice, mallory, True, 2)  # blocked after: mallory is never told of alice
    await befriend(store, bob, dan)
    await chat(store, bob, eve)
    await store.set_privacy(bob, presence="contacts")  # eve, only a 1:1 peer of bob's, is not told
    await befriend(store, carol, dan)
    await store.set_privacy(carol, presence="nobody")
    social, wire, counting = await make(store)
    wire.online_users = {alice, bob, carol}
    for user in (alice, bob, carol):
        social.on_presence_change(user, True)
    await settle(social)

    assert counting.audience_reads == [[alice, bob, carol]] and wire.lookups == 1
    assert wire.of(alice) == [([bob, carol], True, 0)]
    assert wire.of(bob) == [([alice, dan], True, 0)]
    assert wire.of(carol) == [([], True, 0)]
    assert all(mallory not in to and eve not in to for to, _ in wire.told)


async def bobs_two_friends(store: SqliteStore) -> tuple[int, int, int]:
    alice, bob, carol = await people(store, "alice", "bob", "carol")
    await befriend(store, alice, bob)
    await befriend(store, carol, bob)
    return alice, bob, carol


async def test_going_offline_stores_last_seen_and_a_flap_in_one_batch_is_announced_once_as_it_ended(
        sqlite_store: SqliteStore) -> None:
    store = sqlite_store
    alice, bob, carol = await bobs_two_friends(store)
    social, wire, _ = await make(store)
    social.on_presence_change(alice, False)  # alice leaves for good
    social.on_presence_change(carol, False)  # carol leaves and is back within the batch
    social.on_presence_change(carol, True)
    wire.online_users = {carol}
    await settle(social)

    (alice_seen,) = await store.presence_of(bob, [alice])
    (carol_seen,) = await store.presence_of(bob, [carol])
    assert alice_seen.last_seen > 0 and carol_seen.last_seen > 0
    assert wire.of(alice) == [([bob], False, alice_seen.last_seen)]  # the time stored is the time told
    assert wire.of(carol) == [([bob], True, 0)]


async def test_a_failed_last_seen_write_drops_those_who_left_and_still_announces_the_others(
        sqlite_store: SqliteStore) -> None:
    alice, bob, carol = await bobs_two_friends(sqlite_store)
    social, wire, counting = await make(sqlite_store)
    counting.fail_last_seen = True
    wire.online_users = {carol}
    social.on_presence_change(alice, False)
    social.on_presence_change(carol, True)
    await settle(social)
    assert wire.of(alice) == [] and wire.of(carol) == [([bob], True, 0)]
    assert counting.audience_reads == [[carol]]


@pytest.mark.parametrize("delay", [0.0, 3600.0])
async def test_a_full_batch_starts_at_once_and_the_rest_waits_for_company_until_the_drain(
        sqlite_store: SqliteStore, delay: float) -> None:
    """With an hour's delay, only the limit can start the first batch and only the drain (at shutdown) the second
    (the test's timeout fails it otherwise)."""
    store = sqlite_store
    users = await store.create_users([f"u{i}" for i in range(MAX_ANNOUNCEMENTS_PER_BATCH + 1)], "x", 0)
    ids = [u for u in users if u is not None]
    social, _, counting = await make(store, delay)
    for user in ids:
        social.on_presence_change(user, False)
    first, rest = ids[:MAX_ANNOUNCEMENTS_PER_BATCH], ids[MAX_ANNOUNCEMENTS_PER_BATCH:]
    while len(counting.audience_reads) < (1 if delay else 2):
        await asyncio.sleep(0.001)
    assert counting.audience_reads == ([first] if delay else [first, rest])
    await social.drain()
    assert counting.audience_reads == [first, rest]
    seen = await store.presence_of(ids[-1], [ids[-1]])
    assert seen[0].last_seen > 0  # stored before the store would close
