"""An XMPP client on one node and a WebSocket device on another chat through the cluster bus: an XMPP stream is
just another connection on the node's hub."""

from __future__ import annotations

import pytest

from pica.client import PicaConnection
from tests.cluster.conftest import Cluster, free_port
from tests.conftest import PASSWORD
from tests.mqtt.paho_client import new_user
from tests.xmpp.slix import Slix

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(90)]


async def test_xmpp_and_websocket_users_on_different_nodes(cluster: Cluster) -> None:
    port = free_port()
    # On the loopback only: PLAIN without TLS keeps the test free of certificates.
    [n1] = cluster.start("n1", extra=["--xmpp-port", str(port)], env={"PICA_XMPP_PLAIN_WITHOUT_TLS": "true"})
    [n2] = cluster.start("n2")
    alice, bob = await new_user(n1.url, "a"), await new_user(n2.url, "b")
    await cluster.formed(alice.token)
    client = Slix(f"{alice.username}@localhost/n1", PASSWORD, None)
    await client.login(port)
    ws = await PicaConnection.open(n2.url, bob.token)
    try:
        client.say(f"{bob.username}@localhost", "from xmpp on n1")
        assert (await ws.next_message(timeout=10)).body == {"text": "from xmpp on n1"}
        await ws.send(alice.user_id, {"text": "from ws on n2"})
        assert (await client.next_message())["body"] == "from ws on n2"
    finally:
        await client.bye()
        await ws.close()
