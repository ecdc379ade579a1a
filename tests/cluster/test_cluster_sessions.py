"""Sessions across nodes: a logout on one node closes the session's socket on another within a second, and a
refresh token rotated on one node is spent on every node (the store is the one record; no bus message needed)."""

from __future__ import annotations

import asyncio

import pytest

from pica.client import PicaConnection, PicaHttp, PicaHttpError
from pica.protocol.close_codes import CloseCode
from tests.cluster.conftest import Cluster
from tests.conftest import new_user


async def test_a_logout_on_one_node_closes_the_socket_on_another(cluster: Cluster) -> None:
    n1, n2 = cluster.start("n1", "n2")
    alice = await new_user(n1.url, "alice")
    on_n2 = await PicaConnection.open(n2.url, alice.token)
    try:
        async with PicaHttp(n1.url, alice.token, alice.refresh_token) as http:
            await http.logout()
        async with asyncio.timeout(1.5):
            while on_n2.closed is None:
                await asyncio.sleep(0.02)
        assert on_n2.closed.code == CloseCode.SESSION_ENDED
    finally:
        await on_n2.close()


async def test_a_refresh_token_spent_on_one_node_is_a_reuse_on_another(cluster: Cluster) -> None:
    n1, n2 = cluster.start("n1", "n2", env={"PICA_AUTH_REFRESH_GRACE": "0"})
    alice = await new_user(n1.url, "alice")
    async with PicaHttp(n1.url, refresh_token=alice.refresh_token) as http:
        await http.refresh()
    async with PicaHttp(n2.url) as http:
        with pytest.raises(PicaHttpError) as reused:
            await http.request("POST", "/v1/auth/refresh", json={"refresh_token": alice.refresh_token})
        assert (reused.value.status, reused.value.code) == (401, "session_ended")
