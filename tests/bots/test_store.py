"""Bots' store contract, on every backend (the ``store`` fixture of tests/store/test_contract.py): a bot is created
with its key's session, found by its key's hash, rotated (the old key's session revoked), deleted like an account;
and the batch of messages queues a webhook job for each bot with a webhook in the message's conversation."""

from __future__ import annotations

import json

import pytest

from pica.errors import UsernameTaken, UserNotFound
from pica.store.base import GroupAppend, JobRules, SessionRecord, Store, Subscription
from tests.store.test_contract import msg, store, users

__all__ = ["store"]

NEVER = 2**53 - 1


def key_session(session_id: str, now: int = 1000) -> SessionRecord:
    return SessionRecord(session_id, 0, now, now, NEVER, "", "bot key")


async def test_a_bot_is_found_by_its_key_until_the_key_is_rotated(store: Store) -> None:
    bot = await store.create_bot("helper", "hash-1", key_session("s1"), "", "")
    state = await store.bot_key_state("hash-1")
    assert state is not None and (state.user_id, state.session_id, state.revoked, state.banned) == (bot, "s1", False,
                                                                                                      False)
    assert state.expires_at == NEVER
    user = await store.get_user(bot)
    assert user is not None and user.username == "helper"
    with pytest.raises(UsernameTaken):
        await store.create_bot("helper", "hash-x", key_session("s-x"), "", "")

    await store.rotate_bot_key(bot, "hash-2", key_session("s2", 2000))
    assert await store.bot_key_state("hash-1") is None
    state = await store.bot_key_state("hash-2")
    assert state is not None and state.session_id == "s2" and not state.revoked
    old = await store.session_state("s1")
    assert old is not None and old.revoked  # the revocation sweep closes the old key's sockets
    assert [r.session_id for r in await store.revoked_sessions(0)] == ["s1"]
    [listed] = await store.list_bots()
    assert (listed.user_id, listed.username, listed.key_created_at) == (bot, "helper", 2000)

    await store.set_banned(bot, True)
    state = await store.bot_key_state("hash-2")
    assert state is not None and state.banned


async def test_deleting_a_bot_deletes_its_account_and_key(store: Store) -> None:
    (alice,) = await users(store, "alice")
    bot = await store.create_bot("helper", "hash-1", key_session("s1"), "http://hooks.example/x", "whsec_x")
    group = (await store.create_group(alice, "team", [bot], 1500, 10)).group
    await store.delete_bot(bot, 3000)
    assert await store.bot_key_state("hash-1") is None and await store.list_bots() == []
    assert await store.bot_webhooks() == []
    assert [m.user_id for m in await store.group_members(alice, group.group_id)] == [alice]
    with pytest.raises(UserNotFound):
        await store.delete_bot(bot, 4000)
    with pytest.raises(UserNotFound):
        await store.rotate_bot_key(alice, "hash-a", key_session("s-a"))  # not a bot


async def test_messages_to_a_bot_with_a_webhook_queue_its_jobs(store: Store) -> None:
    alice, bob = await users(store, "alice", "bob")
    hooked = await store.create_bot("hooked", "hash-1", key_session("s1"), "http://hooks.example/x", "whsec_x")
    plain = await store.create_bot("plain", "hash-2", key_session("s2"), "", "")
    assert [(w.user_id, w.url, w.secret) for w in await store.bot_webhooks()] == [
        (hooked, "http://hooks.example/x", "whsec_x")]
    store.set_job_rules(JobRules(bots=frozenset({hooked})))
    with_bot = (await store.create_group(alice, "with bot", [bob, hooked, plain], 2000, 10)).group
    without = (await store.create_group(alice, "people", [bob], 2000, 10)).group
    await store.append_direct(msg(f"d:{alice}:{hooked}", alice, hooked, "to-bot", ts=3000))
    await store.append_direct(msg(f"d:{alice}:{bob}", alice, bob, "to-bob", ts=3001))
    await store.append_direct(msg(f"d:{alice}:{plain}", alice, plain, "to-plain", ts=3002))
    await store.append_direct(msg(f"d:{alice}:{hooked}", hooked, alice, "from-bot", ts=3003))
    await store.append_group(GroupAppend(with_bot.conversation_id, bob, "g1", b'{"text":"yo"}', 3004))
    await store.append_group(GroupAppend(with_bot.conversation_id, hooked, "g2", b'{"text":"me"}', 3005))
    await store.append_group(GroupAppend(without.conversation_id, bob, "g3", b'{"text":"no"}', 3006))
    jobs = await store.list_jobs(None, 100)
    assert {j.target for j in jobs} == {f"bot_{hooked}"}
    payloads = [json.loads(j.payload) for j in jobs]
    assert [p["data"]["client_msg_id"] for p in payloads] == ["to-bot", "g1"]
    assert payloads[0]["type"] == "message.created"
    assert payloads[1]["data"]["group_id"] == with_bot.group_id and payloads[1]["data"]["body"] == {"text": "yo"}


async def test_bots_and_endpoints_share_a_batch(store: Store) -> None:
    alice, bob = await users(store, "alice", "bob")
    hooked = await store.create_bot("hooked", "hash-1", key_session("s1"), "http://hooks.example/x", "whsec_x")
    store.set_job_rules(JobRules((Subscription("e1", ("message.created",)),), bots=frozenset({hooked})))
    await store.append_direct(msg(f"d:{alice}:{hooked}", alice, hooked, "to-bot", ts=3000))
    await store.append_direct(msg(f"d:{alice}:{bob}", alice, bob, "to-bob", ts=3001))
    jobs = await store.list_jobs(None, 100)
    assert sorted((j.target, j.key) for j in jobs) == sorted([
        ("e1", f"message.created:d:{alice}:{hooked}/1"), (f"bot_{hooked}", f"message.created:d:{alice}:{hooked}/1"),
        ("e1", f"message.created:d:{alice}:{bob}/1")])
