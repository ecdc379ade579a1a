"""Closing the sockets of ended sessions: logout, a session revoked from another device, a password change, a reused
refresh token, ``pica user revoke``. Any node (or an admin command) may end a session, so every node polls the
store for the sessions ended lately and closes its own connections of them; one mechanism for every cause, with
the cluster bus not needed (a missed bus message would leave a socket open)."""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from pica.core.ports import Clock
from pica.core.sessions import FORGET_AFTER_MS
from pica.errors import PicaError, SessionEnded
from pica.gateway.hub import Hub
from pica.logs import audit
from pica.protocol.close_codes import CloseCode
from pica.store.base import Store

log = logging.getLogger(__name__)

LOOK_BACK_MS: Final = 10_000
"""Each poll reads the sessions ended in the last this many ms (not just since the last poll): the node that ended
one stamped it with its own clock, which may run behind this node's, and its commit may land a moment after the
stamp. Reading one twice is harmless: its sockets are gone."""

_ENDED: Final = "this session has ended: log in again"
_WHY: Final = {
    "logout": "logged out",
    "password_changed": "the password was changed: log in again",
    "refresh_reuse": "this session's refresh token was used twice: log in again",
    "account_deleted": "this account was deleted",
}
"""The ``session_ended`` message a closed socket is given, by the reason its session ended."""

FORGET_EVERY: Final = 3600.0
"""Seconds between two clean-ups of long-ended sessions' rows."""


class RevocationSweep:
    def __init__(self, store: Store, hub: Hub, clock: Clock, interval: float) -> None:
        self._store = store
        self._hub = hub
        self._clock = clock
        self._interval = interval

    async def run(self) -> None:
        last_forget = self._clock.monotonic()
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.once()
                if self._clock.monotonic() - last_forget >= FORGET_EVERY:
                    last_forget = self._clock.monotonic()
                    await self._store.forget_sessions(self._clock.now_ms() - FORGET_AFTER_MS)
            except PicaError:
                log.warning("session revocation sweep failed", exc_info=True)

    async def once(self) -> int:
        """Close this node's connections of the sessions ended lately; how many were closed."""
        ended = await self._store.revoked_sessions(self._clock.now_ms() - max(LOOK_BACK_MS, int(4000 * self._interval)))
        closed = 0
        for session in ended:
            for conn in self._hub.of_user(session.user_id):
                if conn.login_session == session.session_id and not conn.closed:
                    conn.fail(SessionEnded(_WHY.get(session.reason, _ENDED)), CloseCode.SESSION_ENDED)
                    closed += 1
                    audit("session_disconnected", user_id=session.user_id, session_id=session.session_id)
        return closed
