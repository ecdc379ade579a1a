"""Account deletion across nodes: the node that deletes an account closes its sockets at once; every other node
closes the ones it holds at its next sweep of recent deletions (a few seconds), and refuses the token from then on."""

from __future__ import annotations

import pytest

from pica.client import PicaConnection, PicaHttp, PicaHttpError
from pica.client.connection import ServerClosed
from pica.protocol import frames as f
from tests.cluster.conftest import Cluster, register
from tests.conftest import PASSWORD

WAIT = 10.0  # a sweep interval (2.5 s by default) and then some, on a busy machine


async def test_an_account_deleted_on_one_node_is_closed_and_refused_on_another(cluster: Cluster) -> None:
    n1, n2 = cluster.start("n1", "n2")
    alice = await register(n1.url, "alice")
    bob = await register(n2.url, "bob")
    elsewhere = await PicaConnection.open(n2.url, alice.token, transport="tcp", tcp_port=n2.tcp_port)
    try:
        async with PicaHttp(n1.url, token=alice.token) as http:
            await http.delete_account(PASSWORD)
        error = await elsewhere.next_event(f.Error, WAIT)
        assert (error.code, error.message) == ("session_ended", "this account was deleted")
        with pytest.raises(ServerClosed) as closed:
            await elsewhere.next_event(f.Msg, WAIT)
        assert closed.value.code == 4506
    finally:
        await elsewhere.close()
    for node in (n1, n2):
        async with PicaHttp(node.url, token=alice.token) as http:
            with pytest.raises(PicaHttpError) as refused:
                await http.request("GET", "/v1/me")
        assert (refused.value.status, refused.value.code) == (401, "session_ended")
    async with PicaHttp(n2.url, token=bob.token) as http:
        assert await http.request("GET", f"/v1/users/{alice.user_id}") == {
            "user_id": alice.user_id, "username": "", "deleted": True}
