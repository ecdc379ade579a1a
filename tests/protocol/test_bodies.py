"""What a message is to its reader, from its body: the rules the conversation list and the clients share."""

from __future__ import annotations

from pica.protocol.bodies import counts_as_unread, stands_for_conversation


def test_what_stands_for_a_conversation_and_what_is_new_to_read() -> None:
    shown = [{"text": "hi"}, {"text": "fixed", "edited": 5}, {"system": {"event": "renamed", "by": 1, "name": "x"}},
             {"file": {"id": "f", "name": "a.pdf", "mime": "application/pdf", "size": 1}}]
    passed_over = [{"recall": {"seq": 1}}, {"edit": {"seq": 1, "text": "new"}}, {"edit": {"seq": 1, "recalled": True}},
                   {"recalled": True}, {"deleted": True}]
    assert all(stands_for_conversation(body) for body in shown)
    assert not any(stands_for_conversation(body) for body in passed_over)
    assert all(counts_as_unread(body, sender=2, reader=1) for body in shown)
    assert not any(counts_as_unread(body, sender=1, reader=1) for body in shown)  # my own, from another device
    assert not any(counts_as_unread(body, sender=2, reader=1) for body in passed_over)
