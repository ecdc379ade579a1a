"""Contacts, blocks, the "only contacts may message me" setting, and presence.

Presence is pushed to a user's audience (accepted contacts and 1:1 peers, minus users they blocked, narrowed by their
``presence`` setting: pica/core/privacy.py) when their first device connects or their last one leaves; ``last_seen``
is stored when they go offline.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Final

from pica.core.ports import Clock, Delivery, Presence
from pica.core.privacy import viewers, visible_records
from pica.core.ratelimit import RateLimits
from pica.core.turn_reads import TurnBatch
from pica.protocol import frames as f
from pica.protocol.outbound import OutboundFrame
from pica.store.base import ContactRecord, Store, UserSettings

log = logging.getLogger(__name__)

MAX_ANNOUNCEMENTS_PER_BATCH: Final = 64
"""Most users whose presence changes are announced together (one read of their audiences): the announcements of a
burst of connects (each user's first device) share batches this large."""

_THEIR_STATE = {"outgoing": "incoming", "incoming": "outgoing", "accepted": "accepted", "none": "none"}


@dataclass(frozen=True, slots=True)
class PresenceInfo:
    user_id: int
    online: bool
    last_seen: int


class SocialService:
    def __init__(self, store: Store, delivery: Delivery, clock: Clock, presence: Presence,
                 rates: RateLimits | None = None, audience_delay: float = 0.0) -> None:
        self._rates = rates
        self._store = store
        self._delivery = delivery
        self._presence = presence
        self._clock = clock
        self._tasks: set[asyncio.Task[None]] = set()
        # Changes made in one loop turn, or within audience_delay seconds, are announced together: one task, one
        # read of their audiences, one look at who is online (a round trip to Redis in a cluster), where each user
        # cost all three (a connect storm of distinct users paid a thread hop per user or two on SQLite, more than
        # the rest of the connect; nobody notices a presence change 20 ms late).
        self._changes: TurnBatch[int, int] = TurnBatch(self._start_announcing, MAX_ANNOUNCEMENTS_PER_BATCH,
                                                        audience_delay)

    # ------------------------------------------------------------------------------------------ contacts

    def _tell(self, user_id: int, peer_id: int, state: str) -> None:
        self._delivery.deliver((user_id,), OutboundFrame(f.Contact(user_id=peer_id, state=state)))
        self._delivery.deliver((peer_id,), OutboundFrame(f.Contact(user_id=user_id, state=_THEIR_STATE[state])))

    async def request(self, user_id: int, peer_id: int) -> str:
        state = await self._store.contact_request(user_id, peer_id, self._clock.now_ms())
        self._tell(user_id, peer_id, state)
        return state

    async def respond(self, user_id: int, peer_id: int, accept: bool) -> str:
        state = await self._store.contact_respond(user_id, peer_id, accept, self._clock.now_ms())
        self._tell(user_id, peer_id, state)
        return state

    async def remove(self, user_id: int, peer_id: int) -> None:
        await self._store.contact_remove(user_id, peer_id)
        self._tell(user_id, peer_id, "none")

    async def contacts(self, user_id: int) -> list[ContactRecord]:
        return await self._store.list_contacts(user_id)

    async def set_blocked(self, user_id: int, peer_id: int, blocked: bool) -> None:
        """Blocking ends any contact or pending request between the two; both sides' devices are told, as for a
        removal (only when there was one, so that a block of a stranger stays invisible to them)."""
        related = blocked and any(c.user_id == peer_id for c in await self._store.list_contacts(user_id))
        await self._store.set_blocked(user_id, peer_id, blocked, self._clock.now_ms())
        if related:
            self._tell(user_id, peer_id, "none")

    async def blocked(self, user_id: int) -> list[int]:
        return await self._store.list_blocked(user_id)

    async def set_only_contacts(self, user_id: int, only_contacts: bool) -> None:
        await self._store.set_only_contacts(user_id, only_contacts)

    async def only_contacts(self, user_id: int) -> bool:
        return await self._store.get_only_contacts(user_id)

    async def settings(self, user_id: int) -> UserSettings:
        return await self._store.get_settings(user_id)

    async def set_privacy(self, user_id: int, *, group_add: str | None = None, presence: str | None = None) -> None:
        """Change who may add the user to groups and who sees their presence. Those who can no longer see it are
        told "offline" with no last seen (as if it had never been shown), those who now can are told the current
        state, so that nobody is left showing a state they may no longer know."""
        before = viewers(await self._store.presence_audience(user_id)) if presence is not None else []
        await self._store.set_privacy(user_id, group_add=group_add, presence=presence)
        if presence is None:
            return
        after = viewers(await self._store.presence_audience(user_id))
        lost = sorted(set(before) - set(after))
        if lost:
            self._delivery.deliver(lost, OutboundFrame(f.Presence(user_id=user_id, online=False, last_seen=0)))
        gained = sorted(set(after) - set(before))
        if gained:
            (record,) = await self._store.presence_of(user_id, [user_id])
            online = user_id in await self._presence.online((user_id,))
            frame = f.Presence(user_id=user_id, online=online, last_seen=0 if online else record.last_seen)
            self._delivery.deliver(gained, OutboundFrame(frame))

    # ------------------------------------------------------------------------------------------ presence

    def on_presence_change(self, user_id: int, online: bool) -> None:
        """Hub listener (synchronous): announce the change with the others of this batch (see ``_changes``)."""
        batch = self._changes.gathering()
        if online:
            batch.setdefault(user_id, 0)
        else:
            batch[user_id] = self._clock.now_ms()  # a flap within the batch still stores when they left
        self._changes.added(batch)

    def _start_announcing(self, changes: dict[int, int]) -> None:
        task = asyncio.get_running_loop().create_task(self._announce(changes))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _announce(self, changes: dict[int, int]) -> None:
        """One batch of changes: user -> when they went offline (ms), 0 when they came online. The users who went
        offline have their last seen stored first; each user's audience is told the state as it is now (re-read
        after the store: a flap announces the state it ended in, once)."""
        left = {user_id: ts for user_id, ts in changes.items() if ts}
        if left:
            try:
                await self._store.set_last_seen(left)
            except Exception:
                log.exception("presence announcement failed", extra={"user_ids": list(left)})
                changes = {user_id: ts for user_id, ts in changes.items() if not ts}
                if not changes:
                    return
        users = list(changes)
        try:
            audiences = await self._store.presence_audiences(users)
        except Exception:
            log.exception("presence announcement failed", extra={"user_ids": users})
            return
        online = await self._presence.online(users)
        now = self._clock.now_ms()
        deliver = self._delivery.deliver
        for user_id in users:
            audience = audiences.get(user_id)
            if audience is None:
                continue
            is_online = user_id in online
            frame = f.Presence(user_id=user_id, online=is_online, last_seen=0 if is_online else changes[user_id] or now)
            deliver(viewers(audience), OutboundFrame(frame))

    async def presence(self, viewer: int, user_ids: list[int]) -> list[PresenceInfo]:
        """Presence of those users the viewer may see; the others are left out (no error, nothing leaked)."""
        if self._rates is not None:
            self._rates.check(self._rates.presence, viewer, "presence queries")
        records = visible_records(viewer, await self._store.presence_of(viewer, user_ids))
        online = await self._presence.online(r.user_id for r in records)
        return [PresenceInfo(r.user_id, r.user_id in online, r.last_seen) for r in records]

    async def drain(self) -> None:
        """Announce what is waiting for company, and wait for the announcements (at shutdown: the last users'
        offline announcements and last seen, before the store closes)."""
        self._changes.start_now()
        await asyncio.sleep(0)  # a batch that filled up in this turn starts at its end
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
