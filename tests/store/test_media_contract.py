"""Files in the store, on every backend: who may read an upload, references written with the message, quota, the
sweep, resumable uploads."""

from __future__ import annotations

import json

import pytest

from pica.errors import Forbidden, QuotaExceeded
from pica.protocol.ids import direct_conversation_id
from pica.store.base import DirectAppend, EventAppend, FileRecord, GroupAction, GroupAppend, Store, UploadRecord
from tests.store.test_contract import store, users

__all__ = ["store"]


def upload(owner: int, file_id: str, sha: str = "ab" * 32, size: int = 10, created_at: int = 1_000) -> FileRecord:
    return FileRecord(file_id, owner, sha, size, "text/plain", f"{file_id}.txt", created_at, {"width": 3})


def carrying(conversation: str, sender: int, recipient: int, cmid: str, file_id: str) -> DirectAppend:
    return DirectAppend(conversation, sender, recipient, cmid, json.dumps({"file": {"id": file_id}}).encode(), 2_000,
                        file_ids=(file_id,))


async def test_a_file_is_read_by_its_owner_and_the_members_who_see_a_message_with_it(store: Store) -> None:
    alice, bob, carol = await users(store, "alice", "bob", "carol")
    await store.add_file(upload(alice, "f1"), quota_bytes=100)
    assert await store.readable_file("f1", alice) == upload(alice, "f1")
    assert await store.readable_file("f1", bob) is None
    conversation = direct_conversation_id(alice, bob)
    sent = await store.append_direct(carrying(conversation, alice, bob, "m1", "f1"))
    assert await store.readable_file("f1", bob) == upload(alice, "f1")
    assert await store.readable_file("f1", carol) is None
    assert await store.readable_file("nope", alice) is None

    await store.append_event(EventAppend("recall", conversation, alice, sent.seq, "r1", 2_001, window_ms=60_000))
    assert await store.readable_file("f1", bob) is None  # the recall took the reference away
    assert await store.readable_file("f1", alice) is not None


async def test_group_members_lose_access_when_they_leave(store: Store) -> None:
    alice, bob = await users(store, "alice", "bob")
    change = await store.create_group(alice, "team", [bob], 5, 100)
    conversation = f"g:{change.group.group_id}"
    await store.add_file(upload(alice, "f2"), quota_bytes=100)
    await store.append_group(GroupAppend(conversation, alice, "g1", b'{"file":{"id":"f2"}}', 10, file_ids=("f2",)))
    assert await store.readable_file("f2", bob) is not None
    await store.group_action(GroupAction("leave", bob, change.group.group_id, 11))
    assert await store.readable_file("f2", bob) is None


async def test_quota_counts_every_upload(store: Store) -> None:
    (alice,) = await users(store, "alice")
    await store.add_file(upload(alice, "a", size=60), quota_bytes=100)
    with pytest.raises(QuotaExceeded):
        await store.add_file(upload(alice, "b", size=41), quota_bytes=100)
    await store.add_file(upload(alice, "c", size=40), quota_bytes=100)
    assert await store.file_usage(alice) == 100


async def test_the_sweep_takes_unsent_files_unused_blobs_and_abandoned_uploads(store: Store) -> None:
    alice, bob = await users(store, "alice", "bob")
    await store.reserve_blob("11" * 32, 1_000)
    await store.reserve_blob("22" * 32, 1_000)
    await store.reserve_blob("33" * 32, 9_000)  # being put right now
    await store.add_file(upload(alice, "sent", sha="11" * 32), 1_000)
    await store.add_file(upload(alice, "unsent", sha="22" * 32), 1_000)
    await store.add_file(upload(alice, "twin", sha="11" * 32), 1_000)  # unsent, but its bytes are the sent file's
    await store.append_direct(carrying(direct_conversation_id(alice, bob), alice, bob, "m", "sent"))
    await store.open_upload(UploadRecord("old", alice, 100, 10, "a.bin", 1_000, 1_000), max_open=5)
    await store.open_upload(UploadRecord("new", alice, 100, 10, "b.bin", 8_000, 8_000), max_open=5)

    swept = await store.sweep_files(unreferenced_before=5_000, abandoned_before=5_000, limit=100)
    assert swept.files == 2
    assert swept.blobs == ["22" * 32]
    assert swept.uploads == ["old"]
    assert await store.readable_file("sent", alice) is not None
    assert await store.readable_file("twin", alice) is None
    assert await store.get_upload("new", alice) is not None and await store.get_upload("old", alice) is None
    assert (await store.sweep_files(5_000, 5_000, 100)).files == 0


async def test_resumable_uploads(store: Store) -> None:
    alice, bob = await users(store, "alice", "bob")
    await store.open_upload(UploadRecord("u1", alice, 100, 0, "a.bin", 1, 1), max_open=2)
    await store.open_upload(UploadRecord("u2", alice, 100, 0, "b.bin", 1, 1), max_open=2)
    with pytest.raises(Forbidden):
        await store.open_upload(UploadRecord("u3", alice, 100, 0, "c.bin", 1, 1), max_open=2)
    await store.touch_upload("u1", 64, 5)
    assert await store.get_upload("u1", alice) == UploadRecord("u1", alice, 100, 64, "a.bin", 1, 5)
    assert await store.get_upload("u1", bob) is None
    await store.end_upload("u1")
    assert await store.get_upload("u1", alice) is None
