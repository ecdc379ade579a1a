"""The bodies more than one HTTP module answers with, and the API's integer types.

Each is a ``msgspec.Struct``: the handlers build and encode them, the OpenAPI document describes them
(:mod:`pica.api.openapi`), and under the test suite every success answer is checked against its declared type
(:mod:`pica.api.checks`).
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import Meta

from pica.api.spec import MAX_ID
from pica.store.base import GroupRecord, MessageRecord

PositiveId = Annotated[int, Meta(ge=1, le=MAX_ID, description="1 to 2^53 - 1")]
"""A user id, group id or seq a client sends: what every client, JavaScript included, represents exactly."""
Cursor = Annotated[int, Meta(ge=0, le=MAX_ID)]
"""A position or time a client sends (``before_ts``, ``after_seq``, ``since``), 0 to 2^53 - 1."""


class Error(msgspec.Struct, omit_defaults=True):
    """Every error answer (protocol section 19 lists the codes)."""

    code: str
    message: str
    retryable: bool = False
    """Present (true) only when sending the same request again can help."""


class Message(msgspec.Struct):
    """A message: the fields of the ``msg`` frame without ``t``."""

    conversation_id: str
    seq: int
    sender: int
    client_msg_id: str
    ts: int
    """Server time, ms since the epoch."""
    body: dict[str, Any]

    @classmethod
    def of(cls, m: MessageRecord) -> Message:
        return cls(m.conversation_id, m.seq, m.sender, m.client_msg_id, m.ts, m.body)


class Ack(msgspec.Struct):
    """A message accepted (or recognised as a retry: ``duplicate``): the ``sent`` frame without ``t`` and ``ref``."""

    conversation_id: str
    seq: int
    ts: int
    client_msg_id: str
    duplicate: bool


class Ok(msgspec.Struct):
    ok: bool


class Group(msgspec.Struct):
    """A group as it is after the request (``created_at`` in ms since the epoch)."""

    group_id: int
    conversation_id: str
    name: str
    owner_id: int
    muted_all: bool
    dissolved: bool
    created_at: int
    member_count: int

    @staticmethod
    def fields_of(g: GroupRecord) -> dict[str, Any]:
        return {"group_id": g.group_id, "conversation_id": g.conversation_id, "name": g.name,
                "owner_id": g.owner_id, "muted_all": g.muted_all, "dissolved": g.dissolved,
                "created_at": g.created_at, "member_count": g.member_count}

    @classmethod
    def of(cls, g: GroupRecord) -> Group:
        return cls(**cls.fields_of(g))


class ContactState(msgspec.Struct):
    """The relation with the other user afterwards: ``none``, ``outgoing``, ``incoming``, ``accepted``, or
    ``declined`` (an invitation)."""

    state: str
