"""XEP-0198 stream resumption: what a lost stream leaves behind for its client to take up on a new one.

A stream with resumption enabled that ends without ``</stream:stream>`` leaves its :class:`Detached` state here for
``xmpp.resume_window`` seconds: the counts of both sides, the stanzas the client has not acknowledged, and how far
each conversation was delivered on it. A new stream of the same user that resumes it is sent those stanzas again,
then what the store holds that the lost stream would have been sent meanwhile (docs/protocol.md, 31.7). The registry
is node-local: a client resumes on the node it lost (one behind a load balancer that moves it starts a new stream
and catches up through MAM).
"""

from __future__ import annotations

import asyncio
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(slots=True)
class Detached:
    user_id: int
    resource: str
    handled: int
    """Stanzas of the client's handled (XEP-0198's h of the server)."""
    sent: int
    """Stanzas sent to the client, counted."""
    unacked: deque[tuple[int, bytes]]
    """Stanzas sent and not acknowledged: (their count, their bytes)."""
    delivered: dict[str, int]
    """Conversation id → the highest seq written to the stream."""
    bound_at_ms: int
    """When the stream was bound: from then on everything of the user's was meant for it."""
    rooms: dict[int, str] = field(default_factory=dict)
    carbons: bool = False
    login_session: str = ""
    """The session of the lost stream's SASL login, ended when the state expires or is taken up."""


class Resumptions:
    """The node's detached streams, by resumption id, each for its window."""

    def __init__(self, window: float, on_expired: Callable[[Detached], None]) -> None:
        self._window = window
        self._on_expired = on_expired
        self._detached: dict[str, tuple[Detached, asyncio.TimerHandle]] = {}
        self._live: set[str] = set()
        """Ids handed out to live streams (so an id is never reused while its stream lives)."""

    def new_id(self) -> str:
        while True:
            sm_id = secrets.token_urlsafe(18)
            if sm_id not in self._live and sm_id not in self._detached:
                self._live.add(sm_id)
                return sm_id

    def claim(self, sm_id: str) -> None:
        """A resumed stream keeps its id."""
        self._live.add(sm_id)

    def forget(self, sm_id: str) -> None:
        """A stream closed cleanly: nothing to resume."""
        self._live.discard(sm_id)

    def detach(self, sm_id: str, state: Detached) -> None:
        self._live.discard(sm_id)
        timer = asyncio.get_running_loop().call_later(self._window, self._expire, sm_id)
        self._detached[sm_id] = (state, timer)

    def take(self, sm_id: str, user_id: int) -> Detached | None:
        """The detached state of ``sm_id`` if it is ``user_id``'s (a stranger's id is refused like an unknown one),
        removed from the registry."""
        found = self._detached.get(sm_id)
        if found is None or found[0].user_id != user_id:
            return None
        del self._detached[sm_id]
        found[1].cancel()
        return found[0]

    def _expire(self, sm_id: str) -> None:
        found = self._detached.pop(sm_id, None)
        if found is not None:
            self._on_expired(found[0])

    def __len__(self) -> int:
        return len(self._detached)
