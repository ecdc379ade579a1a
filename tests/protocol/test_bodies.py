"""What a message is to its reader, from its body: the rules the conversation list and the clients share."""

from __future__ import annotations

from typing import Any

from pica.protocol.bodies import counts_as_unread, stands_for_conversation

SHOWN: list[dict[str, Any]] = [
    {"text": "hi"},
    {"text": "fixed", "edited": 5},
    {"system": {"event": "renamed", "by": 1, "name": "x"}},
    {"file": {"id": "f", "name": "a.pdf", "mime": "application/pdf", "size": 1}},
    {"text": "see https://pica.example", "link_preview": {"url": "https://pica.example", "title": "Pica"}},
]
PASSED_OVER: list[dict[str, Any]] = [
    {"recall": {"seq": 1}},
    {"edit": {"seq": 1, "text": "new"}},
    {"edit": {"seq": 1, "recalled": True}},
    {"preview": {"seq": 1, "url": "https://pica.example", "title": "Pica"}},
    {"preview": {"seq": 1, "removed": True}},
    {"recalled": True},
    {"deleted": True},
]


def test_what_stands_for_a_conversation_and_what_is_new_to_read() -> None:
    assert all(stands_for_conversation(body) for body in SHOWN)
    assert not any(stands_for_conversation(body) for body in PASSED_OVER)
    assert all(counts_as_unread(body, sender=2, reader=1) for body in SHOWN)
    assert not any(counts_as_unread(body, sender=1, reader=1) for body in SHOWN)  # my own, from another device
    assert not any(counts_as_unread(body, sender=2, reader=1) for body in PASSED_OVER)
