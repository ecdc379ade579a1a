"""The store interface: everything Pica keeps durably.

Backends: :mod:`pica.store.sqlite` (embedded default). A PostgreSQL backend implements the same class; one contract
test suite (tests/store) runs against every backend. All methods are coroutines that never block the event loop.
Backends wrap their driver's errors: callers see :class:`~pica.errors.StoreUnavailable` for a store that cannot
answer (retryable) and the domain errors of :mod:`pica.errors` for requests that can never succeed.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class UserRecord:
    user_id: int
    username: str
    password_hash: str
    created_at: int


@dataclass(frozen=True, slots=True)
class MessageRecord:
    conversation_id: str
    seq: int
    sender: int
    client_msg_id: str
    ts: int
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class AppendResult:
    """Outcome of an append. ``duplicate``: the (sender, client_msg_id) pair was stored before, and the fields are
    those of the original message; nothing new was written."""

    conversation_id: str
    seq: int
    ts: int
    duplicate: bool


@dataclass(frozen=True, slots=True)
class DirectAppend:
    """A 1:1 message. The store creates the conversation and both memberships on its first message."""

    conversation_id: str
    sender: int
    recipient: int
    client_msg_id: str
    body_json: bytes
    """The body, already validated and JSON-encoded."""
    ts: int


@dataclass(frozen=True, slots=True)
class ConversationSummary:
    conversation_id: str
    kind: str
    last_seq: int
    last_ts: int
    delivered_seq: int
    read_seq: int


@dataclass(frozen=True, slots=True)
class Page:
    messages: list[MessageRecord]
    more: bool


class Store(abc.ABC):
    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and bring the schema up to date."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Finish every write already submitted, then release resources."""

    # accounts
    @abc.abstractmethod
    async def create_user(self, username: str, password_hash: str, now_ms: int) -> int:
        """Raises UsernameTaken."""

    @abc.abstractmethod
    async def get_user_by_name(self, username: str) -> UserRecord | None: ...

    @abc.abstractmethod
    async def get_user(self, user_id: int) -> UserRecord | None: ...

    # messages
    @abc.abstractmethod
    def append_direct(self, request: DirectAppend) -> asyncio.Future[AppendResult]:
        """Assign the conversation's next seq and commit durably; the future resolves after the commit. Fails with
        UserNotFound when the recipient does not exist. A repeated (sender, client_msg_id) resolves to the original
        result, duplicate=True.

        A future rather than a coroutine: the hot path chains callbacks on it instead of running a task per message,
        and appends submitted in one order resolve in that order (per conversation, seq order)."""

    @abc.abstractmethod
    async def history(
        self, user_id: int, conversation_id: str, *, after: int | None, before: int | None, limit: int
    ) -> Page:
        """Messages of a conversation the user is a member of, ascending by seq. With ``before`` (or neither) the
        newest ``limit`` messages below it; with only ``after`` the oldest ``limit`` above it. ``more`` says the
        page was cut. Raises ConversationNotFound when the user is not a member (or it does not exist)."""

    @abc.abstractmethod
    async def sync(self, user_id: int, cursors: Mapping[str, int], limit: int) -> Page:
        """Messages after the cursors in every conversation of the user, ordered by (conversation_id, seq), at most
        ``limit``; conversations absent from ``cursors`` start from the beginning of the user's membership."""

    @abc.abstractmethod
    async def mark_delivered(self, user_id: int, conversation_id: str, seq: int) -> int | None:
        """Advance the user's delivered cursor (clamped to the conversation's last seq). Returns the new cursor when
        it moved, None otherwise (including when the user is not a member)."""

    @abc.abstractmethod
    async def conversation_members(self, conversation_id: str) -> list[int]: ...

    @abc.abstractmethod
    async def list_conversations(self, user_id: int) -> list[ConversationSummary]:
        """The user's conversations, most recently active first."""
