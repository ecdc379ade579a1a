"""Reactions, replies, threads and mentions in the store, on every backend (docs/protocol.md section 28): the
target's body changes in the event's transaction, quotes are the truth and read "recalled" after a recall, threads
keep a per-user unread count, mentions are counted after the read cursor."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pica.errors import Conflict, ConversationNotFound, Forbidden, MessageNotFound
from pica.protocol.ids import direct_conversation_id
from pica.store.base import (
    DirectAppend,
    EventAppend,
    GroupAction,
    GroupAppend,
    JobRules,
    LinkedAppend,
    ReactionAppend,
    Store,
    Subscription,
    bot_endpoint_id,
)
from tests.store.test_contract import msg, store, users

__all__ = ["store"]


def react(conversation: str, user: int, seq: int, emoji: str, cmid: str, *, remove: bool = False,
          per_message: int = 20, per_user: int = 3) -> ReactionAppend:
    return ReactionAppend(conversation, user, seq, emoji, remove, cmid, 5_000, per_message, per_user)


async def body_of(store: Store, user: int, conversation: str, seq: int) -> dict[str, Any]:
    page = await store.history(user, conversation, after=seq - 1, before=None, limit=1)
    return page.messages[0].body


async def group_of(store: Store, owner: int, *members: int) -> str:
    change = await store.create_group(owner, "team", list(members), 1, 100)
    return f"g:{change.group.group_id}"


def linked(message: DirectAppend | GroupAppend, **links: Any) -> LinkedAppend:
    return LinkedAppend(message, json.loads(message.body_json), **links)


def said(conversation: str, sender: int, cmid: str, body: dict[str, Any], ts: int = 10) -> GroupAppend:
    return GroupAppend(conversation, sender, cmid, json.dumps(body).encode(), ts)


async def test_reactions_change_the_target_and_append_events(store: Store) -> None:
    alice, bob = await users(store, "alice", "bob")
    conversation = direct_conversation_id(alice, bob)
    target = await store.append_direct(msg(conversation, alice, bob, "m1", "lunch?"))

    result, event = await store.append_reaction(react(conversation, bob, target.seq, "👍", "r1"))
    assert (result.seq, result.duplicate) == (target.seq + 1, False)
    assert event.body == {"reaction": {"seq": target.seq, "emoji": "👍", "add": True}}
    await store.append_reaction(react(conversation, alice, target.seq, "👍", "r2"))
    await store.append_reaction(react(conversation, alice, target.seq, "🎉", "r3"))
    assert (await body_of(store, bob, conversation, target.seq))["reactions"] == {"👍": [bob, alice], "🎉": [alice]}

    again, _ = await store.append_reaction(react(conversation, bob, target.seq, "👍", "r1"))
    assert again.duplicate and again.seq == result.seq
    with pytest.raises(Conflict):
        await store.append_reaction(react(conversation, bob, target.seq, "👍", "r4"))

    await store.append_reaction(react(conversation, bob, target.seq, "👍", "r5", remove=True))
    await store.append_reaction(react(conversation, alice, target.seq, "🎉", "r6", remove=True))
    body = await body_of(store, alice, conversation, target.seq)
    assert body == {"text": "lunch?", "reactions": {"👍": [alice]}}
    with pytest.raises(Conflict):
        await store.append_reaction(react(conversation, bob, target.seq, "👍", "r7", remove=True))
    page = await store.history(alice, conversation, after=None, before=None, limit=50)
    assert [m.seq for m in page.messages] == list(range(1, 7))  # gap-free: the message and five events


async def test_reaction_limits_and_who_may_react(store: Store) -> None:
    alice, bob, carol = await users(store, "alice", "bob", "carol")
    conversation = direct_conversation_id(alice, bob)
    target = await store.append_direct(msg(conversation, alice, bob, "m1"))
    await store.append_reaction(react(conversation, bob, target.seq, "a", "r1", per_message=2, per_user=1))
    with pytest.raises(Forbidden, match="at most 1 reactions"):
        await store.append_reaction(react(conversation, bob, target.seq, "b", "r2", per_message=2, per_user=1))
    await store.append_reaction(react(conversation, alice, target.seq, "b", "r3", per_message=2, per_user=1))
    with pytest.raises(Forbidden, match="at most 2 different"):
        await store.append_reaction(react(conversation, alice, target.seq, "c", "r4", per_message=2, per_user=3))
    with pytest.raises(ConversationNotFound):
        await store.append_reaction(react(conversation, carol, target.seq, "a", "r5"))
    with pytest.raises(MessageNotFound):
        await store.append_reaction(react(conversation, bob, 99, "a", "r6"))
    reaction_event = target.seq + 1
    with pytest.raises(Forbidden, match="cannot be reacted to"):
        await store.append_reaction(react(conversation, bob, reaction_event, "a", "r7"))
    await store.set_blocked(alice, bob, True, 1)
    with pytest.raises(Forbidden):
        await store.append_reaction(react(conversation, bob, target.seq, "b", "r8"))


async def test_a_quote_is_a_snapshot_and_reads_recalled_after_a_recall(store: Store) -> None:
    alice, bob = await users(store, "alice", "bob")
    conversation = direct_conversation_id(alice, bob)
    target = await store.append_direct(msg(conversation, alice, bob, "m1", "the   plan is\nsecret", ts=1_000))
    reply = DirectAppend(conversation, bob, alice, "m2", b'{"text":"ok","reply":{"seq":1,"text":"forged"}}', 1_100)
    result, record = await store.append_linked(linked(reply, reply_seq=target.seq, quote_chars=8))
    quote = {"seq": target.seq, "sender": alice, "kind": "text", "text": "the pla…"}
    assert record.body == {"text": "ok", "reply": quote}

    await store.append_event(EventAppend("edit", conversation, alice, target.seq, "e1", 1_200, "changed"))
    assert (await body_of(store, bob, conversation, result.seq))["reply"] == quote  # a snapshot

    await store.append_event(EventAppend("recall", conversation, alice, target.seq, "c1", 1_300, window_ms=60_000))
    recalled = await body_of(store, alice, conversation, result.seq)
    assert recalled == {"text": "ok", "reply": {"seq": target.seq, "sender": alice, "recalled": True}}
    assert "pla" not in json.dumps(recalled)
    with pytest.raises(Forbidden, match="recalled"):
        await store.append_linked(linked(DirectAppend(conversation, bob, alice, "m3", b'{"text":"?"}', 1_400),
                                         reply_seq=target.seq))
    again, _ = await store.append_linked(linked(reply, reply_seq=target.seq))
    assert again.duplicate and again.seq == result.seq


async def test_a_reply_must_quote_a_message_the_sender_can_see(store: Store) -> None:
    alice, bob, carol = await users(store, "alice", "bob", "carol")
    group = await group_of(store, alice, bob)
    early = await store.append_group(said(group, alice, "g1", {"text": "before carol"}))
    await store.group_action(GroupAction("add", alice, int(group[2:]), 20, user_ids=(carol,), max_members=100))
    with pytest.raises(MessageNotFound):
        await store.append_linked(linked(said(group, carol, "c1", {"text": "re"}), reply_seq=early.seq))
    outsider = (await users(store, "dave"))[0]
    with pytest.raises(Forbidden):
        await store.append_linked(linked(said(group, outsider, "d1", {"text": "re"}), reply_seq=early.seq))
    with pytest.raises(MessageNotFound):
        await store.append_linked(linked(DirectAppend(direct_conversation_id(bob, carol), bob, carol, "b1",
                                                      b'{"text":"re"}', 30), reply_seq=1))


async def test_threads_count_unread_per_participant(store: Store) -> None:
    alice, bob, carol = await users(store, "alice", "bob", "carol")
    group = await group_of(store, alice, bob, carol)
    root = await store.append_group(said(group, alice, "root", {"text": "plan for Q3"}))
    first, _ = await store.append_linked(linked(said(group, bob, "t1", {"text": "idea"}), thread_root=root.seq))
    await store.append_group(said(group, carol, "main", {"text": "not in the thread"}))
    second, stored = await store.append_linked(linked(said(group, carol, "t2", {"text": "+1"}, ts=40),
                                                      thread_root=root.seq))
    assert stored.body == {"text": "+1", "thread": {"root": root.seq}}

    page = await store.thread_messages(alice, group, root.seq, 0, 10)
    assert [m.seq for m in page.messages] == [first.seq, second.seq] and not page.more
    assert (await body_of(store, bob, group, root.seq))["thread_info"] == {"count": 2, "last_seq": second.seq,
                                                                           "last_ts": 40}
    [mine] = await store.threads(alice, group, 10)
    assert (mine.root_seq, mine.count, mine.last_seq, mine.unread) == (root.seq, 2, second.seq, 2)
    [bobs] = await store.threads(bob, group, 10)
    assert bobs.unread == 1  # carol's; his own does not count
    await store.mark_thread_read(alice, group, root.seq, first.seq)
    assert (await store.threads(alice, group, 10))[0].unread == 1
    await store.mark_thread_read(alice, group, root.seq, 10**6)  # clamped to the conversation's end
    assert (await store.threads(alice, group, 10))[0].unread == 0

    own, _ = await store.append_linked(linked(said(group, alice, "t3", {"text": "thanks"}), thread_root=root.seq))
    [after_own] = await store.threads(alice, group, 10)  # writing in her own thread moved her cursor there
    assert (after_own.read_seq, after_own.unread, after_own.count) == (own.seq, 0, 3)
    assert (await store.threads(bob, group, 10))[0].unread == 2
    message, _ = await store.push_candidates(group, second.seq)
    assert message is not None and message.thread_participants == {alice, bob, carol}
    with pytest.raises(ConversationNotFound):
        await store.thread_messages((await users(store, "dave"))[0], group, root.seq, 0, 10)


async def test_threads_hang_under_group_messages_only(store: Store) -> None:
    alice, bob = await users(store, "alice", "bob")
    conversation = direct_conversation_id(alice, bob)
    target = await store.append_direct(msg(conversation, alice, bob, "m1"))
    with pytest.raises(Forbidden, match="group"):
        await store.append_linked(linked(msg(conversation, bob, alice, "m2"), thread_root=target.seq))
    group = await group_of(store, alice, bob)
    root = await store.append_group(said(group, alice, "root", {"text": "root"}))
    inner, _ = await store.append_linked(linked(said(group, bob, "t1", {"text": "in"}), thread_root=root.seq))
    with pytest.raises(Exception, match="another thread"):
        await store.append_linked(linked(said(group, bob, "t2", {"text": "x"}), thread_root=inner.seq))


async def test_mentions_are_counted_after_the_read_cursor(store: Store) -> None:
    alice, bob, carol = await users(store, "alice", "bob", "carol")
    group = await group_of(store, alice, bob, carol)
    await store.append_linked(linked(said(group, alice, "m1", {"text": "@bob", "mentions": [bob]}),
                                     mentions=(bob,)))
    everyone, _ = await store.append_linked(linked(said(group, alice, "m2", {"text": "@all", "mention_all": True}),
                                                   mention_all=True))
    assert await store.unread_mentions(bob, [group]) == {group: 2}
    assert await store.unread_mentions(carol, [group]) == {group: 1}
    assert await store.unread_mentions(alice, [group]) == {}  # her own
    await store.mark_read(bob, group, everyone.seq - 1)
    assert await store.unread_mentions(bob, [group]) == {group: 1}
    await store.append_event(EventAppend("recall", group, alice, everyone.seq, "c1", 20, window_ms=10**9))
    assert await store.unread_mentions(bob, [group]) == {}


async def test_mention_all_in_a_large_group_is_for_admins(store: Store) -> None:
    alice, bob, carol = await users(store, "alice", "bob", "carol")
    group = await group_of(store, alice, bob, carol)
    with pytest.raises(Forbidden, match="only admins"):
        await store.append_linked(linked(said(group, bob, "b1", {"text": "@all", "mention_all": True}),
                                         mention_all=True, mention_all_members=2))
    await store.append_linked(linked(said(group, bob, "b2", {"text": "@all", "mention_all": True}),
                                     mention_all=True, mention_all_members=3))
    await store.append_linked(linked(said(group, alice, "a1", {"text": "@all", "mention_all": True}),
                                     mention_all=True, mention_all_members=2))


async def test_replies_and_reactions_make_their_jobs(store: Store) -> None:
    store.set_job_rules(JobRules((Subscription("e1", ("message.*",)),), push_delay_ms=0))
    alice, bob = await users(store, "alice", "bob")
    conversation = direct_conversation_id(alice, bob)
    target = await store.append_direct(msg(conversation, alice, bob, "m1", "ship it"))
    reply, _ = await store.append_linked(linked(msg(conversation, bob, alice, "m2", "done"), reply_seq=target.seq))
    await store.append_reaction(react(conversation, alice, reply.seq, "🚀", "r1"))
    jobs = [(j.kind, json.loads(j.payload)) for j in await store.list_jobs(None, 100)]
    webhooks = [p for kind, p in jobs if kind == "webhook"]
    assert [p["type"] for p in webhooks] == ["message.created", "message.created", "message.reacted"]
    assert webhooks[1]["data"]["body"]["reply"]["text"] == "ship it"  # the body as stored, quote and all
    assert {k: webhooks[2]["data"][k] for k in ("seq", "emoji", "add", "to")} == {"seq": reply.seq, "emoji": "🚀",
                                                                                 "add": True, "to": bob}
    assert [p["seq"] for kind, p in jobs if kind == "push"] == [target.seq, reply.seq]  # a reaction pushes nobody


async def test_a_reply_to_a_bot_makes_its_webhook_job(store: Store) -> None:
    alice, bot = await users(store, "alice", "helper")
    store.set_job_rules(JobRules(bots=frozenset({bot})))
    conversation = direct_conversation_id(alice, bot)
    target = await store.append_direct(msg(conversation, bot, alice, "b1", "how can I help?"))
    reply, _ = await store.append_linked(linked(msg(conversation, alice, bot, "a1", "weather?"), reply_seq=target.seq,
                                                mentions=(bot,)))
    jobs = [(j.target, json.loads(j.payload)) for j in await store.list_jobs(None, 100)]
    assert [(target_, p["data"]["seq"]) for target_, p in jobs] == [(bot_endpoint_id(bot), reply.seq)]
