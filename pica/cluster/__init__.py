"""Cluster mode over Redis 7: the node registry, cross-node delivery and cluster-wide presence.

Redis is the doorbell, the store is the truth. Every frame on the bus was committed to the shared store before it
was published (the send path delivers only after its commit), so anything the bus loses, a client recovers by
syncing from its cursors (protocol 8.6). The bus therefore aims at "fast and in order, and a loud resync whenever
something may have been lost", never at durability: Redis runs without persistence.

**Who receives what.**

- *Users*: a node subscribes to ``{prefix}u:{user_id}`` while the user has a device there (from the presence
  listener of the node's local sessions, i.e. the gateway's hub behind :class:`~pica.core.ports.LocalSessions`, and
  from ``before_ready`` for a connection about to register). ``delivery.deliver`` serves this node's devices (through
  that port), then publishes one envelope (origin node id + the frame's MessagePack payload) per user. Subscribers of
  a channel are exactly the nodes holding its user, so Redis does the routing: no lookup of where a user is, and a
  publish to a user connected nowhere costs Redis one hash lookup. A node ignores envelopes it published itself.
- *Groups*: one channel per group, ``{prefix}g:{conversation_id}``, subscribed by a node while it holds at least
  one connected member of the group (:class:`~pica.cluster.groups.GroupIndex`); one envelope per group frame
  (conversation, membership version, seq, ``also``, frame). Each subscribed node's own
  :class:`~pica.core.fanout.GroupFanout` resolves its members from its versioned cache, reloading from the store
  when the envelope's membership version is newer. A group message costs one bus message per node *holding a
  member*, not per node nor per member; a node caches only the groups it holds members of (and those its own
  senders write to); membership changes committed on any node reach those caches through the version.
  *Ephemeral* group frames (typing) take the same channel as an envelope of their own kind (origin, conversation,
  the typist to skip and the membership version the typist's node checked, frame): no seq, so they never count as
  proof that the channel was live (joins, below); the version makes an older member cache reload first.

**Keeping the group subscriptions right.** The index maps local users to their groups and groups to their local
users; a group channel is wanted while its set is non-empty, through the same subscriber as user channels (merged
changes, everything resubscribed after a cut).

- *First device here* (``before_ready``): subscribe ``u:{uid}`` and wait for Redis's confirmation, *then* read the
  user's groups (``Store.list_groups``, dissolved ones skipped: nothing is published in them), want their channels
  and wait for confirmation again, all within ``timeout``. Reading after the user channel is live closes the race
  with a concurrent add: an add committed before the read is in the list, one committed after it is announced by a
  join on the user channel (below). Later devices of the user find the groups in the index (no store read). If the
  read fails or times out, the connection still goes ready, and the local presence listener reads the list again
  and then pushes ``resync`` to the user. A ``before_ready`` whose connection does not register releases its
  channels only after ``timeout``, not at once: the WebSocket handshake is written between ``before_ready`` and
  registration, and a group list cannot be read again synchronously.
- *Last device gone*: the user leaves the index; groups left without local members are unsubscribed and their
  member caches dropped.
- *Added members* (``apply``): the notice goes to ``g:{cid}`` as any group frame (nodes already subscribed reload
  their cache, the added included), and a *join* envelope (origin, conversation, seq, notice) goes to each added
  user's ``u:{uid}``, after the group envelope on the same connection. A node holding an added user adds them to
  the index (subscribing if the group is new here) and, unless the group channel already brought it (a group
  envelope of that seq or later was received: the channel was live), pushes the notice to that user only. Then,
  once Redis confirms the new subscription, it pushes ``resync`` to those users only: frames published between the
  join and the confirmation did not reach this node. The origin node updates its index synchronously before
  anything committed later is delivered (its local fan-out already served the notice), with the same resync when
  the group channel is new there. A join names no other added users: the channel is the user, and a list in every
  copy would cost O(added²) bytes when a big group is created.
- *Removed members*: the notice reaches them through ``also``; right after delivering it, each node drops its local
  removed users from the group (unsubscribing if no member is left).
- *Control*: ``{prefix}control`` carries ``resync`` (a node had to drop envelopes).

**Why per-user channels rather than per-node channels.** A per-node inbox needs "which nodes hold user X" on every
delivery (a presence read per frame, or a cache that goes stale) and makes the publisher fan a frame out per node;
with per-user channels the subscription *is* the routing table, maintained by Redis, and consistent with what the
node actually listens to. The cost is one SUBSCRIBE per connected user per node (Redis keeps a dict entry per
channel); hundreds of thousands of channels are routine for Redis.

**Ordering.** One publisher task per node sends in call order, one round trip at a time (a pipeline of scripts that
each publish a few hundred envelopes of one slot in order, see :mod:`pica.cluster.outbox`); Redis delivers a
connection's publishes in order to each subscriber; one subscriber connection per node and shard reads them in
order; the hub appends to each connection's outbox in call order. So the frames one node publishes for a user reach that
user's devices on other nodes in publish order. Frames from different origin nodes have no common order (they
could not have one without a single sequencer), which is what per-conversation seqs and client-side ordering are
for.

**When Redis is away or restarted.** Publishes queue in a bounded outbox (``outbox_size``) and are sent in order
on reconnect; beyond the bound they are dropped and, once the queue drains, a ``resync`` control envelope makes
every other node push ``resync`` to its clients. A node whose subscriber connection was cut cannot know what it
missed: after resubscribing (every user and group channel + control, confirmed by Redis) it resyncs its own
clients.
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

**Redis Cluster.** The bus runs on one Redis 7 or on a Redis Cluster with the same code: sharded pub/sub
(SSUBSCRIBE/SPUBLISH) on both, and every name laid out by hash tag (:mod:`pica.cluster.keys`): registry and presence
keys in one slot (the scripts touch one slot), user and group channels spread over ``channel_buckets`` tags (so over
the shards). The channel names below are written without their bucket tag (``u:{uid}`` is
``{prefix}u:{{bucket}}{uid}``). What differs is the driver (:mod:`pica.cluster.driver`): the command client, the
slot of a name, and one subscriber connection per primary; the publisher batches per slot. A failover (a demoted
primary's ``sunsubscribe``, or a dead primary's closed connection) is a cut like any other: resubscribe everything on
the new topology, then resync the local clients.

**Known limits.**

- An envelope lost while neither connection broke (a Redis bug; Redis's own output-buffer limit does cut the
  subscriber, which triggers a resync) goes unnoticed: the bus carries no per-channel sequence. Clients still
  converge at their next sync.
- Presence transitions wait for Redis: during an outage nothing is announced, and the transitions are written and
  announced when it returns. They can repeat in rare cases (a reply lost after the script ran is retried), never
  go missing once Redis answers. A node paused longer than ``node_ttl`` is reaped: its users are announced offline,
  then online again when it resumes.
- Group typing notices travel on the group channel (one publish per notice, not per member) without seq, with the
  membership version: a receiving node whose member cache is older (or absent) loads it first, so a change the
  typist's node had applied is applied before the notice is served. Lost ones are not recovered (nothing to sync).
- A user's first connection to a node costs one store read (their group list) and a second Redis round trip;
  a user in many groups adds one channel subscription per group per node holding them.
- A user added to a group on a node that held no member of it gets a ``resync`` once the new subscription is
  confirmed, whether or not anything was missed (the bus cannot tell): creating a big group makes its connected
  members sync once.
- A removal committed while a member's node was reading their group list, and published before that node's new
  subscription was confirmed, leaves the node subscribed to that group until the user disconnects: wasted
  envelopes, no wrong delivery (the member cache no longer lists them).
- On a Redis Cluster, losing one shard (a failover) makes the subscriber reconnect to every shard and the node
  resync all its clients, not only those whose channels lived on that shard: frames on the healthy shards
  published while it resubscribed were missed too, and keeping those connections would need one subscription loop
  and one confirmation count per shard. A failover is rare; its cost is one sync per connected client.
- ``resync`` asks every client of a node to sync at once (a thundering herd on the store after a Redis restart);
  clients should add jitter before syncing.
"""

from pica.cluster.bus import Cluster
from pica.cluster.node import NodeInfo

__all__ = ["Cluster", "NodeInfo"]
