"""1:1 calls: the service that runs :mod:`pica.core.call_rules` against this node's devices, the ring timer and
the store (docs/protocol.md, "Calls"; docs/architecture.md, "Calls").

Signalling is live only: offers, answers and candidates are relayed, never stored. What is stored is one record
per call, written through the chat service's append (so the conversation's seqs stay gap-free and every device
gets it like a message) once the call is over.

Calls live in this node's memory, on the node of the caller's device. A node that stops ends its calls
(``call_ended`` "shutdown", records written while the store still answers); a node that crashes loses them: no
record is written, and the clients' peer connections fail on their own (ICE consent expires).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Iterable
from typing import Protocol, cast

from pica.config import CallsConfig
from pica.core.call_rules import Call, CallLimits, Effect, ToDevice, check_invite
from pica.core.chat import ChatService
from pica.core.ports import Clock, Delivery
from pica.core.ratelimit import Buckets, Rate, RateLimits
from pica.errors import CallNotFound, NotConfigured
from pica.protocol import frames as f
from pica.protocol.outbound import OutboundFrame
from pica.store.base import Store

log = logging.getLogger(__name__)

__all__ = ["CallDevice", "CallService"]


class CallDevice(Protocol):
    """One connected device, as the gateway's connections are."""

    def push(self, frame: OutboundFrame) -> None: ...


class CallService:
    def __init__(self, store: Store, chat: ChatService, delivery: Delivery, clock: Clock, config: CallsConfig,
                 rates: RateLimits | None = None) -> None:
        self._store = store
        self._chat = chat
        self._delivery = delivery
        self._clock = clock
        self._config = config
        self._limits = CallLimits(config.max_sdp_bytes, config.max_candidate_bytes, config.max_candidates,
                                  config.ring_timeout)
        self._rates = rates
        self._invites = Buckets("call_invites", Rate.parse(config.invites_per_user),
                                rates.config.max_keys if rates is not None else 100_000)
        self._calls: dict[str, Call] = {}
        self._by_user: dict[int, Call] = {}
        """Each user's call in progress: one at a time (``busy``)."""
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def active(self) -> int:
        return len(self._calls)

    # ------------------------------------------------------------------------------------------ frames

    async def invite(self, user_id: int, device: CallDevice, frame: f.CallInvite) -> f.CallPlaced:
        if not self._config.enabled:
            raise NotConfigured("calls are turned off on this server")
        check_invite(user_id, frame.to, frame.sdp, self._limits, caller_busy=user_id in self._by_user,
                     callee_busy=frame.to in self._by_user)
        if self._rates is not None:
            self._rates.check(self._invites, user_id, "call invites")
        refusal = await self._store.direct_refusal(user_id, frame.to)
        if refusal is not None:
            raise refusal
        # Asked again after the await: another invite may have taken either user meanwhile.
        check_invite(user_id, frame.to, frame.sdp, self._limits, caller_busy=user_id in self._by_user,
                     callee_busy=frame.to in self._by_user)
        call = Call(secrets.token_urlsafe(12), user_id, frame.to, frame.media, device, self._clock.now_ms(),
                    self._limits)
        self._calls[call.call_id] = call
        self._by_user[call.caller] = call
        self._by_user[call.callee] = call
        self._timers[call.call_id] = asyncio.get_running_loop().call_later(
            self._config.ring_timeout, self._ring_timeout, call.call_id)
        log.info("call placed", extra={"call_id": call.call_id, "user_id": user_id, "peer": frame.to})
        self._run(call, call.invite_effects(frame.sdp))
        return f.CallPlaced(call_id=call.call_id, timeout=self._config.ring_timeout, ref=frame.id)

    def handle(self, user_id: int, device: CallDevice, frame: f.CallControlFrame) -> None:
        """Every call frame but the invite; raises the PicaError to answer with."""
        call = self._calls.get(frame.call_id)
        if call is None:
            raise CallNotFound()
        now = self._clock.now_ms()
        if isinstance(frame, f.CallAccept):
            effects = call.accept(user_id, device, frame.sdp, now)
        elif isinstance(frame, f.CallRinging):
            effects = call.ringing(user_id, device)
        elif isinstance(frame, f.CallCandidate):
            effects = call.candidate(user_id, device, frame)
        elif isinstance(frame, f.CallDecline):
            effects = call.decline(user_id, device, now)
        elif isinstance(frame, f.CallCancel):
            effects = call.cancel(user_id, device, now)
        else:
            effects = call.hangup(user_id, device, now)
        self._run(call, effects)

    def disconnected(self, user_id: int, device: CallDevice) -> None:
        """A connection closed: the calls it was the caller's or the answering device of are over."""
        call = self._by_user.get(user_id)
        if call is not None:
            self._run(call, call.disconnected(device, self._clock.now_ms()))

    async def close(self) -> None:
        """The node is stopping: end every call and wait for their records."""
        now = self._clock.now_ms()
        for call in list(self._calls.values()):
            self._run(call, call.shut_down(now))
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)

    # ------------------------------------------------------------------------------------------ running the rules

    def _ring_timeout(self, call_id: str) -> None:
        self._timers.pop(call_id, None)
        call = self._calls.get(call_id)
        if call is not None:
            self._run(call, call.timed_out(self._clock.now_ms()))

    def _run(self, call: Call, effects: Iterable[Effect]) -> None:
        for effect in effects:
            frame = OutboundFrame(effect.frame)
            if isinstance(effect.target, ToDevice):
                device = effect.target.device
                if device is not None:
                    cast(CallDevice, device).push(frame)
            else:
                self._delivery.deliver((effect.target.user_id,), frame, exclude=effect.target.exclude)
        if call.over:
            self._finish(call)

    def _finish(self, call: Call) -> None:
        if self._calls.pop(call.call_id, None) is None:
            return
        for user_id in call.parties():
            if self._by_user.get(user_id) is call:
                del self._by_user[user_id]
        timer = self._timers.pop(call.call_id, None)
        if timer is not None:
            timer.cancel()
        log.info("call ended", extra={"call_id": call.call_id, "outcome": call.outcome and call.outcome.value,
                                      "reason": call.reason})
        task = asyncio.get_running_loop().create_task(self._record(call))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _record(self, call: Call) -> None:
        try:
            await self._chat.append_server_body(call.caller, call.callee, call.record_id(), call.record())
        except Exception as exc:  # a block written during the call refuses it, as it would a message
            log.warning("call record not written: %s", exc, extra={"call_id": call.call_id})
