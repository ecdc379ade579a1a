"""Python asyncio client for Pica (docs/sdk.md): :class:`PicaClient`, the SDK that stays connected, over
:class:`PicaConnection` (one authenticated socket, WebSocket or TCP) and :class:`PicaHttp` (the HTTP API).

It drives the same sans-I/O protocol code as the server (:mod:`pica.protocol`).

    http = PicaHttp("http://127.0.0.1:8080")
    await http.register("alice", "correct horse")
    login = await http.login("alice", "correct horse")
    async with await PicaConnection.open("http://127.0.0.1:8080", login.token, transport="ws") as conn:
        ack = await conn.send(to=2, body={"text": "hi"})
        msg = await conn.next_message()
"""

from pica.client.connection import PicaConnection, RequestFailed, ServerClosed
from pica.client.cursors import CursorTracker
from pica.client.http import GatewayNode, Login, PicaHttp, PicaHttpError
from pica.client.sdk import (
    Backoff,
    CallEvent,
    Connected,
    ContactEvent,
    ConversationStateEvent,
    Disconnected,
    Event,
    GaveUp,
    InvitationEvent,
    MessageEvent,
    PicaClient,
    PresenceEvent,
    ReceiptEvent,
    TypingEvent,
)

__all__ = [
    "Backoff",
    "CallEvent",
    "Connected",
    "ContactEvent",
    "ConversationStateEvent",
    "CursorTracker",
    "Disconnected",
    "Event",
    "GatewayNode",
    "GaveUp",
    "InvitationEvent",
    "Login",
    "MessageEvent",
    "PicaClient",
    "PicaConnection",
    "PicaHttp",
    "PicaHttpError",
    "PresenceEvent",
    "ReceiptEvent",
    "RequestFailed",
    "ServerClosed",
    "TypingEvent",
]
