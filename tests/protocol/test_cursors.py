"""Client-side ordering (pica.client.cursors): each message reaches the application once, in seq order, however the
live pushes and sync pages arrive."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from pica.client.cursors import CursorTracker, GapBuffer, Verdict
from pica.protocol.frames import Msg


def msg(conversation_id: str, seq: int) -> Msg:
    return Msg(
        conversation_id=conversation_id,
        seq=seq,
        sender=1,
        client_msg_id=f"{conversation_id}#{seq}",
        ts=seq,
        body={"text": f"message {seq}"},
    )


# ---------------------------------------------------------------------------------------------- unit tests


def test_a_new_conversation_starts_live_at_seq_1() -> None:
    tracker = CursorTracker()
    assert tracker.accept(msg("c", 1)) is Verdict.NEW
    assert tracker.cursor("c") == 1
    assert tracker.accept(msg("c", 2)) is Verdict.NEW
    assert tracker.snapshot() == {"c": 2}


def test_a_live_message_in_an_unknown_conversation_past_seq_1_is_a_gap() -> None:
    tracker = CursorTracker()
    assert tracker.accept(msg("c", 3)) is Verdict.GAP
    assert tracker.snapshot() == {}  # nothing recorded: the next sync asks for the whole conversation


def test_repeats_are_duplicates_and_skips_are_gaps() -> None:
    tracker = CursorTracker({"c": 4})
    assert tracker.accept(msg("c", 4)) is Verdict.DUPLICATE
    assert tracker.accept(msg("c", 1)) is Verdict.DUPLICATE
    assert tracker.accept(msg("c", 6)) is Verdict.GAP
    assert tracker.cursor("c") == 4  # a gap does not move the cursor
    assert tracker.accept(msg("c", 5)) is Verdict.NEW
    assert tracker.accept(msg("c", 6)) is Verdict.NEW


def test_a_sync_page_may_start_a_conversation_anywhere() -> None:
    """A user added to a group late first sees, by sync, its first visible message: that one is NEW."""
    tracker = CursorTracker()
    assert tracker.accept_synced(msg("g", 7)) is Verdict.NEW
    assert tracker.accept_synced(msg("g", 8)) is Verdict.NEW
    assert tracker.accept_synced(msg("g", 8)) is Verdict.DUPLICATE
    assert tracker.accept(msg("g", 10)) is Verdict.GAP
    assert tracker.cursor("g") == 8


def test_synced_messages_of_a_known_conversation_follow_the_cursor() -> None:
    tracker = CursorTracker({"c": 2})
    assert tracker.accept_synced(msg("c", 2)) is Verdict.DUPLICATE
    assert tracker.accept_synced(msg("c", 4)) is Verdict.GAP
    assert tracker.accept_synced(msg("c", 3)) is Verdict.NEW


def test_snapshot_is_a_copy_and_conversations_are_independent() -> None:
    tracker = CursorTracker({"a": 1})
    snap = tracker.snapshot()
    snap["a"] = 99
    assert tracker.cursor("a") == 1
    assert tracker.accept(msg("b", 1)) is Verdict.NEW
    assert tracker.cursor("a") == 1 and tracker.cursor("b") == 1
    assert tracker.cursor("never-seen") == 0


def test_a_held_message_goes_out_when_the_late_one_arrives() -> None:
    tracker = CursorTracker({"c": 1})
    held = GapBuffer(tracker)
    assert tracker.accept(msg("c", 3)) is Verdict.GAP and held.hold(msg("c", 3))
    assert tracker.accept(msg("c", 4)) is Verdict.GAP and held.hold(msg("c", 4))
    assert held.release("c") == []  # 2 is still missing
    assert held.waiting("c")
    assert tracker.accept(msg("c", 2)) is Verdict.NEW
    assert [m.seq for m in held.release("c")] == [3, 4]
    assert tracker.cursor("c") == 4 and not held.waiting("c")


def test_a_sync_that_passed_the_held_messages_drops_them() -> None:
    tracker = CursorTracker({"c": 1})
    held = GapBuffer(tracker)
    held.hold(msg("c", 3))
    held.hold(msg("c", 6))
    for seq in (2, 3, 4):
        tracker.accept_synced(msg("c", seq))
    assert held.release("c") == []  # 3 came by sync; 5 is still missing before 6
    assert held.held_seqs("c") == [6]
    tracker.accept_synced(msg("c", 5))
    assert [m.seq for m in held.release("c")] == [6]


def test_waiting_cannot_help_a_conversation_without_a_cursor_or_a_full_buffer() -> None:
    tracker = CursorTracker({"c": 1})
    held = GapBuffer(tracker, limit=2)
    assert not held.hold(msg("new", 5))  # only a sync says where an unknown conversation starts
    assert held.hold(msg("c", 3)) and held.hold(msg("c", 4))
    assert held.hold(msg("c", 4))  # the same one again still fits
    assert not held.hold(msg("c", 5))
    assert held.held_seqs("c") == [3, 4]



def test_what_a_complete_sync_could_not_place_is_forgotten_but_not_what_came_during_it() -> None:
    tracker = CursorTracker({"g": 1})
    held = GapBuffer(tracker)
    held.hold(msg("g", 3))  # before the sync: the notice of our removal, say, behind a push that never comes
    before = held.mark()
    held.hold(msg("g", 5))  # arrived while the sync ran
    held.forget(before)
    assert held.held_seqs("g") == [5]
    held.forget(held.mark())
    assert not held.waiting("g")

# ---------------------------------------------------------------------------------------------- state machine

# Conversation id -> the last seq before the user joined (messages up to it are invisible to this user).
JOINED = {"d:1:2": 0, "d:1:3": 0, "g:late": 3}
CONVERSATIONS = sorted(JOINED)


class Delivery(RuleBasedStateMachine):
    """A server timeline grows; live pushes get lost, repeated and reordered; sync pages (taken from the cursors at
    request time, arriving later, possibly stale) fill the holes. The application sees each conversation's visible
    messages exactly once, in order, with no gap: 1..k (or J+1..k for a conversation joined after seq J)."""

    def __init__(self) -> None:
        super().__init__()
        self.timeline: dict[str, list[Msg]] = {c: [] for c in CONVERSATIONS}
        self.live: list[Msg] = []  # pushed, not yet arrived: any of them may arrive next
        self.pages: list[list[Msg]] = []  # sync answers in flight
        self.tracker = CursorTracker()
        self.held = GapBuffer(self.tracker)
        self.handed_out: dict[str, list[Msg]] = {c: [] for c in CONVERSATIONS}

    def hand_out(self, message: Msg) -> None:
        self.handed_out[message.conversation_id].append(message)
        self.handed_out[message.conversation_id].extend(self.held.release(message.conversation_id))

    def release_all(self) -> None:
        for c in self.held.conversations():
            for message in self.held.release(c):
                self.handed_out[c].append(message)

    # -- the server

    @rule(conversation=st.sampled_from(CONVERSATIONS))
    def server_appends(self, conversation: str) -> None:
        seq = len(self.timeline[conversation]) + 1
        message = msg(conversation, seq)
        self.timeline[conversation].append(message)
        if seq > JOINED[conversation]:
            self.live.append(message)

    def sync_page(self, cursors: dict[str, int], limit: int) -> tuple[list[Msg], bool]:
        """What the store answers: visible messages after each cursor, ordered by (conversation_id, seq)."""
        pending = [m for c in CONVERSATIONS for m in self.timeline[c] if m.seq > max(JOINED[c], cursors.get(c, 0))]
        return pending[:limit], len(pending) > limit

    # -- the network

    @precondition(lambda self: self.live)
    @rule(i=st.integers(0, 99))
    def a_live_push_arrives(self, i: int) -> None:
        message = self.live.pop(i % len(self.live))
        verdict = self.tracker.accept(message)
        if verdict is Verdict.NEW:
            self.hand_out(message)
        elif verdict is Verdict.GAP:
            self.held.hold(message)  # refused (no cursor yet): the client syncs, as a rule below does

    @precondition(lambda self: self.live)
    @rule(i=st.integers(0, 99))
    def a_live_push_is_duplicated(self, i: int) -> None:
        self.live.append(self.live[i % len(self.live)])

    @precondition(lambda self: self.live)
    @rule(i=st.integers(0, 99))
    def a_live_push_is_lost(self, i: int) -> None:
        del self.live[i % len(self.live)]

    @rule()
    def the_connection_drops(self) -> None:
        self.live.clear()
        self.pages.clear()

    @rule()
    def the_client_restarts_from_its_saved_cursors(self) -> None:
        self.tracker = CursorTracker(self.tracker.snapshot())
        self.held = GapBuffer(self.tracker)  # what was held died with the process

    # -- the client's syncs

    @rule(limit=st.integers(1, 4))
    def the_client_asks_for_a_sync_page(self, limit: int) -> None:
        page, _ = self.sync_page(self.tracker.snapshot(), limit)
        self.pages.append(page)

    @precondition(lambda self: self.pages)
    @rule(i=st.integers(0, 99))
    def a_sync_page_arrives(self, i: int) -> None:
        for message in self.pages.pop(i % len(self.pages)):
            if self.tracker.accept_synced(message) is Verdict.NEW:
                self.handed_out[message.conversation_id].append(message)
        self.release_all()

    @rule(limit=st.integers(1, 4))
    def the_client_syncs_to_the_end(self, limit: int) -> None:
        """sync_all(): page after page from the current cursors until ``more`` is false; then it holds it all."""
        before = self.held.mark()
        more = True
        while more:
            page, more = self.sync_page(self.tracker.snapshot(), limit)
            for message in page:
                if self.tracker.accept_synced(message) is Verdict.NEW:
                    self.handed_out[message.conversation_id].append(message)
            self.release_all()
        self.held.forget(before)
        for c in CONVERSATIONS:
            assert self.handed_out[c] == self.timeline[c][JOINED[c] :]
            assert not self.held.waiting(c), "a complete sync leaves nothing held"

    # -- what must always hold

    @invariant()
    def each_conversation_is_handed_out_in_order_without_gap_or_repeat(self) -> None:
        for c in CONVERSATIONS:
            seqs = [m.seq for m in self.handed_out[c]]
            assert seqs == list(range(JOINED[c] + 1, JOINED[c] + 1 + len(seqs))), (c, seqs)
            assert self.handed_out[c] == self.timeline[c][JOINED[c] : JOINED[c] + len(seqs)]

    @invariant()
    def only_messages_beyond_a_gap_are_held(self) -> None:
        for c in self.held.conversations():
            seqs = self.held.held_seqs(c)
            assert seqs and seqs[0] > self.tracker.cursor(c) + 1, (c, seqs, self.tracker.cursor(c))

    @invariant()
    def the_cursor_is_the_last_message_handed_out(self) -> None:
        for c in CONVERSATIONS:
            if self.handed_out[c]:
                assert self.tracker.cursor(c) == self.handed_out[c][-1].seq
            else:
                assert self.tracker.cursor(c) in (0, JOINED[c])


Delivery.TestCase.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
test_delivery = Delivery.TestCase
