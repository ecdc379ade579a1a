"""Cluster-wide presence: who has a device on some live node, and the transitions of that state.

This node's sessions (the gateway's hub, behind :class:`~pica.core.ports.LocalSessions`) report its transitions
(a user's first local device, their last); they are recorded in Redis by one writer task, in batches, through the
APPLY script, which also says whether the user is held by another node.
A transition becomes cluster-wide when the script says the user is alone: "online" when no other live node held
them, "offline" when no registered node holds them any more. The scripts serialise the nodes, so of two nodes
racing for the same user exactly one sees "alone".

Local state is coalesced per user (``_dirty``: the last state not yet written): a device that connects and drops
within one batch writes nothing. ``_registered`` is what this node believes Redis holds for it; transitions are
judged against it, which keeps them right when a reply is lost (the write is repeated, and "alone" is reported
again only if nothing was announced yet) and after Redis restarted empty (users already announced are re-added
without a second "online"; users who left meanwhile still get their "offline").

Writes that fail stay dirty and are retried with backoff; transitions therefore wait for Redis (announcements are
late during an outage, not wrong). ``online`` answers from Redis in one round trip, and falls back to this node's
own devices when Redis cannot answer in time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

from pica.cluster import scripts
from pica.cluster.driver import Commands
from pica.cluster.keys import Keys
from pica.cluster.link import REDIS_ERRORS, Backoff, Outage, WorkSignal
from pica.core.ports import LocalSessions, PresenceListener

log = logging.getLogger(__name__)

_BATCH = 500
"""Users per APPLY call: bounds the time one script holds Redis (each user is a few set operations)."""

Verdicts = Callable[[list[tuple[int, bool]]], Awaitable[dict[int, bool]]]
"""Records this node's changes (user, came) where the bus keeps presence and answers, per user, whether the user is
*alone*: for one who came, no other live node holds them; for one who went, no node holds them any more."""
HeldElsewhere = Callable[[list[int]], Awaitable[set[int]]]
"""Which of these users a live node other than this one holds."""


def redis_presence(redis: Commands, keys: Keys, node_id: str) -> tuple[Verdicts, HeldElsewhere]:
    """The two questions answered by the APPLY and ONLINE scripts (:mod:`pica.cluster.scripts`)."""
    apply, online = redis.register_script(scripts.APPLY), redis.register_script(scripts.ONLINE)
    route = [keys.nodes]  # KEYS of every call: the slot of the registry, which holds every key the scripts touch
    prefix = keys.registry

    async def verdicts(batch: list[tuple[int, bool]]) -> dict[int, bool]:
        args: list[str | int] = [prefix, node_id]
        for user_id, came in batch:
            args += (user_id, 1 if came else 0)
        reply = await apply(keys=route, args=args)
        return {int(reply[i]): reply[i + 1] == 1 for i in range(0, len(reply), 2)}

    async def held_elsewhere(user_ids: list[int]) -> set[int]:
        reply = await online(keys=route, args=[prefix, node_id, *user_ids])
        return {int(user_id) for user_id in reply}

    return verdicts, held_elsewhere


class ClusterPresence:
    """:class:`pica.core.ports.Presence` for the cluster, on Redis or on the workers' hub (``verdicts`` and
    ``held_elsewhere`` ask the one or the other; everything judged from their answers is here)."""

    def __init__(self, verdicts: Verdicts, held_elsewhere: HeldElsewhere, sessions: LocalSessions, timeout: float,
                 backoff: Backoff, outage: Outage) -> None:
        self._verdicts = verdicts
        self._held_elsewhere = held_elsewhere
        self._sessions = sessions
        self._timeout = timeout
        self._backoff = backoff
        self._outage = outage
        self._local: set[int] = set()
        self._dirty: dict[int, bool] = {}
        self._registered: set[int] = set()
        self._signal = WorkSignal()
        self.closed = False
        self.listener: PresenceListener | None = None
        self.fallbacks = 0
        """``online`` calls answered from local knowledge because Redis could not answer."""

    # ------------------------------------------------------------------------------------------ local changes

    def local_change(self, user_id: int, online: bool) -> None:
        """The local sessions' transition for this node (first local device / last local device)."""
        if online:
            self._local.add(user_id)
        else:
            self._local.discard(user_id)
        self._dirty[user_id] = online
        self._signal.kick()

    def reregister(self, reaped: bool) -> None:
        """Redis lost this node's entries (it restarted, or this node was declared dead and reaped): write every
        local user again. After a reap the "offline" of those users was announced, so they count as unannounced
        and their "online" is announced again."""
        if reaped:
            self._registered.clear()
        for user_id in self._local:
            self._dirty[user_id] = True
        self._signal.kick()

    # ------------------------------------------------------------------------------------------ writer task

    def close(self) -> None:
        self.closed = True
        self._signal.stop()

    async def run(self) -> None:
        while not self.closed:
            if not self._dirty:
                await self._signal.sleep()
                continue
            batch = [self._dirty.popitem() for _ in range(min(len(self._dirty), _BATCH))]
            batch.reverse()  # popitem takes the newest first; write in the order the changes happened
            try:
                alone = await self._verdicts(batch)
            except asyncio.CancelledError:
                self._restore(batch)
                raise
            except REDIS_ERRORS as exc:
                self._restore(batch)
                self._outage.failed(exc)
                await asyncio.sleep(self._backoff.next())
                continue
            if self._outage.down:
                self._outage.recovered()
                self._backoff.reset()
            for user_id, online in batch:
                self._applied(user_id, online, alone.get(user_id, False))

    def _restore(self, batch: list[tuple[int, bool]]) -> None:
        for user_id, online in batch:
            self._dirty.setdefault(user_id, online)  # a newer change made meanwhile wins

    def _applied(self, user_id: int, online: bool, alone: bool) -> None:
        if online:
            announce = alone and user_id not in self._registered
            self._registered.add(user_id)
        else:
            announce = alone and user_id in self._registered
            self._registered.discard(user_id)
        if announce:
            self.fire(user_id, online)

    def fire(self, user_id: int, online: bool) -> None:
        listener = self.listener
        if listener is None:
            return
        try:
            listener(user_id, online)
        except Exception:
            log.exception("presence listener failed", extra={"user_id": user_id})

    async def drain(self, timeout: float) -> bool:
        """Wait until every local change is written (at shutdown); False at once while Redis is failing."""
        if self._outage.down:
            return False
        return await self._signal.idle(timeout)

    # ------------------------------------------------------------------------------------------ queries

    async def online(self, user_ids: Iterable[int]) -> set[int]:
        ids = list(dict.fromkeys(user_ids))
        local = {user_id for user_id in ids if self._sessions.is_online(user_id)}
        remote = [user_id for user_id in ids if user_id not in local]
        if not remote:
            return local
        try:
            async with asyncio.timeout(self._timeout):
                elsewhere = await self._held_elsewhere(remote)
        except asyncio.CancelledError:
            raise
        except (*REDIS_ERRORS, ValueError) as exc:
            self.fallbacks += 1
            log.debug("presence lookup fell back to this node's devices: %s", exc)
            return local
        return local | elsewhere
