"""The rules of a 1:1 call, sans-I/O: who may send which call frame in which state, and what each one makes the
server send to whom (docs/protocol.md, "Calls").

A :class:`Call` is a plain object fed with events (a frame from a device, the ring timer firing, a device
disconnecting) that answers with :class:`Effect` values, frames addressed to one device or to every device of a user,
and raises :class:`~pica.errors.PicaError` for a frame that is not allowed. :mod:`pica.core.calls` runs it against the
node's connections and the store; nothing here touches a socket, a clock or a timer.

States::

    invited ──(a callee device rings)──► ringing
    invited / ringing ──accept (first device wins)──► answered ──hangup / disconnect──► ended
    invited / ringing ──decline / cancel / ring timeout / caller disconnects──► ended

A device is an opaque key (the gateway's connection object): the caller's device is the one that placed the call;
before the answer every device of the callee may act, after it only the one that answered.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Final

from pica.errors import BadRequest, Busy, CallNotFound, CallStateConflict
from pica.protocol import frames as f

RECORD_PREFIX: Final = "~c:"
"""``client_msg_id`` of a call's timeline record: ``~c:<call_id>`` (server ids start with ``~``, protocol 7.3)."""


class Phase(enum.Enum):
    INVITED = "invited"
    RINGING = "ringing"
    ANSWERED = "answered"
    ENDED = "ended"


class Outcome(enum.Enum):
    """What the timeline record says of a call."""

    ANSWERED = "answered"
    MISSED = "missed"
    """Rang until ``calls.ring_timeout``."""
    DECLINED = "declined"
    CANCELLED = "cancelled"
    FAILED = "failed"
    """Ended before the answer by the caller's device going away or the node shutting down."""


@dataclass(frozen=True, slots=True)
class ToDevice:
    device: object


@dataclass(frozen=True, slots=True)
class ToUser:
    """Every connected device of ``user_id`` except ``exclude``."""

    user_id: int
    exclude: object | None = None


Target = ToDevice | ToUser


@dataclass(frozen=True, slots=True)
class Effect:
    target: Target
    frame: Any


@dataclass(frozen=True, slots=True)
class CallLimits:
    max_sdp_bytes: int
    max_candidate_bytes: int
    max_candidates: int
    ring_timeout: float


def check_invite(caller: int, callee: int, sdp: str, limits: CallLimits, *, caller_busy: bool,
                 callee_busy: bool) -> None:
    """Refuse an invite before anything is asked of the store. Whether the caller may reach the callee at all (a
    block, only-contacts) is the send policy's question (pica/store/append_rules.py), asked by the service."""
    if caller == callee:
        raise BadRequest("you cannot call yourself")
    check_sdp(sdp, limits)
    if caller_busy:
        raise Busy("you are in a call already: end it first")
    if callee_busy:
        raise Busy("this user is in another call")


def check_sdp(sdp: str, limits: CallLimits) -> None:
    if len(sdp.encode()) > limits.max_sdp_bytes:
        raise BadRequest(f"sdp is longer than {limits.max_sdp_bytes} bytes")


