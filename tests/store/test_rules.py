"""The group and recall/edit rules every backend shares (pure; the contract suite checks them through both stores)."""

from __future__ import annotations

from typing import Any

import pytest

from pica.errors import BadRequest, Forbidden, MessageNotFound, NotFound, UserNotFound
from pica.store import group_rules as rules
from pica.store.base import EventAppend
from pica.store.event_rules import Target, plan_event, scrub_edits


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


OPEN = rules.Consent("everyone", contact=False, blocked=False)


def everyone_consents(*user_ids: int) -> dict[int, rules.Consent]:
    return dict.fromkeys(user_ids, OPEN)


def test_adding_checks_rank_then_newcomers_then_size() -> None:
    with pytest.raises(Forbidden, match="owner or an admin can add members"):
        rules.plan_add(2, "member", [9], {1, 2}, 10, everyone_consents(9))
    with pytest.raises(BadRequest, match="member already"):
        rules.plan_add(1, "owner", [2, 2], {1, 2}, 10, {})
    with pytest.raises(UserNotFound):
        rules.plan_add(1, "owner", [3, 4], {1, 2}, 10, everyone_consents(3))  # 4 does not exist
    with pytest.raises(BadRequest, match="at most 3 members"):
        rules.plan_add(1, "owner", [3, 4], {1, 2}, 3, everyone_consents(3, 4))
    plan = rules.plan_add(1, "admin", [4, 3, 4, 2], {1, 2}, 10, everyone_consents(3, 4))
    assert plan.added == (4, 3) and plan.event is not None and plan.event["user_ids"] == [4, 3]


def test_consent_decides_add_invite_or_a_silent_drop() -> None:
    def outcome(group_add: str, contact: bool = False, blocked: bool = False) -> str:
        return rules.add_outcome(rules.Consent(group_add, contact, blocked))

    assert [outcome("everyone"), outcome("contacts"), outcome("contacts", contact=True), outcome("nobody"),
            outcome("nobody", contact=True)] == ["add", "invite", "add", "invite", "invite"]
    assert outcome("everyone", contact=True, blocked=True) == "drop"  # a block applies to group adds
    plan = rules.plan_add(1, "owner", [5, 6, 7], {1}, 2, {5: OPEN, 6: rules.Consent("nobody", False, False),
                                                          7: rules.Consent("everyone", True, True)})
    # Invitations do not count against the size until accepted; the blocker is "invited" as far as 1 can tell.
    assert (plan.added, plan.invited, plan.invitations) == ((5,), (6, 7), (6,))
    nobody_added = rules.plan_add(1, "owner", [6], {1}, 10, {6: rules.Consent("nobody", False, False)})
    assert nobody_added.event is None and nobody_added.invited == (6,)


def test_an_owners_successor_is_the_highest_ranked_then_the_longest_in_the_group() -> None:
    assert rules.successor({}) is None
    assert rules.successor({5: ("member", 0), 6: ("admin", 9), 7: ("admin", 3), 8: ("admin", 3)}) == 7
    assert rules.successor({5: ("member", 4), 4: ("member", 4)}) == 4


def test_an_invitation_is_rechecked_when_accepted() -> None:
    rules.check_invitation("admin", dissolved=False, already_member=False, members=3, max_members=4)
    with pytest.raises(NotFound):
        rules.check_invitation("member", dissolved=False, already_member=False, members=3, max_members=4)
    with pytest.raises(NotFound):
        rules.check_invitation(None, dissolved=False, already_member=False, members=3, max_members=4)
    with pytest.raises(Forbidden):
        rules.check_invitation("owner", dissolved=True, already_member=False, members=3, max_members=4)
    with pytest.raises(BadRequest, match="already"):
        rules.check_invitation("owner", dissolved=False, already_member=True, members=3, max_members=4)
    with pytest.raises(BadRequest, match="at most 3"):
        rules.check_invitation("owner", dissolved=False, already_member=False, members=3, max_members=3)


