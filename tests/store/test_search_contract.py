"""Search in every language, on every backend (SQLite thread, SQLite process, PostgreSQL): each test asserts fixed
expectations, so the backends give the same results for the same data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pica.config import SqliteConfig
from pica.errors import BadRequest
from pica.protocol.tokens import document
from pica.store import search
from pica.store.base import DirectAppend, EventAppend, GroupAction, Store
from pica.store.sqlite import SqliteStore
from tests.store.test_contract import gmsg, store, users

__all__ = ["store"]  # the fixture, run for every backend

CORPUS = [
    ("zh", "我们明天开会讨论千万级系统"),
    ("zh2", "系统上线了\uff0c大家辛苦"),  # a full-width comma
    ("ja", "明日の会議は東京で行います。カタカナも\uff2f\uff2b"),
    ("ko", "내일 회의를 서울에서 합시다"),
    ("de", "Die Größe der Bücher überrascht Straßenhändler"),
    ("fr", "Crème brûlée à la française, déjà goûtée"),
    ("ru", "Ёлка стоит в Москве, встреча завтра"),
    ("en", "Meeting notes: the quarterly-report is READY"),
]

QUERIES = [
    # Chinese: any two or more adjacent characters, and one character, anywhere in a run.
    ("开会", ["zh"]), ("明天", ["zh"]), ("系统", ["zh2", "zh"]), ("千万级系统", ["zh"]), ("讨论 明天", ["zh"]),
    ("统", ["zh2", "zh"]), ("我", ["zh"]), ("开明", []), ("会开", []),
    # Japanese: kanji, kana; full-width Latin folded (U+FF2F U+FF2B is "ok").
    ("会議", ["ja"]), ("東京", ["ja"]), ("カタカナ", ["ja"]), ("ok", ["ja"]), ("京東", []),
    # Korean: words are spaced, and bigrams find a word inside a longer one.
    ("회의", ["ko"]), ("서울", ["ko"]), ("합시다", ["ko"]), ("울서", []),
    # German: umlauts and ß folded, case folded, prefixes.
    ("grösse", ["de"]), ("GROSSE", ["de"]), ("bucher", ["de"]), ("Bücher", ["de"]), ("strassen", ["de"]),
    ("uberrascht", ["de"]),
    # French: accents folded.
    ("creme brulee", ["fr"]), ("FRANÇAISE", ["fr"]), ("deja gout", ["fr"]),
    # Russian: like Latin (case, ё folded, prefixes).
    ("елка", ["ru"]), ("ЁЛКА", ["ru"]), ("москв", ["ru"]), ("встреча завтра", ["ru"]),
    # English: words all required, prefixes, phrases for hyphenated words.
    ("meeting", ["en"]), ("meet ready", ["en"]), ("quarterly-report", ["en"]), ("report-quarterly", []),
    ("notes purple", []), ("!!!", []),
]


def _append(conversation: str, sender: int, recipient: int, cmid: str, body: dict[str, Any], ts: int) -> DirectAppend:
    return DirectAppend(conversation, sender, recipient, cmid, json.dumps(body).encode(), ts, document(body))


async def _found(store: Store, who: int, query: str, **kwargs: Any) -> list[str]:
    options: dict[str, Any] = {"conversation_id": None, "limit": 50, **kwargs}
    return [m.client_msg_id for m in await store.search(who, query, **options)]


async def test_search_in_every_language(store: Store) -> None:
    alice, bob = await users(store, "alice", "bob")
    for ts, (cmid, text) in enumerate(CORPUS, 1):
        await store.append_direct(_append("d:1:2", alice, bob, cmid, {"text": text}, ts))
    for query, expected in QUERIES:
        assert await _found(store, bob, query) == expected, query


async def test_every_substring_of_two_or_more_cjk_characters_is_found(store: Store) -> None:
    alice, bob = await users(store, "alice", "bob")
    text = "我们明天开会讨论千万级系统"
    await store.append_direct(_append("d:1:2", alice, bob, "m", {"text": f"note: {text}!"}, 1))
    for start in range(len(text)):
        for end in range(start + 1, len(text) + 1):
            assert await _found(store, bob, text[start:end]) == ["m"], text[start:end]


async def test_search_filters_by_sender_conversation_time_and_kind(store: Store) -> None:
    alice, bob, carol = await users(store, "alice", "bob", "carol")
    pdf = {"id": "f1", "name": "项目计划.pdf", "mime": "application/pdf", "size": 10}
    await store.append_direct(_append("d:1:2", alice, bob, "a1", {"text": "plan v1"}, 10))
    await store.append_direct(_append("d:1:2", bob, alice, "b1", {"text": "plan at https://example.org/x"}, 20))
    await store.append_direct(_append("d:1:2", bob, alice, "b2", {"file": pdf, "text": "plan"}, 30))
    await store.append_direct(_append("d:1:3", carol, alice, "c1", {"text": "plan www.example.org"}, 40))

    assert await _found(store, alice, "plan") == ["c1", "b2", "b1", "a1"]
    assert await _found(store, alice, "plan", sender=bob) == ["b2", "b1"]
    assert await _found(store, alice, "plan", conversation_id="d:1:3") == ["c1"]
    assert await _found(store, alice, "plan", since=20, until=40) == ["b2", "b1"]
    assert await _found(store, alice, "plan", kind="file") == ["b2"]
    assert await _found(store, alice, "plan", kind="link") == ["c1", "b1"]
    assert await _found(store, alice, "计划", kind="file") == ["b2"]  # the file's name is indexed too
    assert await _found(store, alice, "file") == []  # a kind is not a word
    assert await _found(store, alice, "d") == await _found(store, alice, "1") == []  # nor a conversation id's part
    with pytest.raises(BadRequest):
        await store.search(alice, "plan", conversation_id=None, limit=5, kind="video")


async def test_a_caption_edit_keeps_the_file_name_searchable(store: Store) -> None:
    alice, bob = await users(store, "alice", "bob")
    pdf = {"id": "f1", "name": "Bericht.pdf", "mime": "application/pdf", "size": 10}
    await store.append_direct(_append("d:1:2", alice, bob, "f", {"file": pdf, "text": "alt"}, 10))
    await store.append_event(EventAppend("edit", "d:1:2", alice, 1, "e", 11, "neu", window_ms=10_000))
    assert await _found(store, bob, "bericht neu", kind="file") == ["f"]
    assert await _found(store, bob, "alt") == []


async def test_a_removed_member_finds_nothing_new(store: Store) -> None:
    alice, bob, carol = await users(store, "alice", "bob", "carol")
    group = (await store.create_group(alice, "团队", [bob, carol], 10, 10)).group
    conv = group.conversation_id
    await store.append_direct(_append("d:1:3", alice, carol, "d", {"text": "会议 direct"}, 11))
    await store.append_group(gmsg(conv, alice, "g1", "会议 before", ts=12))
    assert await _found(store, carol, "会议") == ["g1", "d"]
    await store.group_action(GroupAction("remove", alice, group.group_id, 13, user_ids=(carol,)))
    await store.append_group(gmsg(conv, alice, "g2", "会议 after", ts=14))
    assert await _found(store, carol, "会议") == ["d"]  # the group is out of reach, old and new
    assert await _found(store, carol, "会议", conversation_id=conv) == []
    assert await _found(store, bob, "会议") == ["g2", "g1"]


async def test_reindex_rebuilds_the_index_from_the_bodies(store: Store) -> None:
    alice, bob = await users(store, "alice", "bob")
    body = {"text": "明天开会"}
    # Indexed as an older release would have (the raw text): not found by a bigram until re-indexed.
    await store.append_direct(DirectAppend("d:1:2", alice, bob, "old", json.dumps(body).encode(), 1, "明天开会"))
    await store.append_direct(_append("d:1:2", alice, bob, "new", {"text": "开会了"}, 2))
    await store.append_event(EventAppend("recall", "d:1:2", alice, 2, "r", 3, "", window_ms=10_000))
    assert await _found(store, bob, "开会") == []
    assert await store.reindex_search(only_if_stale=True) == 0  # built by this tokenizer already
    assert await store.reindex_search() == 3  # the recall event counts as read, is not indexed
    assert await _found(store, bob, "开会") == ["old"]
    assert await store.reindex_search() == 3  # again: no duplicates
    assert await _found(store, bob, "开会") == ["old"]


async def test_sqlite_without_narrowing_the_match_finds_the_same(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A user in more conversations than SQLite narrows the match to (pica/store/search.py) gets the same results."""
    sqlite = SqliteStore(tmp_path / "pica.db", SqliteConfig(writer="thread"))
    await sqlite.open()
    try:
        alice, bob, carol = await users(sqlite, "alice", "bob", "carol")
        await sqlite.append_direct(_append("d:1:2", alice, bob, "a", {"text": "开会 d1"}, 1))
        await sqlite.append_direct(_append("d:2:3", bob, carol, "b", {"text": "开会"}, 2))
        narrowed = [await _found(sqlite, bob, q) for q in ("开会", "d1", "d")]
        monkeypatch.setattr(search, "_SQLITE_SCOPE_MAX", 1)
        assert [await _found(sqlite, bob, q) for q in ("开会", "d1", "d")] == narrowed == [["b", "a"], ["a"], ["a"]]
        assert await _found(sqlite, alice, "开会") == ["a"]
    finally:
        await sqlite.close()
