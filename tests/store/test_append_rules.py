"""The send policy and seq allocation of a batch (pure), and the dialect tables that carry it out.

The contract suite checks the same outcomes through both stores; these stories pin the rules one batch at a time,
including what only a batch can do: two messages with one client id, several conversations, refusals between
accepted messages.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pica.errors import Forbidden, UserNotFound
from pica.store import sql_postgres, sql_sqlite
from pica.store.append_rules import (
    BLOCKED_MESSAGE,
    MUTED_MESSAGE,
    NOT_A_MEMBER_MESSAGE,
    Append,
    GroupSender,
    Original,
    Recipient,
    plan_appends,
)
from pica.store.base import AppendResult, DirectAppend, GroupAppend

OPEN = Recipient(blocks_sender=False, only_contacts_refuses=False)
MEMBER = GroupSender("member", muted=False, muted_all=False, dissolved=False, members_version=4)


def direct(sender: int, recipient: int, cmid: str, ts: int = 100) -> DirectAppend:
    low, high = sorted((sender, recipient))
    return DirectAppend(f"d:{low}:{high}", sender, recipient, cmid, b'{"text":"hi"}', ts)


def group(sender: int, cmid: str, conversation: str = "g:1", ts: int = 100) -> GroupAppend:
    return GroupAppend(conversation, sender, cmid, b'{"text":"hi"}', ts)


def test_a_new_conversation_starts_at_one_and_both_people_become_members() -> None:
    plan = plan_appends([direct(1, 2, "a"), direct(2, 1, "b")], [None, None], last_seqs={}, originals={},
                        recipients={(2, 1): OPEN, (1, 2): OPEN}, group_senders={})
    assert [o.seq for o in plan.outcomes if isinstance(o, AppendResult)] == [1, 2]
    assert plan.new_members == [("d:1:2", 1), ("d:1:2", 2)]
    assert plan.last == {"d:1:2": (2, 100)}
    assert plan.read == {("d:1:2", 1): 1, ("d:1:2", 2): 2}


def test_seqs_follow_request_order_per_conversation() -> None:
    requests: list[Append] = [direct(1, 2, "a"), group(1, "b"), direct(1, 2, "c"), group(3, "d")]
    plan = plan_appends(requests, [None] * 4, last_seqs={"d:1:2": 7, "g:1": 40}, originals={},
                        recipients={(2, 1): OPEN}, group_senders={("g:1", 1): MEMBER, ("g:1", 3): MEMBER})
    assert [(o.conversation_id, o.seq) for o in plan.outcomes if isinstance(o, AppendResult)] == [
        ("d:1:2", 8), ("g:1", 41), ("d:1:2", 9), ("g:1", 42)]
    assert plan.new_members == []
    group_result = plan.outcomes[1]
    assert isinstance(group_result, AppendResult) and group_result.members_version == 4


def test_a_repeated_client_id_gets_its_original_whether_stored_before_or_earlier_in_the_batch() -> None:
    requests = [direct(1, 2, "old"), direct(1, 2, "new"), direct(1, 2, "new")]
    plan = plan_appends(requests, [None] * 3, last_seqs={"d:1:2": 5}, originals={(1, "old"): Original("d:1:2", 3, 9)},
                        recipients={(2, 1): OPEN}, group_senders={})
    assert plan.outcomes == [
        AppendResult("d:1:2", 3, 9, duplicate=True),
        AppendResult("d:1:2", 6, 100, duplicate=False),
        AppendResult("d:1:2", 6, 100, duplicate=True),
    ]
    assert len(plan.messages) == 1


def test_refusals_take_no_seq_and_leave_the_others_alone() -> None:
    requests: list[Append] = [direct(1, 2, "blocked"), direct(1, 99, "nobody"), group(5, "outsider"), group(6, "muted"),
                direct(1, 3, "fine")]
    muted = GroupSender("member", muted=False, muted_all=True, dissolved=False, members_version=1)
    plan = plan_appends(
        requests, [None] * 5, last_seqs={"d:1:2": 1, "g:1": 10, "d:1:3": 4}, originals={},
        recipients={(2, 1): Recipient(blocks_sender=True, only_contacts_refuses=False), (3, 1): OPEN},
        group_senders={("g:1", 6): muted},
    )
    blocked, nobody, outsider, silenced, fine = plan.outcomes
    assert isinstance(blocked, Forbidden) and blocked.message == BLOCKED_MESSAGE
    assert isinstance(nobody, UserNotFound)
    assert isinstance(outsider, Forbidden) and outsider.message == NOT_A_MEMBER_MESSAGE
    assert isinstance(silenced, Forbidden) and silenced.message == MUTED_MESSAGE
    assert fine == AppendResult("d:1:3", 5, 100, duplicate=False)
    assert plan.last == {"d:1:3": (5, 100)}


def test_a_note_to_self_passes_even_when_one_blocks_oneself() -> None:
    plan = plan_appends([direct(4, 4, "x")], [None], last_seqs={}, originals={},
                        recipients={(4, 4): Recipient(blocks_sender=True, only_contacts_refuses=True)},
                        group_senders={})
    assert plan.outcomes == [AppendResult("d:4:4", 1, 100, duplicate=False)]
    assert plan.new_members == [("d:4:4", 4)]


def test_admins_speak_when_everyone_is_muted_but_not_when_muted_themselves() -> None:
    everyone_muted = GroupSender("admin", muted=False, muted_all=True, dissolved=False, members_version=1)
    admin_muted = GroupSender("admin", muted=True, muted_all=False, dissolved=False, members_version=1)
    plan = plan_appends([group(1, "a"), group(2, "b")], [None, None], last_seqs={"g:1": 0}, originals={},
                        recipients={}, group_senders={("g:1", 1): everyone_muted, ("g:1", 2): admin_muted})
    assert isinstance(plan.outcomes[0], AppendResult)
    assert isinstance(plan.outcomes[1], Forbidden)


@settings(deadline=None, max_examples=200)
@given(st.lists(st.tuples(st.sampled_from([1, 2, 3]), st.sampled_from([1, 2, 3]), st.sampled_from("abcd")),
                min_size=1, max_size=30),
       st.dictionaries(st.sampled_from(["d:1:2", "d:1:3", "d:2:3", "d:1:1", "d:2:2", "d:3:3"]),
                       st.integers(0, 50)))
def test_every_batch_is_gap_free_and_stores_each_client_id_once(
    sends: list[tuple[int, int, str]], last_seqs: dict[str, int]
) -> None:
    requests = [direct(s, r, f"{s}-{c}") for s, r, c in sends]
    recipients = {(r, s): OPEN for s in (1, 2, 3) for r in (1, 2, 3)}
    plan = plan_appends(requests, [None] * len(requests), last_seqs=last_seqs, originals={}, recipients=recipients,
                        group_senders={})
    stored = [(r.conversation_id, seq) for r, seq, _ in plan.messages]
    for conversation_id in {c for c, _ in stored}:
        seqs = [seq for c, seq in stored if c == conversation_id]
        start = last_seqs.get(conversation_id, 0)
        assert seqs == list(range(start + 1, start + 1 + len(seqs)))
    keys = [(r.sender, r.client_msg_id) for r, _, _ in plan.messages]
    assert len(keys) == len(set(keys)) == len({(r.sender, r.client_msg_id) for r in requests})


def test_both_dialects_carry_every_statement() -> None:
    assert set(sql_sqlite.STATEMENTS) == set(sql_postgres.STATEMENTS)