def test_big_changes_are_counted_not_listed() -> None:
    plan = rules.plan_add(1, "owner", range(100, 301), {1}, 1000, everyone_consents(*range(100, 301)))
    assert len(plan.added) == 201 and plan.event == {"event": "members_added", "by": 1, "count": 201}


def test_names_are_trimmed_and_bounded() -> None:
    assert rules.plan_rename(1, "admin", "  book club ")[0] == "book club"
    for bad in ("   ", "x" * (rules.MAX_NAME + 1)):
        with pytest.raises(BadRequest):
            rules.plan_rename(1, "admin", bad)
    with pytest.raises(Forbidden):
        rules.plan_rename(3, "member", "new name")


# ---------------------------------------------------------------------------------------------- recall and edit

def event(kind: str, *, user: int = 1, seq: int = 5, ts: int = 10_000, text: str = "") -> EventAppend:
    return EventAppend(kind, "d:1:2", user, seq, "e1", ts, text, window_ms=120_000)


def test_an_author_edits_text_keeping_the_rest_of_the_body() -> None:
    target = Target(sender=1, ts=9_000, state="", body={"text": "helo", "mentions": [2]})
    plan = plan_event(event("edit", text="hello"), joined_seq=0, dissolved=False, target=target)
    assert plan.state == "edited" and plan.search_text == "hello"
    assert plan.body == {"text": "hello", "mentions": [2], "edited": 10_000}
    assert plan.event == {"edit": {"seq": 5, "text": "hello"}}
    assert target.body == {"text": "helo", "mentions": [2]}  # the stored body is not changed in place


def test_editing_a_caption_keeps_the_file_name_in_the_search_text() -> None:
    body = {"image": {"id": "i", "name": "beach.png", "mime": "image/png", "size": 1}, "text": "old"}
    plan = plan_event(event("edit", text="sunset"), joined_seq=0, dissolved=False, target=Target(1, 9_000, "", body))
    assert plan.search_text == "sunset beach.png"


def test_a_recall_scrubs_only_the_edit_events_of_its_target() -> None:
    later: list[tuple[int, dict[str, Any]]] = [
        (6, {"edit": {"seq": 5, "text": "secret"}}), (7, {"text": "unrelated"}),
        (8, {"edit": {"seq": 4, "text": "another message"}}), (9, {"recall": {"seq": 4}}),
        (10, {"edit": {"seq": 5, "text": "more secret"}})]
    scrubbed = {"edit": {"seq": 5, "recalled": True}}
    assert scrub_edits(5, later) == [(6, scrubbed), (10, scrubbed)]
    assert scrub_edits(5, []) == []


@pytest.mark.parametrize(
    ("request_", "target", "joined", "dissolved", "error"),
    [
        (event("recall"), None, 0, False, MessageNotFound),
        (event("recall", seq=5), Target(1, 9_000, "", {"text": "x"}), 5, False, MessageNotFound),  # before joining
        (event("recall", user=2), Target(1, 9_000, "", {"text": "x"}), 0, False, Forbidden),  # not the author
        (event("edit", text="y"), Target(1, 9_000, "recalled", {"recalled": True}), 0, False, Forbidden),
        (event("recall"), Target(1, 9_000, "", {"text": "x"}), 0, True, Forbidden),  # dissolved group
        (event("recall"), Target(1, 9_000, "", {"system": {"event": "created"}}), 0, False, Forbidden),
        (event("recall", ts=200_000), Target(1, 9_000, "", {"text": "x"}), 0, False, Forbidden),  # window passed
        (event("edit", text="y"), Target(1, 9_000, "", {"file": {"id": "f"}}), 0, False, BadRequest),
    ],
)
def test_recall_and_edit_refusals(request_: EventAppend, target: Target | None, joined: int, dissolved: bool,
                                  error: type[Exception]) -> None:
    with pytest.raises(error):
        plan_event(request_, joined_seq=joined, dissolved=dissolved, target=target)
