"""The call state machine with plain values (pica/core/call_rules.py): no sockets, no clock, no timers."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pica.core.call_rules import Call, CallLimits, Effect, Outcome, ToDevice, ToUser, check_invite
from pica.errors import BadRequest, Busy, CallNotFound, CallStateConflict, PicaError
from pica.protocol import frames as f

LIMITS = CallLimits(max_sdp_bytes=100, max_candidate_bytes=50, max_candidates=4, ring_timeout=45.0)
ALICE, BOB = 1, 2


class Device:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


PHONE, DESK, LAPTOP = Device("phone"), Device("desk"), Device("laptop")


def new_call() -> Call:
    return Call("c1", ALICE, BOB, "video", PHONE, started_ms=1_000, limits=LIMITS)


def frames(effects: list[Effect]) -> list[tuple[Any, str, str]]:
    """(target, frame type, reason or sdp) of each effect, readable in an assertion."""
    out = []
    for effect in effects:
        target = effect.target.device if isinstance(effect.target, ToDevice) else (
            effect.target.user_id, effect.target.exclude)
        detail = getattr(effect.frame, "reason", "") or getattr(effect.frame, "sdp", "")
        out.append((target, effect.frame.__struct_config__.tag, detail))
    return out


def test_an_answered_call_and_its_record() -> None:
    call = new_call()
    assert frames(call.invite_effects("offer")) == [((BOB, None), "call_incoming", "offer")]
    assert frames(call.ringing(BOB, DESK)) == [(PHONE, "call_ringing", "")]
    assert call.ringing(BOB, LAPTOP) == []  # the caller hears "ringing" once
    assert call.candidate(ALICE, PHONE, f.CallCandidate(call_id="c1", candidate="a")) == []  # held
    assert frames(call.accept(BOB, LAPTOP, "answer", now_ms=2_000)) == [
        (PHONE, "call_accepted", "answer"), ((BOB, LAPTOP), "call_ended", "answered_elsewhere"),
        (LAPTOP, "call_candidate", "")]
    with pytest.raises(CallNotFound):  # the desk is out of it now
        call.accept(BOB, DESK, "answer", now_ms=2_001)
    assert frames(call.candidate(BOB, LAPTOP, f.CallCandidate(call_id="c1", candidate="b"))) == [
        (PHONE, "call_candidate", "")]
    assert frames(call.hangup(BOB, LAPTOP, now_ms=65_000)) == [(PHONE, "call_ended", "hung_up")]
    assert call.over and call.record() == {"call": {"call_id": "c1", "media": "video", "outcome": "answered",
                                                    "reason": "hung_up", "duration_ms": 63_000, "ended_by": BOB}}
    assert call.record_id() == "~c:c1"
    with pytest.raises(CallNotFound):
        call.hangup(ALICE, PHONE, now_ms=65_001)


def test_endings_before_the_answer() -> None:
    call = new_call()
    assert frames(call.decline(BOB, DESK, 5)) == [(PHONE, "call_ended", "declined"),
                                                  ((BOB, DESK), "call_ended", "declined_elsewhere")]
    assert call.outcome is Outcome.DECLINED

    call = new_call()
    assert frames(call.hangup(ALICE, PHONE, 5)) == [((BOB, None), "call_ended", "cancelled")]  # = cancel
    assert call.outcome is Outcome.CANCELLED

    call = new_call()
    assert frames(call.timed_out(46_000)) == [(PHONE, "call_ended", "timeout"), ((BOB, None), "call_ended", "timeout")]
    assert call.record()["call"]["outcome"] == "missed"

    call = new_call()
    assert call.disconnected(DESK, 5) == []  # another device of Bob may still answer
    assert frames(call.disconnected(PHONE, 5)) == [((BOB, None), "call_ended", "disconnected")]
    assert call.outcome is Outcome.FAILED


def test_a_timer_after_the_answer_changes_nothing() -> None:
    call = new_call()
    call.accept(BOB, DESK, "answer", 10)
    assert call.timed_out(46_000) == [] and not call.over


def test_who_may_send_what() -> None:
    call = new_call()
    with pytest.raises(CallNotFound):
        call.cancel(3, PHONE, 1)  # a stranger
    with pytest.raises(CallNotFound):
        call.cancel(ALICE, DESK, 1)  # Alice, but not from the device that placed the call
    with pytest.raises(CallStateConflict):
        call.accept(ALICE, PHONE, "answer", 1)
    with pytest.raises(CallStateConflict):
        call.cancel(BOB, DESK, 1)
    with pytest.raises(CallStateConflict):
        call.candidate(BOB, DESK, f.CallCandidate(call_id="c1", candidate="x"))
    with pytest.raises(BadRequest):
        call.accept(BOB, DESK, "x" * 101, 1)
    with pytest.raises(BadRequest):
        call.candidate(ALICE, PHONE, f.CallCandidate(call_id="c1", candidate="x" * 51))
    with pytest.raises(BadRequest):
        check_invite(ALICE, ALICE, "offer", LIMITS, caller_busy=False, callee_busy=False)
    with pytest.raises(Busy):
        check_invite(ALICE, BOB, "offer", LIMITS, caller_busy=False, callee_busy=True)


EVENTS = st.lists(st.tuples(st.sampled_from(["ringing", "accept", "decline", "cancel", "hangup", "candidate",
                                             "timeout", "disconnect"]),
                            st.sampled_from([(ALICE, PHONE), (ALICE, DESK), (BOB, DESK), (BOB, LAPTOP), (3, PHONE)])),
                  max_size=12)


@given(EVENTS)
def test_any_sequence_keeps_the_invariants(events: list[tuple[str, tuple[int, Device]]]) -> None:
    """Whatever the devices send in whatever order: one device answers at most, nothing is addressed to a callee
    device other than the answering one after the answer, the call ends once, and after its end every frame is
    refused as not found."""
    call = new_call()
    answered_by: object | None = None
    ends = 0
    for now, (event, (user, device)) in enumerate(events):
        was_over = call.over
        try:
            if event == "ringing":
                effects = call.ringing(user, device)
            elif event == "accept":
                effects = call.accept(user, device, "answer", now)
            elif event == "decline":
                effects = call.decline(user, device, now)
            elif event == "cancel":
                effects = call.cancel(user, device, now)
            elif event == "hangup":
                effects = call.hangup(user, device, now)
            elif event == "candidate":
                effects = call.candidate(user, device, f.CallCandidate(call_id="c1", candidate="c"))
            elif event == "timeout":
                effects = call.timed_out(now)
            else:
                effects = call.disconnected(device, now)
        except PicaError as exc:
            assert not was_over or isinstance(exc, CallNotFound)
            continue
        assert not was_over or effects == []
        if call.answered_by is not None:
            assert answered_by in (None, call.answered_by)
            if answered_by is not None:  # already answered before this event
                for effect in effects:
                    assert not isinstance(effect.target, ToUser), effect
                    assert effect.target.device in (PHONE, call.answered_by)
            answered_by = call.answered_by
        ends += call.over and not was_over
    assert ends <= 1
    if call.over:
        assert call.record()["call"]["outcome"] in {o.value for o in Outcome}
