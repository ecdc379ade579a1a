"""The wire between the workers of ``pica serve --workers N`` on the embedded store and their hub, sans-I/O.

A connection is a Unix socket carrying frames of :mod:`pica.protocol.framing` (a 4-byte length, then the payload),
each payload a MessagePack array whose first element names its kind. Both ends are this code, of one version
(started together by one supervisor), so there is no negotiation.

Worker to hub:

- ``["call", id, op, args]``: a request; answered by ``["reply", id, result]`` or ``["fail", id, reason]``, in
  the order the calls were made (one connection, served in order). ``op``: ``hello`` (``[node_id, fields]``,
  first on every connection), ``beat`` (``[fields]``), ``apply`` (``[uid, online, uid, online, ...]``, answered
  ``[uid, alone, ...]``), ``online`` (``[uid, ...]``, answered with those held by another worker), ``bucket``
  (``[name, count, per, cost, mode]``, answered with the seconds to wait), ``ping`` (answered ``None``: every
  frame sent before it was served, subscriptions included), ``leave`` (the worker stops: answered with the users
  no worker holds any more, for it to announce offline).
- ``["pub", [channel, data, channel, data, ...]]``: publishes, in order.
- ``["sub", [channel, ...]]`` / ``["unsub", [channel, ...]]``: this connection's channels.

Hub to worker: the replies above; ``["msg", [channel, data, ...]]`` (publishes for this worker's channels, the
worker's own included, in the order the hub received them); ``["gone", [uid, ...]]`` (users whose last worker
died, for this worker to announce offline). ``hello`` is answered ``{"reaped": bool, "nodes": [fields, ...]}``
(``reaped``: the hub announced this node id's users offline when its last connection closed), ``beat`` with the
workers' fields, those of every worker connected now.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from pica.protocol.framing import FrameReader, frame_bytes

MAX_FRAME: Final = 64 << 20
"""A frame larger than this is a bug (a batch of publishes is bounded by the outbox's round trip); the reader fails
and the connection is dropped."""

_encoder: Final = msgspec.msgpack.Encoder()
_decoder: Final = msgspec.msgpack.Decoder(list)


def encode(message: list[Any]) -> bytes:
    return frame_bytes(_encoder.encode(message))


class Reader:
    """Splits a byte stream into messages; raises (FrameTooLarge, InvalidFrame, msgspec.DecodeError) on garbage."""

    def __init__(self) -> None:
        self._frames = FrameReader(MAX_FRAME)

    def feed(self, data: bytes) -> list[list[Any]]:
        return [_decoder.decode(payload) for payload in self._frames.feed(data)]


