"""Cluster mode over Redis 7: the node registry, cross-node delivery and cluster-wide presence.

Redis is the doorbell, the store is the truth. Every frame on the bus was committed to the shared store before it
was published (the send path delivers only after its commit), so anything the bus loses, a client recovers by
syncing from its cursors (protocol 8.6). The bus therefore aims at "fast and in order, and a loud resync whenever
something may have been lost", never at durability: Redis runs without persistence.

**Who receives what.**

- *Users*: a node subscribes to ``{prefix}u:{user_id}`` while the user has a device there (from the hub's presence
  listener, and from ``before_ready`` for a connection about to register). ``delivery.deliver`` serves this node's
  devices, then publishes one envelope (origin node id + the frame's MessagePack payload) per user. Subscribers of
  a channel are exactly the nodes holding its user, so Redis does the routing: no lookup of where a user is, and a
  publish to a user connected nowhere costs Redis one hash lookup. A node ignores envelopes it published itself.
- *Groups*: one broadcast channel ``{prefix}groups`` that every node subscribes to; one envelope per group frame
  (conversation, membership version, seq, ``also``, frame). Each node's own :class:`~pica.core.fanout.GroupFanout`
  resolves its members from its versioned cache, reloading from the store when the envelope's membership version
  is newer. A group message costs O(nodes) bus messages, not O(members), and membership changes committed on any
  node reach every cache through the version, with no invalidation protocol.
- *Control*: ``{prefix}control`` carries ``resync`` (a node had to drop envelopes).

**Why per-user channels rather than per-node channels.** A per-node inbox needs "which nodes hold user X" on every
delivery (a presence read per frame, or a cache that goes stale) and makes the publisher fan a frame out per node;
with per-user channels the subscription *is* the routing table, maintained by Redis, and consistent with what the
node actually listens to. The cost is one SUBSCRIBE per connected user per node (Redis keeps a dict entry per
channel); hundreds of thousands of channels are routine for Redis.

**Ordering.** One publisher task per node sends in call order, one round trip at a time (a pipeline of scripts that
each publish a few hundred envelopes in order, see :mod:`pica.cluster.outbox`); Redis delivers a
connection's publishes in order to each subscriber; one subscriber connection per node reads them in order; the
hub appends to each connection's outbox in call order. So the frames one node publishes for a user reach that
user's devices on other nodes in publish order. Frames from different origin nodes have no common order (they
could not have one without a single sequencer), which is what per-conversation seqs and client-side ordering are
for.

**When Redis is away or restarted.** Publishes queue in a bounded outbox (``outbox_size``) and are sent in order
on reconnect; beyond the bound they are dropped and, once the queue drains, a ``resync`` control envelope makes
every other node push ``resync`` to its clients. A node whose subscriber connection was cut cannot know what it
missed: after resubscribing (every user channel + groups + control, confirmed by Redis) it resyncs its own clients.
The heartbeat re-registers the node; if Redis came back empty (or this node was reaped after a long pause), presence
re-writes every local user. Reconnects use exponential backoff with full jitter, forever; ``deliver`` never blocks
and never raises meanwhile; ``start`` waits at most ``timeout`` seconds. Every command has ``timeout`` as socket
timeout, and the subscriber probes a silent connection with PING. Each background loop is supervised (restarted
after an unexpected exception, logged) and stops on a flag as well as on cancellation, because Python 3.11's
``wait_for`` inside redis-py can swallow a cancellation (see :func:`pica.cluster.link.cancel_and_wait`).

**Presence** (:mod:`pica.cluster.presence`, :mod:`pica.cluster.scripts`): ``{prefix}online:{uid}`` is the set of
node ids holding the user, ``{prefix}node_users:{node}`` the users of a node. Lua scripts make "first device
anywhere" / "last device anywhere" atomic across nodes and judge liveness with Redis's clock, not the nodes'. A node
that stops heartbeating is reaped by one survivor (lock ``{prefix}reap:{node}``), which announces "offline" for the
users it held alone.

**Redis Cluster.** Nothing here needs it at the sizes one Redis serves (one Redis 7 on the 2-core test box carried
about 160,000 user envelopes per second from one node to another, both nodes in one process). To move to Redis
Cluster: user channels become sharded pub/sub (SSUBSCRIBE/SPUBLISH, each channel living on its slot's shard, so the
subscriber holds one connection per shard); the group channel becomes one channel per group (or per slot range)
subscribed by every node, so group traffic spreads over shards; the scripts must then touch keys of one slot only,
with hash tags (``{uid}``) for per-user keys and the registry moved to a single slot, or split into per-user calls,
and the batched publish script becomes per-shard batches of SPUBLISH.

**Known limits.**

- An envelope lost while neither connection broke (a Redis bug; Redis's own output-buffer limit does cut the
  subscriber, which triggers a resync) goes unnoticed: the bus carries no per-channel sequence. Clients still
  converge at their next sync.
- Presence transitions wait for Redis: during an outage nothing is announced, and the transitions are written and
  announced when it returns. They can repeat in rare cases (a reply lost after the script ran is retried), never
  go missing once Redis answers. A node paused longer than ``node_ttl`` is reaped: its users are announced offline,
  then online again when it resumes.
- Group typing indicators go through ``delivery`` per member (the chat service's choice), i.e. one publish per
  member; they are ephemeral and rate-limited.
- Every node caches the member lists of every group that is active anywhere (a group envelope makes a node load
  the group even if none of its members is connected here). Per-group channels, subscribed to by the nodes holding
  a member, would trade that for a membership lookup per connection.
- ``resync`` asks every client of a node to sync at once (a thundering herd on the store after a Redis restart);
  clients should add jitter before syncing.
"""

from pica.cluster.bus import Cluster
from pica.cluster.node import NodeInfo

__all__ = ["Cluster", "NodeInfo"]
