"""Full-text search (GET /v1/search): my messages, by words, in the conversations I am in now, as I see them."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from pica.client import Login, PicaHttp, PicaHttpError
from tests.conftest import Node, new_user, uploaded


async def api(node: Node, who: Login, method: str, path: str, **kwargs: Any) -> Any:
    async with PicaHttp(node.url, token=who.token) as http:
        return await http.request(method, path, **kwargs)


async def search(node: Node, who: Login, q: str, **params: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = (await api(node, who, "GET", "/v1/search", params={"q": q, **params}))["messages"]
    return found


async def texts(node: Node, who: Login, q: str, **params: Any) -> list[str]:
    """The texts of the messages found, newest first."""
    return [m["body"].get("text", "") for m in await search(node, who, q, **params)]


async def search_error(node: Node, who: Login, params: dict[str, Any]) -> tuple[int, str]:
    with pytest.raises(PicaHttpError) as failed:
        await api(node, who, "GET", "/v1/search", params=params)
    return failed.value.status, failed.value.code


async def post(node: Node, sender: Login, body: dict[str, Any] | str, *, to: Login | None = None,
               group_id: int | None = None) -> dict[str, Any]:
    """Send over HTTP, a few ms after the previous message, so that "newest first" is well defined."""
    await asyncio.sleep(0.005)
    target = {"to": to.user_id} if to is not None else {"group_id": group_id}
    ack: dict[str, Any] = await api(node, sender, "POST", "/v1/messages", json={
        **target, "client_msg_id": uuid.uuid4().hex,
        "body": {"text": body} if isinstance(body, str) else body})
    return ack


async def make_group(node: Node, owner: Login, *members: Login) -> int:
    group = await api(node, owner, "POST", "/v1/groups", json={"name": "g", "members": [m.user_id for m in members]})
    return int(group["group_id"])


async def test_search_finds_my_messages_by_every_word_across_my_conversations(node: Node) -> None:
    alice, bob, carol, dan = [await new_user(node.url, p) for p in ("alice", "bob", "carol", "dan")]
    fox = await post(node, alice, "the quick brown fox", to=bob)
    await post(node, carol, "a quick grey wolf", to=alice)
    group_id = await make_group(node, alice, bob, carol)
    bread = await post(node, alice, "Brown bread is QUICK", group_id=group_id)
    report = await uploaded(node, bob, b"%PDF-1.4 figures", "quarterly-report.pdf")
    await post(node, bob, {"file": {"id": report}, "text": "see attached"}, to=alice)

    assert await texts(node, alice, "quick") == ["Brown bread is QUICK", "a quick grey wolf", "the quick brown fox"]
    assert await texts(node, alice, "quick brown") == ["Brown bread is QUICK", "the quick brown fox"]
    assert await texts(node, alice, "BROWN fox") == ["the quick brown fox"]
    assert await texts(node, alice, "quick purple") == []
    assert await texts(node, alice, "quick", conversation_id=bread["conversation_id"]) == ["Brown bread is QUICK"]
    assert await texts(node, alice, "quick", limit=1) == ["Brown bread is QUICK"]
    assert await texts(node, alice, "quarterly") == await texts(node, alice, "attached") == ["see attached"]

    (hit,) = await search(node, bob, "fox")
    assert (hit["conversation_id"], hit["seq"], hit["sender"], hit["ts"]) == (
        fox["conversation_id"], fox["seq"], alice.user_id, fox["ts"])
    assert await texts(node, bob, "quick") == ["Brown bread is QUICK", "the quick brown fox"]  # not carol's 1:1
    assert await texts(node, dan, "quick") == []
    assert await texts(node, dan, "quick", conversation_id=fox["conversation_id"]) == []


async def test_search_follows_my_current_group_membership(node: Node) -> None:
    alice, bob, carol, dan = [await new_user(node.url, p) for p in ("alice", "bob", "carol", "dan")]
    group_id = await make_group(node, alice, bob, carol)
    await post(node, alice, "launch codes ready", group_id=group_id)
    assert await texts(node, carol, "launch") == ["launch codes ready"]

    await api(node, alice, "DELETE", f"/v1/groups/{group_id}/members/{carol.user_id}")
    await api(node, alice, "POST", f"/v1/groups/{group_id}/members", json={"user_ids": [dan.user_id]})
    await post(node, alice, "launch party tonight", group_id=group_id)
    assert await texts(node, carol, "launch") == []  # removed: nothing of the group any more
    assert await texts(node, dan, "launch") == ["launch party tonight"]  # joined: only what came after
    assert await texts(node, bob, "launch") == ["launch party tonight", "launch codes ready"]


async def test_recalled_edited_and_deleted_messages_are_found_as_they_now_read(node: Node) -> None:
    alice, bob = await new_user(node.url), await new_user(node.url)
    split = await post(node, alice, "banana split", to=bob)
    conversation_id = split["conversation_id"]
    messages = f"/v1/conversations/{conversation_id}/messages"
    await api(node, alice, "POST", f"{messages}/{split['seq']}/recall", json={"client_msg_id": "r1"})
    assert await texts(node, alice, "banana") == [] and await texts(node, bob, "banana") == []

    lassi = await post(node, bob, "mango lassi", to=alice)
    await api(node, alice, "DELETE", f"{messages}/{lassi['seq']}")
    assert await texts(node, alice, "mango") == []
    assert await texts(node, bob, "mango") == ["mango lassi"]

    papaya = await post(node, alice, "papaya juice", to=bob)
    await api(node, alice, "POST", f"{messages}/{papaya['seq']}/edit", json={"client_msg_id": "e1",
                                                                             "text": "guava smoothie"})
    assert await texts(node, bob, "papaya") == []
    assert await texts(node, bob, "guava") == ["guava smoothie"]

    sheet = {"id": await uploaded(node, alice, b"1,2,3\n", "budget-2027.xlsx")}
    report = await post(node, alice, {"file": sheet, "text": "draft"}, to=bob)
    await api(node, alice, "POST", f"{messages}/{report['seq']}/edit", json={"client_msg_id": "e2",
                                                                             "text": "final numbers"})
    assert await texts(node, bob, "budget") == await texts(node, bob, "xlsx final") == ["final numbers"]
    assert await texts(node, bob, "draft") == []


async def test_messages_i_deleted_do_not_crowd_out_older_matches(node: Node) -> None:
    alice, bob = await new_user(node.url), await new_user(node.url)
    acks = [await post(node, bob, f"kiwi number {n}", to=alice) for n in ("one", "two", "three")]
    for ack in acks[1:]:
        await api(node, alice, "DELETE", f"/v1/conversations/{ack['conversation_id']}/messages/{ack['seq']}")
    assert await texts(node, alice, "kiwi", limit=1) == ["kiwi number one"]
    assert await texts(node, alice, "kiwi") == ["kiwi number one"]
    assert await texts(node, bob, "kiwi", limit=2) == ["kiwi number three", "kiwi number two"]


PLAIN = 'she said "hello" (twice) near the door'


@pytest.mark.parametrize(("query", "found"), [
    ('"hello"', 1), ("(twice)", 1), ("NEAR door", 1), ("^hello", 1), ("hello*", 1),
    ("hel*", 1), ("hel", 1),  # the last token of a word is a prefix (the * is not syntax, it separates)
    ("hello OR nothing", 0), ("hello AND", 0), ("hello NOT door", 0),  # operators are plain words
    ("NEAR(hello door)", 0), ("text:hello", 0), ('"she', 1), ("said\"", 1),
    ('"', 0), ("*", 0), ("(", 0), (")", 0), ('""', 0), (":", 0), ("-", 0), ("+", 0), ("{x}", 0),
    ("hello\x00", 1),
])
async def test_query_syntax_characters_are_plain_text(node: Node, query: str, found: int) -> None:
    alice, bob = await new_user(node.url), await new_user(node.url)
    await post(node, alice, PLAIN, to=bob)
    assert await texts(node, bob, query) == [PLAIN] * found


@pytest.mark.parametrize("params", [
    {}, {"q": ""}, {"q": "   "}, {"q": "\x00"}, {"q": " ".join(["w"] * 13)}, {"q": "x" * 201},
    {"q": "fine", "limit": 0}, {"q": "fine", "limit": "many"},
    {"q": "fine", "kind": "video"}, {"q": "fine", "sender": 0}, {"q": "fine", "since": -1}, {"q": "fine", "until": "x"},
    {"q": "fine", "offset": -1}, {"q": "fine", "offset": 200}, {"q": "fine", "offset": 150, "limit": 51},
])
async def test_empty_or_oversized_query_is_a_bad_request(node: Node, params: dict[str, Any]) -> None:
    alice = await new_user(node.url)
    assert await search_error(node, alice, params) == (400, "bad_request")


async def test_search_in_chinese_japanese_korean_and_accented_latin(node: Node) -> None:
    alice, bob = await new_user(node.url), await new_user(node.url)
    for text in ("我们明天开会讨论千万级系统", "明日の会議は東京で", "내일 회의를 합시다", "Die Bücher der Straße",
                 "Crème brûlée", "Ёлка в Москве", "Meeting notes"):
        await post(node, alice, text, to=bob)
    for query, found in [("开会", "我们明天开会讨论千万级系统"), ("系统", "我们明天开会讨论千万级系统"),
                         ("会議", "明日の会議は東京で"), ("회의", "내일 회의를 합시다"),
                         ("bucher strasse", "Die Bücher der Straße"), ("CREME", "Crème brûlée"),
                         ("елка москв", "Ёлка в Москве"), ("meet", "Meeting notes")]:
        assert await texts(node, bob, query) == [found], query


async def test_hits_are_ranked_highlighted_and_paged(node: Node) -> None:
    alice, bob = await new_user(node.url), await new_user(node.url)
    await post(node, alice, "会议 meet at noon", to=bob)  # oldest, and holds "meet" whole
    for n in range(4):
        await post(node, alice, f"meeting {n}", to=bob)
    page = await api(node, bob, "GET", "/v1/search", params={"q": "meet", "limit": 2})
    assert [m["body"]["text"] for m in page["messages"]] == ["会议 meet at noon", "meeting 3"]
    assert page["highlights"] == [{"text": [[3, 7]], "name": []}, {"text": [[0, 7]], "name": []}]
    assert page["next_offset"] == 2
    rest = await api(node, bob, "GET", "/v1/search", params={"q": "meet", "limit": 2, "offset": 2})
    assert [m["body"]["text"] for m in rest["messages"]] == ["meeting 2", "meeting 1"]
    last = await api(node, bob, "GET", "/v1/search", params={"q": "meet", "limit": 2, "offset": 4})
    assert [m["body"]["text"] for m in last["messages"]] == ["meeting 0"] and last["next_offset"] is None
    (hit,) = (await api(node, bob, "GET", "/v1/search", params={"q": "议"}))["highlights"]
    assert hit == {"text": [[1, 2]], "name": []}


async def test_search_by_sender_date_and_kind(node: Node) -> None:
    alice, bob = await new_user(node.url), await new_user(node.url)
    first = await post(node, alice, "plan one", to=bob)
    link = await post(node, bob, "plan at https://example.org", to=alice)
    pdf = {"id": await uploaded(node, bob, b"%PDF-1.4 plan", "计划书.pdf")}
    await post(node, bob, {"file": pdf, "text": "plan attached"}, to=alice)
    assert await texts(node, alice, "plan", sender=bob.user_id) == ["plan attached", "plan at https://example.org"]
    assert await texts(node, alice, "plan", kind="link") == ["plan at https://example.org"]
    assert await texts(node, alice, "plan", kind="file") == ["plan attached"]
    assert await texts(node, alice, "plan", until=link["ts"]) == ["plan one"]
    assert await texts(node, alice, "plan", since=link["ts"], until=link["ts"] + 1) == ["plan at https://example.org"]
    assert first["ts"] < link["ts"]
    (hit,) = (await api(node, alice, "GET", "/v1/search", params={"q": "计划"}))["highlights"]
    assert hit == {"text": [], "name": [[0, 2]]}


async def test_a_removed_member_finds_nothing_new_over_http(node: Node) -> None:
    alice, bob, carol = [await new_user(node.url) for _ in range(3)]
    group_id = await make_group(node, alice, bob, carol)
    await post(node, alice, "开会 before", group_id=group_id)
    assert await texts(node, carol, "开会") == ["开会 before"]
    await api(node, alice, "DELETE", f"/v1/groups/{group_id}/members/{carol.user_id}")
    await post(node, alice, "开会 after", group_id=group_id)
    assert await texts(node, carol, "开会") == []
    assert await texts(node, bob, "开会") == ["开会 after", "开会 before"]
