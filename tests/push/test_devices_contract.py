"""The store's push targets and notification settings (pica/store/devices.py), on every backend: a device lives as
long as its session, a token moves to its latest registration, the cap per user, the settings, and the reads a push
job makes (candidates, devices, unread totals); and the push job row a message writes in its own transaction."""

from __future__ import annotations

import pytest

from pica.errors import ConversationNotFound, TooManyDevices
from pica.protocol.ids import direct_conversation_id
from pica.store.base import DeviceRecord, JobRules, NotificationSetting, SessionRecord, Store
from tests.store.test_contract import msg, store, users

__all__ = ["store"]  # the fixture, run for every backend

DAY = 86_400_000


def device(device_id: str, user_id: int, session_id: str, token: str, platform: str = "fcm") -> DeviceRecord:
    return DeviceRecord(device_id, user_id, session_id, platform, token, "", "", 1_000)


async def signed_in(store: Store, user_id: int, session_id: str, ttl: int = DAY) -> None:
    await store.create_session(SessionRecord(session_id, user_id, 0, 0, ttl, "10.0.0.1", "phone"), max_live=10,
                               forget_before=0)


async def test_a_device_lives_as_long_as_its_session_and_a_token_moves_to_its_last_registration(
        store: Store) -> None:
    alice, bob = await users(store, "alice", "bob")
    await signed_in(store, alice, "phone")
    await signed_in(store, alice, "laptop")
    await signed_in(store, bob, "bobs")
    await store.register_device(device("d1", alice, "phone", "tok-1"), 10, 1_000)
    await store.register_device(device("d2", alice, "laptop", "tok-2"), 10, 1_000)
    assert [d.device_id for d in await store.list_devices(alice, 2_000)] == ["d1", "d2"]

    # The phone passes to bob: its token registered by bob's session is bob's device now, not alice's.
    await store.register_device(device("d3", bob, "bobs", "tok-1"), 10, 3_000)
    assert [d.device_id for d in await store.list_devices(alice, 4_000)] == ["d2"]
    assert [(d.device_id, d.token) for d in await store.list_devices(bob, 4_000)] == [("d3", "tok-1")]

    # Alice logs out of the laptop: its device is gone with the session.
    assert await store.revoke_session(alice, "laptop", 5_000, "logout")
    assert await store.list_devices(alice, 6_000) == []
    audience = await store.push_audience([alice], 6_000)
    assert audience.devices == [] and audience.ended == ["d2"]
    assert await store.drop_devices(audience.ended) == 1

    assert not await store.remove_device(alice, "d3")  # not hers
    assert await store.remove_device(bob, "d3")
    assert await store.list_devices(bob, 7_000) == []


async def test_devices_per_user_are_capped_counting_live_sessions_only(store: Store) -> None:
    (alice,) = await users(store, "alice")
    await signed_in(store, alice, "short", ttl=5_000)
    await signed_in(store, alice, "long")
    await store.register_device(device("d1", alice, "short", "t1"), 2, 1_000)
    await store.register_device(device("d2", alice, "long", "t2"), 2, 1_000)
    with pytest.raises(TooManyDevices):
        await store.register_device(device("d3", alice, "long", "t3"), 2, 2_000)
    await store.register_device(device("d2b", alice, "long", "t2"), 2, 2_000)  # the same token again: replaced
    # Once the short session has expired its device no longer counts, and is deleted by the next registration.
    await store.register_device(device("d3", alice, "long", "t3"), 2, 6_000)
    assert [d.device_id for d in await store.list_devices(alice, 6_000)] == ["d2b", "d3"]
    assert (await store.push_audience([alice], 6_000)).ended == []


async def test_notification_settings_and_the_push_jobs_reads(store: Store) -> None:
    alice, bob, carol = await users(store, "alice", "bob", "carol")
    conversation = direct_conversation_id(alice, bob)
    with pytest.raises(ConversationNotFound):
        await store.set_notification_setting(bob, NotificationSetting(conversation, "none"))
    for n in range(3):
        await store.append_direct(msg(conversation, alice, bob, f"m{n}", text=f"hi {n}"))
    await signed_in(store, bob, "bobs")
    await store.register_device(device("d1", bob, "bobs", "tok"), 10, 1_000)

    assert await store.get_notification_setting(bob, conversation) == NotificationSetting(conversation)
    await store.set_notification_setting(bob, NotificationSetting(conversation, "mentions", 99_000))
    assert await store.get_notification_setting(bob, conversation) == NotificationSetting(conversation, "mentions",
                                                                                          99_000)
    with pytest.raises(ConversationNotFound):
        await store.get_notification_setting(carol, conversation)
    assert not await store.get_push_privacy(bob)
    await store.set_push_privacy(bob, True)
    assert await store.get_push_privacy(bob)

    message, candidates = await store.push_candidates(conversation, 2)
    assert message is not None and message.message.body == {"text": "hi 1"} and message.sender_name == "alice"
    assert message.state == "" and message.group_name == ""
    assert [(c.user_id, c.delivered_seq, c.level, c.mute_until, c.privacy) for c in candidates] == [
        (bob, 0, "mentions", 99_000, True)]  # alice is the sender; carol is no member
    assert (await store.push_candidates(conversation, 9)) == (None, [])
    await store.mark_read(bob, conversation, 1)
    audience = await store.push_audience([bob], 2_000)
    assert [d.device_id for d in audience.devices] == ["d1"] and audience.badges == {bob: 2}


async def test_a_message_queues_one_push_job_due_after_the_delay_in_its_own_transaction(store: Store) -> None:
    alice, bob = await users(store, "alice", "bob")
    store.set_job_rules(JobRules(push_delay_ms=3_000))
    conversation = direct_conversation_id(alice, bob)
    ack = await store.append_direct(msg(conversation, alice, bob, "m1", ts=10_000))
    jobs = await store.list_jobs(None, 10)
    assert [(j.kind, j.key, j.target, j.run_at) for j in jobs] == [
        ("push", f"{conversation}/{ack.seq}", conversation, 13_000)]
    assert await store.claim_jobs(12_999, 1_000, 10) == []  # not due before the delay
    assert [j.key for j in await store.claim_jobs(13_000, 1_000, 10)] == [f"{conversation}/{ack.seq}"]
