"""Every Redis key and bus channel name of the cluster, laid out so that Redis Cluster can serve them.

Redis Cluster puts a key (and a sharded pub/sub channel) in one of 16,384 hash slots, computed from the part of
the name between the first ``{`` and the next ``}`` when there is one (the *hash tag*), from the whole name
otherwise; a script or a multi-channel SSUBSCRIBE must touch one slot only. The names below follow that rule on
a single Redis too (where the tags cost nothing), so there is one layout and one set of scripts.

- *Registry and presence* (:mod:`pica.cluster.scripts`): ``{prefix}{r}nodes``, ``{prefix}{r}online:{uid}``, ...
  all under the tag ``{r}``: one slot, because the scripts that make "first / last device anywhere" atomic read
  the node registry and the users' sets together. These keys change only when a user's first or last device on a
  node comes or goes (batched), never per message, so one shard carries them comfortably.
- *Bus channels*: ``{prefix}u:{{b}}{uid}`` and ``{prefix}g:{{b}}{conversation_id}``, where ``b`` is one of
  ``buckets`` hash tags (user id modulo ``buckets``, CRC-32 of the conversation id modulo ``buckets``). The
  buckets spread the channels, hence the per-message traffic, over every shard, while the publisher can still
  send a few hundred envelopes of one bucket in one script call, and a resubscription needs one SSUBSCRIBE per
  bucket rather than one per channel.
- *Control*: ``{prefix}control`` (one channel, one slot).
- *Rate-limit buckets*: ``{prefix}rl:{bucket}``, one key per script call (:mod:`pica.cluster.ratelimit`).

Every name starts with the prefix, so an operator (or a test) finds a deployment's keys with ``SCAN {prefix}*``.
"""

from __future__ import annotations

import zlib
from typing import Final

REGISTRY_TAG: Final = "{r}"


class Keys:
    def __init__(self, prefix: str, buckets: int) -> None:
        if "{" in prefix or "}" in prefix:
            raise ValueError("the Redis prefix must not contain braces (they would change the hash slots)")
        self.prefix = prefix
        self.buckets = max(1, buckets)
        self.registry = prefix + REGISTRY_TAG
        """What the registry and presence scripts prefix their keys with (their ``ARGV[1]``)."""
        self.nodes = self.registry + "nodes"
        """The registry's sorted set; also the key every registry and presence script is routed by."""
        self.control = f"{prefix}control".encode()
        self.user_prefix = f"{prefix}u:".encode()
        self.group_prefix = f"{prefix}g:".encode()
        self.rate_limits = f"{prefix}rl:"

    def user_channel(self, user_id: int) -> bytes:
        return b"%s{%d}%d" % (self.user_prefix, user_id % self.buckets, user_id)

    def group_channel(self, conversation_id: str) -> bytes:
        encoded = conversation_id.encode()
        return b"%s{%d}%s" % (self.group_prefix, zlib.crc32(encoded) % self.buckets, encoded)

    def user_of(self, channel: bytes) -> int | None:
        """The user id of a user channel (None if it is not one)."""
        if not channel.startswith(self.user_prefix):
            return None
        end = channel.find(b"}", len(self.user_prefix))
        try:
            return int(channel[end + 1:]) if end >= 0 else None
        except ValueError:
            return None
