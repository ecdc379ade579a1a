"""Python asyncio client for Pica: HTTP helpers and a socket connection over WebSocket or TCP.

It drives the same sans-I/O protocol code as the server (:mod:`pica.protocol`). This is the foundation the full SDK
grows from (reconnect with backoff, persisted cursors, group helpers come with later issues).

    http = PicaHttp("http://127.0.0.1:8080")
    await http.register("alice", "correct horse")
    login = await http.login("alice", "correct horse")
    async with await PicaConnection.open("http://127.0.0.1:8080", login.token, transport="ws") as conn:
        ack = await conn.send(to=2, body={"text": "hi"})
        msg = await conn.next_message()
"""

from pica.client.connection import PicaConnection, ServerClosed
from pica.client.cursors import CursorTracker
from pica.client.http import Login, PicaHttp, PicaHttpError

__all__ = ["CursorTracker", "Login", "PicaConnection", "PicaHttp", "PicaHttpError", "ServerClosed"]
