"""The group permission rules every backend shares (pure; the contract suite checks them through both stores)."""

from __future__ import annotations

import pytest

from pica.errors import BadRequest, Forbidden
from pica.store import group_rules as rules


@pytest.mark.parametrize(
    ("actor_role", "target_role", "allowed"),
    [("owner", "admin", True), ("owner", "member", True), ("admin", "member", True), ("admin", "admin", False),
     ("member", "member", False), ("admin", "owner", False)],
)
def test_members_are_removed_only_by_someone_ranked_above_them(actor_role: str, target_role: str,
                                                                allowed: bool) -> None:
    if allowed:
        removed, event = rules.plan_leave("remove", 1, actor_role, {7: target_role})
        assert removed == (7,) and event == {"event": "members_removed", "by": 1, "user_ids": [7]}
    else:
        with pytest.raises(Forbidden):
            rules.plan_leave("remove", 1, actor_role, {7: target_role})


def test_anyone_but_the_owner_may_leave() -> None:
    assert rules.plan_leave("leave", 5, "member", {5: "member"})[1]["event"] == "member_left"
    with pytest.raises(Forbidden, match="transfer ownership or dissolve"):
        rules.plan_leave("leave", 1, "owner", {1: "owner"})


def test_adding_checks_rank_then_newcomers_then_size() -> None:
    with pytest.raises(Forbidden, match="owner or an admin can add members"):
        rules.plan_add(2, "member", [9], {1, 2}, 10)
    with pytest.raises(BadRequest, match="member already"):
        rules.plan_add(1, "owner", [2, 2], {1, 2}, 10)
    with pytest.raises(BadRequest, match="at most 3 members"):
        rules.plan_add(1, "owner", [3, 4], {1, 2}, 3)
    added, event = rules.plan_add(1, "admin", [4, 3, 4, 2], {1, 2}, 10)
    assert added == (4, 3) and event["user_ids"] == [4, 3]


def test_big_changes_are_counted_not_listed() -> None:
    added, event = rules.plan_add(1, "owner", range(100, 301), {1}, 1000)
    assert len(added) == 201 and event == {"event": "members_added", "by": 1, "count": 201}


def test_names_are_trimmed_and_bounded() -> None:
    assert rules.plan_rename(1, "admin", "  book club ")[0] == "book club"
    for bad in ("   ", "x" * (rules.MAX_NAME + 1)):
        with pytest.raises(BadRequest):
            rules.plan_rename(1, "admin", bad)
    with pytest.raises(Forbidden):
        rules.plan_rename(3, "member", "new name")
