"""Group fan-out: who receives a group frame, from a per-node cache of each group's members.

Frames are handed out in commit order. Membership changes committed on this node update the cache in that same
order (the caller applies a GroupChange before anything committed after it is delivered), so a removed member stops
receiving at once and a new member receives nothing older than their join. A message carries the membership version
it was committed under; a cache entry older than that (changed elsewhere, evicted, or never loaded) is reloaded while
later frames for the same group queue behind it, keeping their order.

Ephemeral frames (typing notices: no seq) carry the membership version the typist's node checked them against,
and go to the cached members when the cache is at least that new. When the group is not cached, or its entry is
older (in a cluster: a change committed elsewhere that this node has not applied yet, so a just-removed member could
still be in it), the members are loaded first, as for a timeline frame, rather than dropping the notice. While a load
is in progress they wait behind it (order does not matter for them, but the load brings the newest members).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from pica.core.ports import Delivery
from pica.core.wire import message_frame
from pica.protocol.outbound import OutboundFrame
from pica.store.base import GroupChange, Store

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Members:
    version: int
    joined: dict[int, int]
    """member id -> joined_seq (the member sees seq > joined_seq)."""
    newest_join: int = 0

    def recompute(self) -> None:
        self.newest_join = max(self.joined.values(), default=0)

    def audience(self, seq: int) -> Iterable[int]:
        if seq > self.newest_join:
            return self.joined.keys()
        return [user_id for user_id, joined in self.joined.items() if joined < seq]


@dataclass(slots=True)
class _Queued:
    version: int
    seq: int
    frame: OutboundFrame
    exclude: object | None
    also: tuple[int, ...] = ()
    skip: int | None = None
    """Set for an ephemeral frame: every member but this user (``seq`` and ``version`` unused)."""


@dataclass(slots=True)
class GroupFanout:
    store: Store
    delivery: Delivery
    max_groups: int = 10_000
    """Groups whose members are cached; beyond it the oldest entry is dropped (and reloaded on use)."""
    _cache: dict[str, _Members] = field(default_factory=dict)
    _waiting: dict[str, list[_Queued]] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def deliver(self, conversation_id: str, version: int, seq: int, frame: OutboundFrame,
                exclude: object | None = None, also: tuple[int, ...] = ()) -> None:
        """Deliver a frame of a group's timeline (seq) committed under membership ``version``; ``also`` are users
        to reach besides the members (the removed, for the notice of their removal)."""
        queued = self._waiting.get(conversation_id)
        if queued is not None:
            queued.append(_Queued(version, seq, frame, exclude, also))
            return
        members = self._cache.get(conversation_id)
        if members is not None and members.version >= version:
            self._send(members, seq, frame, exclude, also)
            return
        self._start_load(conversation_id, _Queued(version, seq, frame, exclude, also))

    def deliver_ephemeral(self, conversation_id: str, frame: OutboundFrame, skip_user: int, version: int) -> None:
        """Deliver a frame that is not part of the timeline to every member but ``skip_user``, from a cache entry of
        at least membership ``version`` (loading the members first otherwise; see the module docstring)."""
        item = _Queued(version, 0, frame, None, skip=skip_user)
        queued = self._waiting.get(conversation_id)
        if queued is not None:
            queued.append(item)
            return
        members = self._cache.get(conversation_id)
        if members is None or members.version < version:
            self._start_load(conversation_id, item)
            return
        self._send_ephemeral(members, frame, skip_user)

    def _start_load(self, conversation_id: str, first: _Queued) -> None:
        self._waiting[conversation_id] = [first]
        task = asyncio.get_running_loop().create_task(self._load(conversation_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def membership(self, conversation_id: str) -> tuple[int, Collection[int]] | None:
        """Cached (version, member ids): the typing membership check uses them; None when not cached."""
        members = self._cache.get(conversation_id)
        return None if members is None else (members.version, members.joined.keys())

    def forget(self, conversation_id: str) -> None:
        """Drop a group's cached members (the cluster's node no longer holds any of them). A load in progress
        completes and caches it again; the next use reloads it."""
        self._cache.pop(conversation_id, None)

    def apply(self, change: GroupChange, exclude: object | None = None) -> None:
        """A membership change committed: deliver its notice to everyone concerned, then update the cache."""
        record = change.notice
        if record is None:  # an add that only invited: nothing changed in the timeline
            return
        conversation_id = change.group.conversation_id
        notice = OutboundFrame(message_frame(record))
        members = self._cache.get(conversation_id)
        if members is None or conversation_id in self._waiting:
            self.deliver(conversation_id, change.group.members_version, record.seq, notice, exclude,
                         also=change.removed)
            return
        for user_id in change.added:
            members.joined[user_id] = record.seq - 1
        for user_id in change.removed:  # reached through ``also`` below: once, not twice
            members.joined.pop(user_id, None)
        members.recompute()
        self._send(members, record.seq, notice, exclude, change.removed)
        members.version = change.group.members_version

    def _send(self, members: _Members, seq: int, frame: OutboundFrame, exclude: object | None,
              also: tuple[int, ...]) -> None:
        self.delivery.deliver(members.audience(seq), frame, exclude)
        if also:
            self.delivery.deliver(also, frame, exclude)

    def _send_ephemeral(self, members: _Members, frame: OutboundFrame, skip_user: int) -> None:
        self.delivery.deliver([user_id for user_id in members.joined if user_id != skip_user], frame)

    async def _load(self, conversation_id: str) -> None:
        try:
            version, joined = await self.store.group_fanout(conversation_id)
        except Exception:
            # Doorbell semantics: the frames are committed; members catch up by sync.
            log.exception("could not load group members", extra={"conversation_id": conversation_id})
            self._waiting.pop(conversation_id, None)
            return
        members = _Members(version, joined)
        members.recompute()
        if len(self._cache) >= self.max_groups:
            self._cache.pop(next(iter(self._cache)))
        self._cache[conversation_id] = members
        for item in self._waiting.pop(conversation_id, []):
            if item.skip is not None:
                self._send_ephemeral(members, item.frame, item.skip)
            else:
                self._send(members, item.seq, item.frame, item.exclude, item.also)

