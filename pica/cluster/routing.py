"""Delivery and group routing across nodes: the local path first, then one envelope on the bus.

Both publish after handing the frame to this node's own devices, without awaiting anything: the caller is the
commit callback of the send path and must neither block nor fail. A receiving node drops envelopes of its own
origin (its devices were served locally) and hands the others to its hub (users) or its local group fan-out
(groups).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable

from pica.cluster.envelope import BadEnvelope, decode_group, decode_user, encode_group, encode_user
from pica.cluster.outbox import Outbox
from pica.core.fanout import GroupFanout
from pica.core.wire import message_frame
from pica.gateway.hub import Hub
from pica.protocol.codec import Encoding
from pica.protocol.outbound import OutboundFrame
from pica.store.base import GroupChange

log = logging.getLogger(__name__)


class ClusterDelivery:
    """:class:`pica.core.ports.Delivery` over the bus: per-user channels ``{prefix}u:{user_id}``, to which a node
    subscribes while the user has a device there."""

    def __init__(self, hub: Hub, outbox: Outbox, node_id: str, user_prefix: bytes) -> None:
        self._hub = hub
        self._outbox = outbox
        self._node_id = node_id
        self._user_prefix = user_prefix
        self._last: tuple[bytes, OutboundFrame] | None = None
        self.dropped = 0

    def channel(self, user_id: int) -> bytes:
        return self._user_prefix + str(user_id).encode()

    def deliver(self, user_ids: Iterable[int], frame: OutboundFrame, exclude: object | None = None) -> None:
        ids = user_ids if isinstance(user_ids, Collection) else list(user_ids)
        self._hub.deliver(ids, frame, exclude)
        if not ids:
            return
        try:
            data = encode_user(self._node_id, frame.payload(Encoding.MSGPACK))
        except Exception:
            log.exception("cluster bus: could not encode a frame for the bus")
            return
        publish, prefix = self._outbox.publish, self._user_prefix
        for user_id in ids:
            publish(prefix + str(user_id).encode(), data)

    def is_online(self, user_id: int) -> bool:
        return self._hub.is_online(user_id)

    def receive(self, user_id: int, data: bytes) -> None:
        # A frame sent to several users of this node arrives once per user, back to back and byte for byte the
        # same: decode it once and share one OutboundFrame, so each wire form is also encoded once.
        last = self._last
        if last is not None and last[0] == data:
            self._hub.deliver((user_id,), last[1])
            return
        try:
            envelope = decode_user(data)
        except BadEnvelope as exc:
            self.dropped += 1
            if _worth_logging(self.dropped):
                log.warning("cluster bus: undecodable user envelope dropped (%d so far): %s", self.dropped, exc)
            return
        if envelope.origin == self._node_id:
            return
        frame = OutboundFrame(envelope.frame)
        self._last = (data, frame)
        self._hub.deliver((user_id,), frame)


class ClusterFanout:
    """:class:`pica.core.ports.GroupRouter` over the bus: the local :class:`GroupFanout` serves this node's
    members; one envelope on ``{prefix}groups`` lets every other node's fan-out serve theirs (O(nodes) per group
    frame, not O(members)). The envelope carries the membership version: a node whose member cache is older
    reloads it from the store before delivering (the fan-out's own rule), so changes committed elsewhere apply."""

    def __init__(self, local: GroupFanout, outbox: Outbox, node_id: str, channel: bytes) -> None:
        self.local = local
        self._outbox = outbox
        self._node_id = node_id
        self._channel = channel
        self.dropped = 0

    def deliver(self, conversation_id: str, version: int, seq: int, frame: OutboundFrame,
                exclude: object | None = None, also: tuple[int, ...] = ()) -> None:
        self.local.deliver(conversation_id, version, seq, frame, exclude, also)
        self._publish(conversation_id, version, seq, also, frame)

    def apply(self, change: GroupChange, exclude: object | None = None) -> None:
        self.local.apply(change, exclude)
        # Other nodes get the notice as an ordinary group frame under the new version: their caches are older,
        # so they reload the members (the added included) and reach the removed through ``also``.
        notice = OutboundFrame(message_frame(change.notice))
        self._publish(change.group.conversation_id, change.group.members_version, change.notice.seq,
                      change.removed, notice)

    def members(self, conversation_id: str) -> Iterable[int] | None:
        return self.local.members(conversation_id)

    def _publish(self, conversation_id: str, version: int, seq: int, also: tuple[int, ...],
                 frame: OutboundFrame) -> None:
        try:
            data = encode_group(self._node_id, conversation_id, version, seq, tuple(also),
                                frame.payload(Encoding.MSGPACK))
        except Exception:
            log.exception("cluster bus: could not encode a group frame for the bus")
            return
        self._outbox.publish(self._channel, data)

    def receive(self, data: bytes) -> None:
        try:
            envelope = decode_group(data)
        except BadEnvelope as exc:
            self.dropped += 1
            if _worth_logging(self.dropped):
                log.warning("cluster bus: undecodable group envelope dropped (%d so far): %s", self.dropped, exc)
            return
        if envelope.origin == self._node_id:
            return
        self.local.deliver(envelope.conversation_id, envelope.version, envelope.seq, OutboundFrame(envelope.frame),
                           None, envelope.also)


def _worth_logging(count: int) -> bool:
    """The 1st, 10th, 100th, ... occurrence: a node of another version flooding the bus must not flood the log."""
    return count == 1 or (count % 10 == 0 and str(count).rstrip("0") == "1")
