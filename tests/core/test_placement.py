"""Dispatch ranking: every node agrees, a user's devices land together, and a node leaving moves only its users."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from pica.core.placement import NodeAddress, rank_nodes


def ids(ranked: list[NodeAddress]) -> list[str]:
    return [node.node_id for node in ranked]


def nodes(*names: str, load: dict[str, int] | None = None) -> list[NodeAddress]:
    return [NodeAddress(n, f"http://{n}:8080", f"ws://{n}:8080/v1/ws", f"{n}:8081", (load or {}).get(n, 0))
            for n in names]


@given(st.integers(min_value=1, max_value=2**53), st.permutations(nodes("a", "b", "c", "d")))
def test_ranking_does_not_depend_on_the_order_nodes_are_listed(user_id: int, listed: list[NodeAddress]) -> None:
    assert rank_nodes(user_id, listed) == rank_nodes(user_id, nodes("a", "b", "c", "d"))


def test_users_spread_evenly_over_nodes() -> None:
    first = Counter(rank_nodes(user_id, nodes("a", "b", "c"))[0].node_id for user_id in range(1, 30_001))
    assert set(first) == {"a", "b", "c"}
    assert all(8_000 < count < 12_000 for count in first.values()), first


def test_a_node_leaving_moves_only_its_own_users() -> None:
    before = {u: rank_nodes(u, nodes("a", "b", "c"))[0].node_id for u in range(1, 5_001)}
    after = {u: rank_nodes(u, nodes("a", "c"))[0].node_id for u in range(1, 5_001)}
    moved = {u for u in before if before[u] != after[u]}
    assert moved == {u for u in before if before[u] == "b"}
    # and each moved user goes to the node that was their second choice
    assert all(after[u] == rank_nodes(u, nodes("a", "b", "c"))[1].node_id for u in moved)


def test_an_overloaded_node_is_passed_over_until_the_others_catch_up() -> None:
    """After a node died, its users doubled the survivors' loads; a fresh node must take the new connections."""
    skewed = nodes("a", "b", "c", load={"a": 20_000, "b": 20_000, "c": 1_000})
    first = Counter(rank_nodes(user_id, skewed)[0].node_id for user_id in range(1, 3_001))
    assert first == {"c": 3_000}  # average 13,667: a and b are above 1.25 times that, c is the only roomy node
    # every node is still listed, the overloaded ones in their hash order behind
    assert all(len(rank_nodes(u, skewed)) == 3 for u in range(1, 100))
    balanced = nodes("a", "b", "c", load={"a": 11_000, "b": 10_000, "c": 9_000})
    assert all(ids(rank_nodes(u, balanced)) == ids(rank_nodes(u, nodes("a", "b", "c"))) for u in range(1, 1_000))


def test_when_every_node_is_loaded_alike_the_hash_order_stands() -> None:
    even = nodes("a", "b", load={"a": 5, "b": 5})
    assert all(ids(rank_nodes(u, even)) == ids(rank_nodes(u, nodes("a", "b"))) for u in range(1, 500))
