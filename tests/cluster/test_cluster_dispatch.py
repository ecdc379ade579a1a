"""The SDK's dispatch: a client that knows a dead address and a seed finds the cluster, connects where
``GET /v1/gateway`` tells it, points its HTTP helpers there, and moves to another node when that one stops."""

from __future__ import annotations

import asyncio

import pytest

from pica.client import Connected, MessageEvent, PicaClient, PicaHttp
from tests.cluster.conftest import Cluster, free_port, register

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(90)]


@pytest.mark.parametrize("transport", ["ws", "tcp"])
async def test_a_client_finds_the_cluster_through_a_seed_and_follows_it(cluster: Cluster, transport: str) -> None:
    n1, n2 = cluster.start("n1", "n2")
    gina, hugo = await asyncio.gather(register(n1.url, "gina"), register(n2.url, "hugo"))
    await cluster.formed(gina.token)
    async with PicaHttp(n1.url, token=gina.token) as http:
        preferred, other = await http.gateway()
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens there

    gina_client = PicaClient(nowhere, token=gina.token, seeds=[n2.url], dispatch=True,
                             transport=transport)  # type: ignore[arg-type]
    async with gina_client as client, PicaClient(n1.url, token=hugo.token, dispatch=True) as hugo_client:
        assert client.node is not None and client.node.node_id == preferred.node_id
        assert client.http.base_url == preferred.http
        assert client.user_id == gina.user_id
        assert (await client.user(hugo.user_id))["user_id"] == hugo.user_id  # HTTP helpers use the chosen node

        ack = await client.send(to=hugo.user_id, text="before")
        event = await hugo_client.next_event(MessageEvent)
        assert (event.message.seq, event.message.body["text"]) == (ack.seq, "before")

        # Gina's node shuts down (close 4000): she reconnects through dispatch to the node that is left.
        cluster.node(preferred.node_id).terminate()
        moved = await client.next_event(Connected, timeout=20)
        while not moved.reconnect:  # the first connection's event is still queued
            moved = await client.next_event(Connected, timeout=20)
        assert moved.node_id == other.node_id
        assert client.http.base_url == other.http

        again = await client.send(to=hugo.user_id, text="after")
        assert again.seq == ack.seq + 1

        # Hugo gets it, whichever node he is on now (he moved too if he was on the same node).
        got = await hugo_client.next_event(MessageEvent, timeout=20)
        assert (got.message.seq, got.message.body["text"]) == (again.seq, "after")
