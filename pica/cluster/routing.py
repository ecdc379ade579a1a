"""Delivery and group routing across nodes: the local path first, then one envelope on the bus.

Both publish after handing the frame to this node's own devices, without awaiting anything: the caller is the
commit callback of the send path and must neither block nor fail. A receiving node drops envelopes of its own
origin (its devices were served locally) and hands the others to its local sessions (users: the
:class:`~pica.core.ports.LocalSessions` port, which the gateway's hub implements) or its local group fan-out
(groups). The group router also keeps the node's group subscriptions (:mod:`pica.cluster.groups`) in step with
membership changes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Iterable
from typing import Protocol

from pica.cluster.envelope import (
    BadEnvelope,
    EphemeralEnvelope,
    JoinEnvelope,
    decode_group,
    decode_user,
    encode_ephemeral,
    encode_group,
    encode_join,
    encode_user,
)
from pica.cluster.groups import GroupIndex
from pica.cluster.keys import Keys
from pica.cluster.outbox import Outbox
from pica.core.fanout import GroupFanout
from pica.core.ports import LocalSessions
from pica.core.wire import message_frame
from pica.protocol import frames as f
from pica.protocol.codec import Encoding
from pica.protocol.outbound import OutboundFrame
from pica.store.base import GroupChange

log = logging.getLogger(__name__)


class Subscriptions(Protocol):
    """What the group router asks of the node's subscriber (on Redis or on the workers' hub)."""

    def want(self, channel: bytes) -> None: ...

    def unwant(self, channel: bytes) -> None: ...

    async def confirm(self) -> bool:
        """Whether every change made so far is served by the bus (False: it is not connected)."""
        ...


class ClusterDelivery:
    """:class:`pica.core.ports.Delivery` over the bus: per-user channels (``{prefix}u:{{bucket}}{user_id}``, see
    :mod:`pica.cluster.keys`), to which a node subscribes while the user has a device there."""

    def __init__(self, sessions: LocalSessions, outbox: Outbox, node_id: str, keys: Keys) -> None:
        self._sessions = sessions
        self._outbox = outbox
        self._node_id = node_id
        self.channel = keys.user_channel
        self._last: tuple[bytes, OutboundFrame] | None = None
        self.on_join: Callable[[int, JoinEnvelope], None] | None = None
        """Where joins received on a user channel go (the cluster's group router)."""
        self.dropped = 0

    def deliver(self, user_ids: Iterable[int], frame: OutboundFrame, exclude: object | None = None) -> None:
        ids = user_ids if isinstance(user_ids, Collection) else list(user_ids)
        self._sessions.deliver(ids, frame, exclude)
        if not ids:
            return
        try:
            data = encode_user(self._node_id, frame.payload(Encoding.MSGPACK))
        except Exception:
            log.exception("cluster bus: could not encode a frame for the bus")
            return
        publish, channel = self._outbox.publish, self.channel
        for user_id in ids:
            publish(channel(user_id), data)

    def is_online(self, user_id: int) -> bool:
        return self._sessions.is_online(user_id)

    def receive(self, user_id: int, data: bytes) -> None:
        # A frame sent to several users of this node arrives once per user, back to back and byte for byte the
        # same: decode it once and share one OutboundFrame, so each wire form is also encoded once.
        last = self._last
        if last is not None and last[0] == data:
            self._sessions.deliver((user_id,), last[1])
            return
        try:
            envelope = decode_user(data)
        except BadEnvelope as exc:
            self.dropped += 1
            if _worth_logging(self.dropped):
                log.warning("cluster bus: undecodable user envelope dropped (%d so far): %s", self.dropped, exc)
            return
        if isinstance(envelope, JoinEnvelope):
            if self.on_join is not None:
                self.on_join(user_id, envelope)
            return
        if envelope.origin == self._node_id:
            return
        frame = OutboundFrame(envelope.frame)
        self._last = (data, frame)
        self._sessions.deliver((user_id,), frame)


class ClusterFanout:
    """:class:`pica.core.ports.GroupRouter` over the bus: the local :class:`GroupFanout` serves this node's
    members; one envelope on ``{prefix}g:{conversation_id}`` reaches the nodes holding a connected member of the
    group, whose own fan-out serves theirs (O(nodes holding a member) per group frame, not O(members)). The
    envelope carries the membership version: a node whose member cache is older reloads it from the store before
    delivering (the fan-out's own rule), so changes committed elsewhere apply.

    Ephemeral frames (typing) take the same channel without seq, with the membership version the typist's node
    checked: each receiving node serves them from its member cache once it is at least that new (loading it first
    otherwise).

    The node's :class:`GroupIndex` decides which group channels it subscribes to; see the package docstring for
    how it is kept up to date (store reads on connect, join envelopes on user channels, removals in notices)."""

    def __init__(self, local: GroupFanout, outbox: Outbox, node_id: str, keys: Keys, subscriber: Subscriptions,
                 sessions: LocalSessions, timeout: float) -> None:
        self.local = local
        self.index = GroupIndex()
        self.is_local: Callable[[int], bool] = sessions.is_online
        """Whether a user has a device here or about to be (the cluster adds users inside ``before_ready``)."""
        self._outbox = outbox
        self._node_id = node_id
        self.channel = keys.group_channel
        self._user_channel = keys.user_channel
        self._subscriber = subscriber
        self._sessions = sessions
        self._timeout = timeout
        self._seen: dict[str, int] = {}
        """Highest seq received on each subscribed group channel: proof that the channel was live by then."""
        self._joining: dict[str, set[int]] = {}
        """Users who joined a group whose channel this node is (re)subscribing to, to resync once confirmed."""
        self._tasks: set[asyncio.Task[None]] = set()
        self.dropped = 0
        self.join_resyncs = 0
        """Users told to resync because they joined a group whose channel was not yet live here."""

    # ------------------------------------------------------------------------------------------ GroupRouter

    def deliver(self, conversation_id: str, version: int, seq: int, frame: OutboundFrame,
                exclude: object | None = None, also: tuple[int, ...] = ()) -> None:
        self.local.deliver(conversation_id, version, seq, frame, exclude, also)
        self._publish(conversation_id, version, seq, also, frame)

    def apply(self, change: GroupChange, exclude: object | None = None) -> None:
        record = change.notice
        if record is None:  # an add that only invited: nothing changed in the timeline
            return
        conversation_id, seq = change.group.conversation_id, record.seq
        self.local.apply(change, exclude)
        # The index first, synchronously: a frame committed after this change and delivered by this node finds the
        # channel already wanted. The local fan-out above served the local added users their notice.
        held = self.index.holds(conversation_id)
        joined = [u for u in change.added if self.is_local(u) and not self.index.is_member(u, conversation_id)]
        for user_id in joined:
            self._join(user_id, conversation_id)
        if joined and (not held or conversation_id in self._joining):
            self._resync_when_subscribed(conversation_id, joined)
        for user_id in change.removed:
            self._leave(user_id, conversation_id)
        # Nodes holding a member get the notice as an ordinary group frame under the new version: their caches are
        # older, so they reload the members (the added included) and reach the removed through ``also``.
        notice = OutboundFrame(message_frame(record))
        self._publish(conversation_id, change.group.members_version, seq, change.removed, notice)
        if not change.added:
            return
        # Nodes holding an added user but no member are not subscribed: a join on each added user's channel, after
        # the group envelope. On one Redis a node subscribed to both sees the group envelope first (one
        # connection); on a Redis Cluster the two channels may live on different shards, and a join arriving first
        # hands the added user the notice a second time, which the client drops as a seq it has.
        try:
            data = encode_join(self._node_id, conversation_id, seq, notice.payload(Encoding.MSGPACK))
        except Exception:
            log.exception("cluster bus: could not encode a join for the bus")
            return
        publish, channel = self._outbox.publish, self._user_channel
        for user_id in change.added:
            publish(channel(user_id), data)

    def membership(self, conversation_id: str) -> tuple[int, Collection[int]] | None:
        return self.local.membership(conversation_id)

    def deliver_ephemeral(self, conversation_id: str, frame: OutboundFrame, skip_user: int, version: int) -> None:
        """This node's members, then one envelope on the group channel for the nodes holding the others (one
        publish per group, not per member); each of them serves its local members but ``skip_user``, from a member
        list of at least ``version`` (reloading a staler one: a just-removed member must not get the notice)."""
        self.local.deliver_ephemeral(conversation_id, frame, skip_user, version)
        try:
            data = encode_ephemeral(self._node_id, conversation_id, skip_user, version,
                                    frame.payload(Encoding.MSGPACK))
        except Exception:
            log.exception("cluster bus: could not encode an ephemeral group frame for the bus")
            return
        self._outbox.publish(self.channel(conversation_id), data)

    def _publish(self, conversation_id: str, version: int, seq: int, also: tuple[int, ...],
                 frame: OutboundFrame) -> None:
        try:
            data = encode_group(self._node_id, conversation_id, version, seq, tuple(also),
                                frame.payload(Encoding.MSGPACK))
        except Exception:
            log.exception("cluster bus: could not encode a group frame for the bus")
            return
        self._outbox.publish(self.channel(conversation_id), data)

    # ------------------------------------------------------------------------------------------ local users

    def load(self, user_id: int, conversation_ids: Iterable[str]) -> None:
        """A local user's groups, read from the store when their first device connected."""
        for conversation_id in self.index.load(user_id, conversation_ids):
            self._subscriber.want(self.channel(conversation_id))

    def drop(self, user_id: int) -> None:
        """The user's last local device left."""
        for conversation_id in self.index.drop(user_id):
            self._release(conversation_id)

    def _join(self, user_id: int, conversation_id: str) -> None:
        if self.index.join(user_id, conversation_id):
            self._subscriber.want(self.channel(conversation_id))

    def _leave(self, user_id: int, conversation_id: str) -> None:
        if self.index.leave(user_id, conversation_id):
            self._release(conversation_id)

    def _release(self, conversation_id: str) -> None:
        self._subscriber.unwant(self.channel(conversation_id))
        # No local member left: its member cache would only go stale (a later use reloads it).
        self.local.forget(conversation_id)
        self._seen.pop(conversation_id, None)

    def _resync_when_subscribed(self, conversation_id: str, user_ids: Iterable[int]) -> None:
        waiting = self._joining.get(conversation_id)
        if waiting is not None:
            waiting.update(user_ids)
            return
        self._joining[conversation_id] = set(user_ids)
        task = asyncio.get_running_loop().create_task(self._resync_joined(conversation_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resync_joined(self, conversation_id: str) -> None:
        """Frames of the group published between the join and Redis's confirmation of the new subscription never
        reached this node: once it is confirmed, the joined users sync (they lose nothing, it is only not pushed)."""
        confirmed = True
        try:
            async with asyncio.timeout(self._timeout):
                confirmed = await self._subscriber.confirm()
        except Exception as exc:  # a timeout, typically: resync now rather than never
            log.warning("cluster bus: group subscription not confirmed (%s)", type(exc).__name__,
                        extra={"conversation_id": conversation_id})
        finally:
            user_ids = self._joining.pop(conversation_id, set())
        if not confirmed:
            return  # the subscriber is down: its resubscription resyncs every local client
        targets = [u for u in user_ids if self.index.is_member(u, conversation_id)]
        self.join_resyncs += len(targets)
        self._sessions.deliver(targets, OutboundFrame(f.Resync(reason="joined a group")))

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()

    # ------------------------------------------------------------------------------------------ bus events

    def receive(self, data: bytes) -> None:
        """An envelope on a group channel."""
        try:
            envelope = decode_group(data)
        except BadEnvelope as exc:
            self.dropped += 1
            if _worth_logging(self.dropped):
                log.warning("cluster bus: undecodable group envelope dropped (%d so far): %s", self.dropped, exc)
            return
        conversation_id = envelope.conversation_id
        if not self.index.holds(conversation_id):
            return  # released while this was in flight: no local member, nothing to load a cache for
        if isinstance(envelope, EphemeralEnvelope):
            # No seq: it says nothing of which timeline frames reached this node, so ``_seen`` is left alone.
            if envelope.origin != self._node_id:
                self.local.deliver_ephemeral(conversation_id, OutboundFrame(envelope.frame), *envelope.audience)
            return
        if envelope.seq > self._seen.get(conversation_id, 0):
            self._seen[conversation_id] = envelope.seq
        if envelope.origin == self._node_id:
            return
        self.local.deliver(conversation_id, envelope.version, envelope.seq, OutboundFrame(envelope.frame),
                           None, envelope.also)
        # ``also`` holds the removed (the only users a notice reaches besides the members): delivered above, they
        # leave the index now.
        for user_id in envelope.also:
            self._leave(user_id, conversation_id)

    def receive_join(self, user_id: int, envelope: JoinEnvelope) -> None:
        """A join on the channel of ``user_id``, who has a device here (or is about to)."""
        conversation_id = envelope.conversation_id
        if envelope.origin == self._node_id or not self.is_local(user_id):
            return
        if self.index.is_member(user_id, conversation_id):
            return  # the group list was read after the change committed: the client's first sync has the notice
        self._join(user_id, conversation_id)
        if self._seen.get(conversation_id, 0) >= envelope.seq:
            return  # the group channel was live and brought the notice to every local member, this user included
        self._sessions.deliver((user_id,), OutboundFrame(envelope.frame))
        self._resync_when_subscribed(conversation_id, (user_id,))


def _worth_logging(count: int) -> bool:
    """The 1st, 10th, 100th, ... occurrence: a node of another version flooding the bus must not flood the log."""
    return count == 1 or (count % 10 == 0 and str(count).rstrip("0") == "1")
