"""Pins and a user's own conversation state in the store, on every backend: who may pin, the notice in the timeline,
the limit, what the list shows; drafts and list settings kept per user and read with the conversation list."""

from __future__ import annotations

import pytest

from pica.errors import ConversationNotFound, Forbidden, MessageNotFound, TooManyPins
from pica.protocol.ids import direct_conversation_id
from pica.store.base import DirectAppend, EventAppend, GroupAction, GroupAppend, NotificationSetting, PrefsChange, Store
from tests.store.test_contract import store, users

__all__ = ["store"]


async def chat(store: Store, sender: int, recipient: int, *texts: str) -> str:
    conversation = direct_conversation_id(sender, recipient)
    for index, text in enumerate(texts):
        await store.append_direct(DirectAppend(conversation, sender, recipient, f"{text}-{index}",
                                               f'{{"text":"{text}"}}'.encode(), 1_000 + index))
    return conversation


async def test_either_member_of_a_direct_conversation_pins_and_the_timeline_says_so(store: Store) -> None:
    alice, bob, carol = await users(store, "alice", "bob", "carol")
    conversation = await chat(store, alice, bob, "one", "two")
    change = await store.set_pin(bob, conversation, 1, True, 5_000, max_pins=10)
    assert change.notice is not None
    assert (change.notice.seq, change.notice.sender, change.notice.body) == (
        3, bob, {"system": {"event": "pinned", "seq": 1, "by": bob}})
    assert change.notice.client_msg_id == f"~n:{conversation}:3"
    assert (await store.set_pin(alice, conversation, 1, True, 5_001, max_pins=10)).notice is None  # so already
    for reader in (alice, bob):
        pins = await store.list_pins(reader, conversation)
        assert [(p.message.seq, p.message.body, p.pinned_by, p.ts) for p in pins] == [(1, {"text": "one"}, bob, 5_000)]
    page = await store.history(alice, conversation, after=0, before=None, limit=10)
    assert [m.seq for m in page.messages] == [1, 2, 3]

    with pytest.raises(ConversationNotFound):
        await store.set_pin(carol, conversation, 1, True, 5_002, max_pins=10)
    with pytest.raises(ConversationNotFound):
        await store.list_pins(carol, conversation)
    with pytest.raises(MessageNotFound):
        await store.set_pin(alice, conversation, 9, True, 5_002, max_pins=10)
    with pytest.raises(Forbidden):  # the pin notice itself
        await store.set_pin(alice, conversation, 3, True, 5_002, max_pins=10)

    unpinned = await store.set_pin(alice, conversation, 1, False, 5_003, max_pins=10)
    assert unpinned.notice is not None and unpinned.notice.body["system"]["event"] == "unpinned"
    assert await store.list_pins(bob, conversation) == []
    assert (await store.set_pin(alice, conversation, 1, False, 5_004, max_pins=10)).notice is None


async def test_pins_are_limited_and_a_recalled_message_leaves_the_list(store: Store) -> None:
    alice, bob = await users(store, "alice", "bob")
    conversation = await chat(store, alice, bob, "a", "b", "c")
    await store.set_pin(alice, conversation, 1, True, 5_000, max_pins=2)
    await store.set_pin(alice, conversation, 2, True, 5_001, max_pins=2)
    with pytest.raises(TooManyPins):
        await store.set_pin(alice, conversation, 3, True, 5_002, max_pins=2)
    assert [p.message.seq for p in await store.list_pins(bob, conversation)] == [2, 1]  # latest pin first
    await store.append_event(EventAppend("recall", conversation, alice, 2, "r", 1_010, window_ms=60_000))
    assert [p.message.seq for p in await store.list_pins(bob, conversation)] == [1]
    await store.set_pin(alice, conversation, 3, True, 5_003, max_pins=2)  # the recalled one no longer counts
    with pytest.raises(Forbidden):  # a recalled message cannot be pinned again
        await store.set_pin(alice, conversation, 2, True, 5_004, max_pins=5)


async def test_in_a_group_only_the_owner_and_admins_pin(store: Store) -> None:
    owner, member, late = await users(store, "owner", "member", "late")
    created = await store.create_group(owner, "team", [member], 10, 100)
    group_id = created.group.group_id
    conversation = f"g:{group_id}"
    await store.append_group(GroupAppend(conversation, member, "m1", b'{"text":"hello"}', 11))
    with pytest.raises(Forbidden):
        await store.set_pin(member, conversation, 2, True, 12, max_pins=10)
    change = await store.set_pin(owner, conversation, 2, True, 12, max_pins=10)
    assert change.notice is not None and change.members_version > 0
    await store.group_action(GroupAction("role", owner, group_id, 13, (member,), role="admin"))
    await store.set_pin(member, conversation, 2, False, 14, max_pins=10)
    await store.set_pin(member, conversation, 2, True, 15, max_pins=10)
    await store.group_action(GroupAction("add", owner, group_id, 16, (late,), max_members=100))
    assert await store.list_pins(late, conversation) == []  # pinned before they joined: not theirs to see
    assert [p.message.seq for p in await store.list_pins(owner, conversation)] == [2]


async def test_drafts_and_list_settings_are_each_users_own(store: Store) -> None:
    alice, bob, carol = await users(store, "alice", "bob", "carol")
    conversation = await chat(store, alice, bob, "hi")
    assert await store.prefs_of(alice, [conversation]) == {}
    saved = await store.set_prefs(alice, conversation, PrefsChange(draft="half a thou"), 7_000)
    assert (saved.draft, saved.draft_ts, saved.pinned_at, saved.archived) == ("half a thou", 7_000, 0, False)
    changed = await store.set_prefs(alice, conversation, PrefsChange(pinned=True, archived=True, marked_unread=True),
                                    7_001)
    assert (changed.draft, changed.draft_ts, changed.pinned_at, changed.archived, changed.marked_unread) == (
        "half a thou", 7_000, 7_001, True, True)
    again = await store.set_prefs(alice, conversation, PrefsChange(pinned=True, draft=""), 7_002)
    assert (again.draft, again.draft_ts, again.pinned_at) == ("", 7_002, 7_001)  # pinned_at kept: it was pinned
    await store.set_notification_setting(alice, NotificationSetting(conversation, "mentions", 9_000))
    found = await store.prefs_of(alice, [conversation, "d:998:999"])
    assert list(found) == [conversation]
    assert (found[conversation].mute_until, found[conversation].level, found[conversation].archived) == (
        9_000, "mentions", True)
    assert await store.prefs_of(bob, [conversation]) == {}
    with pytest.raises(ConversationNotFound):
        await store.set_prefs(carol, conversation, PrefsChange(draft="sneaky"), 7_003)
