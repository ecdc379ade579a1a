"""The push rules (pica/push/rules.py), as values: who is pushed to, what the push says, the job's verdict."""

from __future__ import annotations

import re
from typing import Any

from pica.push.rules import PREVIEW_CHARS, Notification, Sent, notification, preview, push_id, recipients, verdict
from pica.store.base import DeviceRecord, MessageRecord, PushCandidate, PushMessage

NOW = 1_000_000


def message(body: dict[str, Any], *, seq: int = 10, conversation: str = "d:1:2", state: str = "",
            group: str = "") -> PushMessage:
    return PushMessage(MessageRecord(conversation, seq, 1, "c", NOW, body), state, "alice", group)


def member(user_id: int, *, delivered: int = 0, joined: int = 0, level: str = "all", mute_until: int | None = None,
           privacy: bool = False) -> PushCandidate:
    return PushCandidate(user_id, joined, delivered, level, mute_until, privacy)


def test_who_is_pushed_to() -> None:
    hello = message({"text": "hi @3", "mentions": [3]})
    candidates = [
        member(2),                                # offline, default settings: pushed
        member(3, level="mentions"),              # mention-only and mentioned: pushed
        member(4, level="mentions"),              # mention-only, not mentioned
        member(5, level="none"),                  # never
        member(6, delivered=10),                  # a device received it live and said so
        member(7, joined=10),                     # joined at this very message (its notice)
        member(8, mute_until=NOW + 1),            # muted for a moment more
        member(9, mute_until=NOW),                # the mute has just ended
    ]
    assert recipients(hello, candidates, NOW) == [2, 3, 9]
    assert recipients(message({"text": "x"}, state="recalled"), candidates, NOW) == []


def test_at_all_reaches_mention_only_members_and_threads_reach_their_participants() -> None:
    candidates = [member(2), member(3, level="mentions"), member(4), member(5, level="mentions")]
    everyone = message({"text": "@all standup", "mention_all": True}, conversation="g:7")
    assert recipients(everyone, candidates, NOW) == [2, 3, 4, 5]
    in_thread = PushMessage(MessageRecord("g:7", 10, 1, "c", NOW, {"text": "+1", "thread": {"root": 4},
                                                                    "mentions": [5]}),
                            "", "alice", "team", frozenset({1, 2, 3}))
    # 2 takes part; 3 takes part but wants mentions only; 4 does not take part; 5 is mentioned
    assert recipients(in_thread, candidates, NOW) == [2, 5]


def test_what_a_push_says() -> None:
    device = DeviceRecord("dev_1", 2, "s", "webpush", "https://push/x")
    note = notification(message({"text": "  see\nyou  at 5 "}), device, privacy=False, badge=3)
    assert (note.title, note.body, note.badge) == ("alice", "see you at 5", 3)
    assert note.push_id == push_id("d:1:2", 10, "dev_1") != push_id("d:1:2", 10, "dev_2")
    assert note.data() == {"push_id": note.push_id, "conversation_id": "d:1:2", "seq": "10", "ts": str(NOW)}
    group = notification(message({"text": "hi"}, conversation="g:7", group="team"), device, False, 1)
    assert group.title == "alice in team"
    private = notification(message({"text": "the plan"}, conversation="g:7", group="team"), device, True, 1)
    assert (private.title, private.body) == ("New message", "")


def test_previews_of_every_kind_fit_a_lock_screen() -> None:
    assert preview({"image": {"id": "i"}}) == "[image]"
    assert preview({"voice": {"id": "v", "duration_ms": 900}}) == "[voice note]"
    assert preview({"image": {"id": "i"}, "text": "sunset"}) == "sunset"
    assert preview({"file": {"id": "f", "name": "report.pdf"}}) == "[file] report.pdf"
    assert preview({"custom": {"x": 1}, "type": "poll"}) == "[message]"
    long = preview({"text": "word " * 100})
    assert len(long) == PREVIEW_CHARS and long.endswith("…")


def test_collapse_keys_are_per_conversation_within_each_services_limits() -> None:
    a = Notification("id", "d:123456789:987654321", 1, NOW, "t", "b", 0)
    b = Notification("id2", "d:123456789:987654321", 2, NOW, "t", "b", 0)
    assert a.topic == b.topic and re.fullmatch(r"[A-Za-z0-9_-]{1,32}", a.topic)
    assert a.collapse_id == "d:123456789:987654321" and len(a.collapse_id.encode()) <= 64


def test_the_job_is_retried_while_a_service_may_still_take_it() -> None:
    assert verdict([Sent("sent"), Sent("gone"), Sent("failed", "HTTP 400")]).kind == "done"
    retry = verdict([Sent("sent"), Sent("retry", "HTTP 503")])
    assert (retry.kind, retry.error) == ("retry", "HTTP 503")
    assert verdict([]).kind == "done"