@dataclass(slots=True)
class Call:
    call_id: str
    caller: int
    callee: int
    media: str
    caller_device: object
    started_ms: int
    limits: CallLimits
    phase: Phase = Phase.INVITED
    answered_by: object | None = None
    answered_ms: int = 0
    ended_ms: int = 0
    outcome: Outcome | None = None
    reason: str = ""
    ended_by: int = 0
    held: list[f.CallCandidate] = field(default_factory=list)
    """The caller's candidates sent before the answer, for the device that answers."""
    sent_candidates: dict[int, int] = field(default_factory=dict)

    # ------------------------------------------------------------------------------------------ placing

    def invite_effects(self, sdp: str) -> list[Effect]:
        incoming = f.CallIncoming(call_id=self.call_id, caller=self.caller, media=self.media, sdp=sdp,
                                  timeout=self.limits.ring_timeout)
        return [Effect(ToUser(self.callee), incoming)]

    @property
    def over(self) -> bool:
        return self.phase is Phase.ENDED

    def parties(self) -> tuple[int, int]:
        return self.caller, self.callee

    # ------------------------------------------------------------------------------------------ frames

    def _is_caller(self, user_id: int, device: object) -> bool:
        return user_id == self.caller and device is self.caller_device

    def _side(self, user_id: int, device: object) -> str:
        """"caller" or "callee"; anyone else, or a device not (or no longer) in the call, is told it does not
        exist, so call ids cannot be probed."""
        if self.over:
            raise CallNotFound()
        if self._is_caller(user_id, device):
            return "caller"
        if user_id == self.callee and (self.answered_by is None or device is self.answered_by):
            return "callee"
        raise CallNotFound()

    def ringing(self, user_id: int, device: object) -> list[Effect]:
        if self._side(user_id, device) != "callee" or self.phase is Phase.ANSWERED:
            raise CallStateConflict("only a ringing callee device says it rings")
        if self.phase is Phase.RINGING:
            return []
        self.phase = Phase.RINGING
        return [Effect(ToDevice(self.caller_device), f.CallRinging(call_id=self.call_id))]

    def accept(self, user_id: int, device: object, sdp: str, now_ms: int) -> list[Effect]:
        if self._side(user_id, device) != "callee":
            raise CallStateConflict("only the callee accepts a call")
        if self.phase is Phase.ANSWERED:
            raise CallStateConflict("the call was answered already")
        check_sdp(sdp, self.limits)
        self.phase = Phase.ANSWERED
        self.answered_by = device
        self.answered_ms = now_ms
        effects = [Effect(ToDevice(self.caller_device), f.CallAccepted(call_id=self.call_id, sdp=sdp)),
                   Effect(ToUser(self.callee, exclude=device),
                          f.CallEnded(call_id=self.call_id, reason="answered_elsewhere"))]
        effects += [Effect(ToDevice(device), held) for held in self.held]
        self.held = []
        return effects

    def decline(self, user_id: int, device: object, now_ms: int) -> list[Effect]:
        side = self._side(user_id, device)
        if side != "callee" or self.phase is Phase.ANSWERED:
            raise CallStateConflict("only the callee declines, and only a call not answered yet")
        self._end(Outcome.DECLINED, "declined", user_id, now_ms)
        return [Effect(ToDevice(self.caller_device), self._ended("declined")),
                Effect(ToUser(self.callee, exclude=device), self._ended("declined_elsewhere"))]

    def cancel(self, user_id: int, device: object, now_ms: int) -> list[Effect]:
        if self._side(user_id, device) != "caller" or self.phase is Phase.ANSWERED:
            raise CallStateConflict("only the caller cancels, and only a call not answered yet")
        self._end(Outcome.CANCELLED, "cancelled", user_id, now_ms)
        return [Effect(ToUser(self.callee), self._ended("cancelled"))]

    def hangup(self, user_id: int, device: object, now_ms: int) -> list[Effect]:
        """Ends an answered call; before the answer it is the caller's cancel or the callee's decline."""
        side = self._side(user_id, device)
        if self.phase is not Phase.ANSWERED:
            return self.cancel(user_id, device, now_ms) if side == "caller" else self.decline(user_id, device, now_ms)
        self._end(Outcome.ANSWERED, "hung_up", user_id, now_ms)
        other = self.answered_by if side == "caller" else self.caller_device
        return [Effect(ToDevice(other), self._ended("hung_up"))]

    def candidate(self, user_id: int, device: object, frame: f.CallCandidate) -> list[Effect]:
        side = self._side(user_id, device)
        if len(frame.candidate.encode()) > self.limits.max_candidate_bytes:
            raise BadRequest(f"candidate is longer than {self.limits.max_candidate_bytes} bytes")
        sent = self.sent_candidates.get(user_id, 0)
        if sent >= self.limits.max_candidates:
            raise BadRequest(f"at most {self.limits.max_candidates} candidates per call")
        relayed = f.CallCandidate(call_id=self.call_id, candidate=frame.candidate, sdp_mid=frame.sdp_mid,
                                  sdp_mline_index=frame.sdp_mline_index)
        if side == "callee":
            if self.phase is not Phase.ANSWERED:
                raise CallStateConflict("send candidates after call_accept")
            self.sent_candidates[user_id] = sent + 1
            return [Effect(ToDevice(self.caller_device), relayed)]
        self.sent_candidates[user_id] = sent + 1
        if self.phase is not Phase.ANSWERED:
            self.held.append(relayed)
            return []
        return [Effect(ToDevice(self.answered_by), relayed)]

    # ------------------------------------------------------------------------------------------ events

    def timed_out(self, now_ms: int) -> list[Effect]:
        """The ring timer fired: a call still not answered ends as missed (an answered one is not affected)."""
        if self.phase not in (Phase.INVITED, Phase.RINGING):
            return []
        self._end(Outcome.MISSED, "timeout", 0, now_ms)
        return [Effect(ToDevice(self.caller_device), self._ended("timeout")),
                Effect(ToUser(self.callee), self._ended("timeout"))]

    def disconnected(self, device: object, now_ms: int) -> list[Effect]:
        """A connection closed. Only the caller's device and the answering one end the call: before the answer the
        callee's other devices may still pick up."""
        if self.over:
            return []
        if device is self.caller_device:
            if self.phase is Phase.ANSWERED:
                self._end(Outcome.ANSWERED, "disconnected", self.caller, now_ms)
                return [Effect(ToDevice(self.answered_by), self._ended("disconnected"))]
            self._end(Outcome.FAILED, "disconnected", self.caller, now_ms)
            return [Effect(ToUser(self.callee), self._ended("disconnected"))]
        if device is self.answered_by:
            self._end(Outcome.ANSWERED, "disconnected", self.callee, now_ms)
            return [Effect(ToDevice(self.caller_device), self._ended("disconnected"))]
        return []

    def shut_down(self, now_ms: int) -> list[Effect]:
        if self.over:
            return []
        answered = self.phase is Phase.ANSWERED
        self._end(Outcome.ANSWERED if answered else Outcome.FAILED, "shutdown", 0, now_ms)
        frame = self._ended("shutdown")
        if answered:
            return [Effect(ToDevice(self.caller_device), frame), Effect(ToDevice(self.answered_by), frame)]
        return [Effect(ToDevice(self.caller_device), frame), Effect(ToUser(self.callee), frame)]

    # ------------------------------------------------------------------------------------------ the record

    def record(self) -> dict[str, Any]:
        """The body of the call's timeline message (protocol 7.3), once it is over."""
        assert self.outcome is not None
        body: dict[str, Any] = {"call_id": self.call_id, "media": self.media, "outcome": self.outcome.value,
                                "reason": self.reason}
        if self.outcome is Outcome.ANSWERED:
            body["duration_ms"] = max(0, self.ended_ms - self.answered_ms)
        if self.ended_by:
            body["ended_by"] = self.ended_by
        return {"call": body}

    def record_id(self) -> str:
        return RECORD_PREFIX + self.call_id

    def _end(self, outcome: Outcome, reason: str, by: int, now_ms: int) -> None:
        self.phase = Phase.ENDED
        self.outcome = outcome
        self.reason = reason
        self.ended_by = by
        self.ended_ms = now_ms
        self.held = []

    def _ended(self, reason: str) -> f.CallEnded:
        return f.CallEnded(call_id=self.call_id, reason=reason)
