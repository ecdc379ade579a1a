"""Close codes, shared by WebSocket close frames and the TCP ``close`` frame.

4000-4499: the client should reconnect (after backoff with jitter) and sync.
4500-4999: reconnecting as before will fail again; the client must change something first (a new token, a fixed
frame, a newer protocol version). 1000 and 1009 keep their RFC 6455 meaning on both transports.
"""

from __future__ import annotations

from enum import IntEnum


class CloseCode(IntEnum):
    NORMAL = 1000
    MESSAGE_TOO_BIG = 1009
    SERVER_SHUTDOWN = 4000
    IDLE_TIMEOUT = 4001
    SLOW_CONSUMER = 4002
    AUTH_TIMEOUT = 4003
    INTERNAL_ERROR = 4004
    TOO_MANY_CONNECTIONS = 4005
    """TCP only: the client's address holds ``limits.max_connections_per_address`` sockets already."""
    SERVER_BUSY = 4006
    """The node is admitting connections at its pace (``limits.connects_per_second``) and this one's turn was too far
    off: reconnect after the ``retry_after`` of the ``error`` before it."""
    PROTOCOL_ERROR = 4500
    AUTH_FAILED = 4501
    TOKEN_EXPIRED = 4502
    FRAME_TOO_LARGE = 4503
    UNSUPPORTED_VERSION = 4504
    TOO_MANY_SESSIONS = 4505
    """The user's sessions passed ``limits.max_sessions_per_user``: this one was the oldest, or the refused new one.
    In the no-reconnect range: reconnecting by itself would only close another session of the same user."""
    SESSION_ENDED = 4506
    """The socket's session was ended (logout, revoked, password change, a reused refresh token): log in again."""

    @property
    def should_reconnect(self) -> bool:
        return 4000 <= self.value < 4500 or self.value == CloseCode.NORMAL
