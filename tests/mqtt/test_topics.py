"""The topic rules, pure: which topics send where, which filters a user may hold."""

from __future__ import annotations

import pytest

from pica.mqtt import topics


@pytest.mark.parametrize(("topic", "target"), [
    ("send/u/8", ("user", 8)),
    ("send/g/3", ("group", 3)),
    ("send/u/0", None),
    ("send/u/08", None),
    ("send/u/-1", None),
    ("send/u/8/x", None),
    ("send/x/8", None),
    ("send/u/٨", None),  # a digit, but not an ASCII one
    ("msg/d:7:8", None),
    ("send/u/" + "9" * 19, None),
])
def test_send_target(topic: str, target: tuple[str, int] | None) -> None:
    assert topics.send_target(topic) == target


@pytest.mark.parametrize(("topic_filter", "scope"), [
    ("msg/#", topics.ALL),
    ("msg/+", topics.ALL),
    ("msg/d:7:8", "d:7:8"),
    ("msg/d:8:7", None),  # not the canonical id
    ("msg/d:8:9", None),  # not the user's
    ("msg/g:3", "g:3"),
    ("msg/g:03", None),
    ("msg/g:x", None),
    ("msg/u:7", "u:7"),
    ("msg/u:8", None),
    ("msg/", None),
    ("msg/+/x", None),
    ("msg/d:7:8/#", None),
    ("#", None),
    ("send/#", None),
    ("msg/g:3\x01", None),
])
def test_filter_scope_for_user_7(topic_filter: str, scope: str | None) -> None:
    assert topics.filter_scope(topic_filter, 7) == scope
