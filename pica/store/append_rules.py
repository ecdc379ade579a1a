"""The send policy and seq allocation for a batch of messages, shared by every store backend.

Pure: the batch transaction (:func:`pica.store.messages.append_batch`) reads, for the whole batch at once, the
conversations' last seqs (under their row locks), the originals of repeated client ids, the recipients' settings and
the group senders' member rows, and :func:`plan_appends` decides every message: stored at which seq, a repeat of
which original, or refused with which error (docs/protocol.md, "Sending"). Seqs are given in request order, so a
conversation's messages take seqs in the order they were submitted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from pica.errors import Forbidden, IdempotencyConflict, PicaError, UserNotFound
from pica.store.base import AppendResult, DirectAppend, GroupAppend

BLOCKED_MESSAGE: Final = "this user does not accept messages from you"
NOT_A_MEMBER_MESSAGE: Final = "you cannot send to this group"
DISSOLVED_MESSAGE: Final = "the group was dissolved"
MUTED_MESSAGE: Final = "you are muted in this group"

Append = DirectAppend | GroupAppend
Outcome = AppendResult | PicaError


@dataclass(frozen=True, slots=True)
class Original:
    """A message stored before under the same (sender, client_msg_id)."""

    conversation_id: str
    seq: int
    ts: int
    body: dict[str, Any] | None = None
    """As stored, if it can still be compared with a retry's (None once edited or recalled: then any retry to the
    same conversation is taken for one)."""


REUSED_ID_MESSAGE: Final = "this client_msg_id was used for another message: a retry repeats its request exactly"


def repeats(request: Append, conversation_id: str, body: dict[str, Any] | None) -> bool:
    """Whether a request with a known (sender, client_msg_id) is a retry of the message stored under it (or sent
    earlier in the batch): same destination, same body (compared as JSON values, so key order does not matter)."""
    if request.conversation_id != conversation_id:
        return False
    return body is None or _decode(request.body_json) == body


_decode: Final = msgspec.json.Decoder(dict[str, Any]).decode


@dataclass(frozen=True, slots=True)
class Recipient:
    """A 1:1 recipient's settings towards one sender."""

    blocks_sender: bool
    only_contacts_refuses: bool
    """The recipient takes messages from contacts only, and the sender is not an accepted contact."""


@dataclass(frozen=True, slots=True)
class GroupSender:
    """A group member's row and the group's flags."""

    role: str
    muted: bool
    muted_all: bool
    dissolved: bool
    members_version: int


@dataclass(slots=True)
class AppendPlan:
    outcomes: list[Outcome]
    """One per request, in request order."""
    last: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Conversation id -> (its new last_seq, last_ts), for every conversation the batch writes."""
    messages: list[tuple[Append, int, str | None]] = field(default_factory=list)
    """(request, seq, search value) of every message to insert."""
    new_members: list[tuple[str, int]] = field(default_factory=list)
    """(conversation, user) memberships of 1:1 conversations that got their first message."""
    read: dict[tuple[str, int], int] = field(default_factory=dict)
    """(conversation, sender) -> seq: sending marks the conversation read up to the sender's own message."""


def check_direct(request: DirectAppend, recipient: Recipient | None) -> PicaError | None:
    return direct_refusal(request.sender, request.recipient, recipient)


def direct_refusal(sender: int, recipient_id: int, recipient: Recipient | None) -> PicaError | None:
    """Whether ``sender`` may reach ``recipient_id`` one to one: the rule of 1:1 messages, also asked before a call
    rings (pica/core/calls.py)."""
    if recipient is None:
        return UserNotFound(f"user {recipient_id} does not exist")
    if sender != recipient_id and (recipient.blocks_sender or recipient.only_contacts_refuses):
        return Forbidden(BLOCKED_MESSAGE)
    return None


def check_group(sender: GroupSender | None) -> PicaError | None:
    if sender is None:  # not a member, or no such group: one answer for both, so that group ids cannot be probed
        return Forbidden(NOT_A_MEMBER_MESSAGE)
    if sender.dissolved:
        return Forbidden(DISSOLVED_MESSAGE)
    if sender.muted or (sender.muted_all and sender.role == "member"):
        return Forbidden(MUTED_MESSAGE)
    return None


def plan_appends(
    requests: Sequence[Append],
    searches: Sequence[str | None],
    *,
    last_seqs: Mapping[str, int],
    originals: Mapping[tuple[int, str], Original],
    recipients: Mapping[tuple[int, int], Recipient],
    group_senders: Mapping[tuple[str, int], GroupSender],
) -> AppendPlan:
    """Decide a batch. ``recipients`` is keyed by (recipient, sender), ``group_senders`` by (conversation, sender);
    a missing key means no such user / not a member. A 1:1 conversation missing from ``last_seqs`` starts at 0 (the
    transaction creates it)."""
    plan = AppendPlan([])
    seen: dict[tuple[int, str], AppendResult] = {}
    seen_requests: dict[tuple[int, str], Append] = {}
    for request, search in zip(requests, searches, strict=True):
        key = (request.sender, request.client_msg_id)
        original = originals.get(key)
        if original is not None:
            same = repeats(request, original.conversation_id, original.body)
            plan.outcomes.append(AppendResult(original.conversation_id, original.seq, original.ts, duplicate=True)
                                 if same else IdempotencyConflict(REUSED_ID_MESSAGE))
            continue
        earlier = seen.get(key)
        if earlier is not None:  # the same id twice in one batch: the second is a repeat of the first, or a misuse
            same = repeats(request, earlier.conversation_id, _decode(seen_requests[key].body_json))
            plan.outcomes.append(AppendResult(earlier.conversation_id, earlier.seq, earlier.ts, duplicate=True)
                                 if same else IdempotencyConflict(REUSED_ID_MESSAGE))
            continue
        conversation_id = request.conversation_id
        version = 0
        if isinstance(request, DirectAppend):
            refusal = check_direct(request, recipients.get((request.recipient, request.sender)))
        else:
            sender = group_senders.get((conversation_id, request.sender))
            refusal = check_group(sender)
            if sender is not None:
                version = sender.members_version
            if refusal is None and conversation_id not in last_seqs:
                refusal = Forbidden(NOT_A_MEMBER_MESSAGE)
        if refusal is not None:
            plan.outcomes.append(refusal)
            continue
        previous = plan.last.get(conversation_id)
        seq = (previous[0] if previous is not None else last_seqs.get(conversation_id, 0)) + 1
        plan.last[conversation_id] = (seq, request.ts)
        plan.messages.append((request, seq, search))
        if seq == 1 and isinstance(request, DirectAppend):
            plan.new_members.append((conversation_id, request.sender))
            if request.recipient != request.sender:
                plan.new_members.append((conversation_id, request.recipient))
        read_key = (conversation_id, request.sender)
        plan.read[read_key] = max(seq, plan.read.get(read_key, 0))
        result = AppendResult(conversation_id, seq, request.ts, duplicate=False, members_version=version)
        seen[key] = result
        seen_requests[key] = request
        plan.outcomes.append(result)
    return plan
