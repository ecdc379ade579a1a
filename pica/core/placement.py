"""Which node a client should connect to: rendezvous (highest-random-weight) hashing of the user id over the live
nodes.

Every node computes the same ranking from the same live set, so a user's devices land on one node (their messages
to each other stay local) and, when a node joins or leaves, only the users whose first choice changed move: about
1/N of them, not all. The whole ranking is returned so that a client whose first choice fails tries the next.

Load is bounded as in "consistent hashing with bounded loads" (Mirrokni, Thorup, Zadimoghaddam): a node holding
more than ``max_load`` times the average number of connections moves behind the others, so that after a node dies
and its users land on their second choices, or while a fresh node is still empty, new connections flow to where
there is room. Below that bound the ranking is the pure hash order and stays stable.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class NodeAddress:
    node_id: str
    http: str
    """Base URL of the HTTP API, e.g. ``http://10.0.0.5:8080``."""
    ws: str
    """WebSocket URL, e.g. ``ws://10.0.0.5:8080/v1/ws``."""
    tcp: str
    """``host:port`` of the framed TCP gateway; empty when it is off."""
    connections: int = 0


def _weight(node_id: str, user_id: int) -> int:
    digest = hashlib.blake2b(f"{node_id}\x00{user_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


DEFAULT_MAX_LOAD = 1.25
"""A node above 1.25 times the average connection count is passed over while others have room."""


def rank_nodes(user_id: int, nodes: Iterable[NodeAddress], max_load: float = DEFAULT_MAX_LOAD) -> list[NodeAddress]:
    """The nodes in the order this user should try them: by hash weight (ties, which need equal 64-bit hashes, by
    node id), overloaded nodes last."""
    ranked = sorted(nodes, key=lambda node: (-_weight(node.node_id, user_id), node.node_id))
    if not ranked:
        return ranked
    bound = max_load * sum(node.connections for node in ranked) / len(ranked)
    roomy = [node for node in ranked if node.connections <= bound]
    return roomy + [node for node in ranked if node.connections > bound] if roomy else ranked
