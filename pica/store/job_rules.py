"""Which jobs a committed write makes: the one rule, pure, used by both backends' transactions (pica/store/jobs.py).

Given the webhook subscriptions (:class:`~pica.store.base.JobRules`) and what a transaction stored (a batch of
messages, a recall or edit, a group change, a new account), :func:`rows_for` lists the job rows to insert in the same
transaction: one per (event, subscribed endpoint). A row's payload is the event as the endpoint receives it (docs/
webhooks.md): ``{"type", "timestamp", "data"}``, JSON, built here once per event and shared by its endpoints' rows.

A webhook job's key names its event (``<type>:<conversation>/<seq>``, ``user.created:<id>``); with the endpoint (the
job's target) it makes the delivery's idempotency key, the ``webhook-id`` (pica/webhooks/signing.py), so the same
event for the same endpoint always has the same id, and a receiver that de-duplicates by it sees every event once,
however many times it was delivered. This code runs inside the writer's transaction, on the hot path when webhooks
are configured: it builds each payload once, with no date formatting or hashing per message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Final

import msgspec

from pica.protocol.ids import direct_peer, group_id_of
from pica.protocol.links import link_of
from pica.protocol.tokens import LINK_MARKER
from pica.store.base import AppendResult, DirectAppend, GroupAppend, GroupChange, JobRules, MessageRecord

WEBHOOK: Final = "webhook"
"""The kind of a webhook delivery job (the worker dispatches on the kind)."""
STREAM: Final = "stream"
"""The kind of an event-stream publication. Its target is its *chain*: the conversation (or ``user:<id>``), whose
jobs are claimed one at a time, in the order they were written (pica/store/jobs.py), so that a conversation's events
reach the broker in commit order. Its key, the broker's de-duplication id, is ``<conversation_id>:<seq>``."""

PUSH: Final = "push"
"""The kind of a push notification job: one per stored message, due ``push.delay`` after its commit (pica/push). Its
key is ``<conversation_id>/<seq>``, its target the conversation, its payload the ``message.created`` event's data
(without the body: the job reads the message when it runs, so a recall in between is seen)."""

PREVIEW: Final = "preview"
"""The kind of a link preview job (pica/previews): one per stored message whose text has an http(s) link, when
``previews.enabled``. Its key is ``<conversation_id>/<seq>``, its target the conversation (not the URL: targets are
logged, and a link is part of what a user wrote), its payload ``{"conversation_id", "seq", "sender", "url"}``."""

EVENT_TYPES: Final = (
    "message.created", "message.recalled", "message.edited", "message.reacted", "user.created",
    "group.created", "group.members_added", "group.members_removed", "group.member_left", "group.role_changed",
    "group.owner_changed", "group.renamed", "group.muted", "group.unmuted", "group.group_muted",
    "group.group_unmuted", "group.dissolved",
)
"""Every event type a webhook can subscribe to (docs/webhooks.md); group.* are the group notices' events."""

_encode: Final = msgspec.json.Encoder().encode
_decode_body: Final = msgspec.json.Decoder(dict[str, Any]).decode


@dataclass(frozen=True, slots=True)
class JobRow:
    key: str
    kind: str
    target: str
    payload: bytes
    delay_ms: int = 0
    """Due this long after the commit (0: at once)."""


@dataclass(frozen=True, slots=True)
class Event:
    """One event, before it is addressed to endpoints. ``ident``: what makes it unique (with its type)."""

    type: str
    ident: str
    ts: int
    data: dict[str, Any] | bytes
    """The event's fields, or already their JSON object (the messages of a batch: built as text, cheaper)."""
    body_json: bytes | None = None
    """A message body already encoded (spliced into ``data`` as ``body``, not decoded and encoded again)."""
    conversation_id: str = ""
    seq: int = 0
    """The timeline position this event was committed at (its own message, notice or event); 0: none (users)."""
    sender: int = 0
    """Who sent the message (``message.created``; bots are not sent their own: pica/store/bots.py)."""


def matches(pattern: str, event_type: str) -> bool:
    if pattern == "*" or pattern == event_type:
        return True
    return pattern.endswith(".*") and event_type.startswith(pattern[:-1])


def valid_pattern(pattern: str) -> bool:
    """A subscription pattern that can match something: an event type, a family ``x.*`` of them, or ``*``."""
    return any(matches(pattern, t) for t in EVENT_TYPES)


@lru_cache(maxsize=256)
def targets(rules: JobRules, event_type: str) -> tuple[str, ...]:
    """The endpoints subscribed to an event type (cached: rules change rarely, events are many)."""
    return tuple(s.endpoint_id for s in rules.subscriptions if any(matches(p, event_type) for p in s.events))


@lru_cache(maxsize=16)
def _second(epoch_s: int) -> str:
    """ISO 8601 of a second: a batch's events share a few, and formatting a date is most of a payload's cost."""
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def payload(event: Event) -> bytes:
    stamp = f"{_second(event.ts // 1000)}.{event.ts % 1000:03d}Z"
    data = event.data if isinstance(event.data, bytes) else _encode(event.data)
    if event.body_json is not None:  # {...} + ,"body":<json>}
        data = data[:-1] + (b',"body":' if len(data) > 2 else b'"body":') + event.body_json + b"}"
    return b'{"type":' + _encode(event.type) + b',"timestamp":"' + stamp.encode() + b'","data":' + data + b"}"


@lru_cache(maxsize=256)
def streamed(rules: JobRules, event_type: str) -> bool:
    return any(matches(p, event_type) for p in rules.stream)


def stream_row(event: Event, body: bytes) -> JobRow:
    if event.conversation_id:
        return JobRow(f"{event.conversation_id}:{event.seq}", STREAM, event.conversation_id, body)
    return JobRow(f"{event.type}:{event.ident}", STREAM, f"{event.type}:{event.ident}", body)


def push_row(event: Event, delay_ms: int) -> JobRow:
    # The event's data is built already (bytes, for a batch's messages): the push job costs the writer one row.
    data = event.data if isinstance(event.data, bytes) else _encode(event.data)
    return JobRow(event.ident, PUSH, event.conversation_id, data, delay_ms)


def has_link(search_text: str) -> bool:
    """Whether a message's search document says its text has a link: its link marker, which
    :func:`pica.protocol.tokens.document` puts last (no token of a user's can be ``_link``: ``_`` separates tokens)."""
    return search_text.endswith(LINK_MARKER)


def wakes(rules: JobRules | None, request: DirectAppend | GroupAppend) -> bool:
    """Whether storing ``request`` may queue a job, so that the worker should look: always when events make jobs, only
    for a message with a link when previews are the only rules (a claim costs the SQLite writer a transaction)."""
    return rules is not None and (rules.events or has_link(request.search_text))


def preview_rows(requests: Sequence[DirectAppend | GroupAppend], outcomes: Sequence[Any]) -> list[JobRow]:
    """A ``preview`` job for every message a batch stored whose text has a link. The search document already says
    whether it has one (its link marker): only those bodies are decoded again."""
    rows = []
    for request, outcome in zip(requests, outcomes, strict=True):
        if not isinstance(outcome, AppendResult) or outcome.duplicate or not has_link(request.search_text):
            continue
        url = link_of(_decode_body(request.body_json))
        if url is not None:
            data = {"conversation_id": request.conversation_id, "seq": outcome.seq, "sender": request.sender,
                    "url": url}
            rows.append(JobRow(f"{request.conversation_id}/{outcome.seq}", PREVIEW, request.conversation_id,
                               _encode(data)))
    return rows


def rows_for(rules: JobRules | None, events: Sequence[Event]) -> list[JobRow]:
    """The job rows of some events: one per event and subscribed endpoint, and one per event for the stream."""
    if rules is None:
        return []
    rows: list[JobRow] = []
    decided: dict[str, tuple[tuple[str, ...], bool]] = {}  # per event type, once per call (hashing rules costs)
    for event in events:
        decision = decided.get(event.type)
        if decision is None:
            decision = decided[event.type] = (targets(rules, event.type),
                                              bool(rules.stream) and streamed(rules, event.type))
        endpoints, publish = decision
        if rules.push_delay_ms is not None and event.type == "message.created":
            rows.append(push_row(event, rules.push_delay_ms))
        if endpoints or publish:
            body = payload(event)
            key = f"{event.type}:{event.ident}"
            rows.extend(JobRow(key, WEBHOOK, e, body) for e in endpoints)
            if publish:
                rows.append(stream_row(event, body))
    return rows


# ---------------------------------------------------------------------------------------------------------- events


def created(requests: Sequence[DirectAppend | GroupAppend], outcomes: Sequence[Any]) -> list[Event]:
    """``message.created`` for every message a batch stored (not the repeats of an id, not the refusals)."""
    events = []
    for request, outcome in zip(requests, outcomes, strict=True):
        if not isinstance(outcome, AppendResult) or outcome.duplicate:
            continue
        # Conversation ids are made by pica.protocol.ids (ASCII letters, digits, colons): no JSON escaping needed.
        peer = (f'"to":{request.recipient}' if isinstance(request, DirectAppend)
                else f'"group_id":{group_id_of(request.conversation_id)}')
        data = (f'{{"conversation_id":"{request.conversation_id}","seq":{outcome.seq},"sender":{request.sender},'
                f'{peer},"client_msg_id":').encode() + _encode(request.client_msg_id) + f',"ts":{outcome.ts}}}'.encode()
        events.append(Event("message.created", f"{request.conversation_id}/{outcome.seq}", outcome.ts, data,
                            request.body_json, request.conversation_id, outcome.seq, request.sender))
    return events


def changed(result: AppendResult, record: MessageRecord) -> list[Event]:
    """``message.recalled``, ``message.edited`` or ``message.reacted`` from the event message a recall, an edit or
    a reaction appended."""
    if result.duplicate:
        return []
    body = record.body
    if "preview" in body:
        return []  # a link preview is the server's doing, not an event of the author's
    kind, key = next((k, key) for key, k in (("recall", "message.recalled"), ("edit", "message.edited"),
                                              ("reaction", "message.reacted")) if key in body)
    detail = body[key]
    data = {"conversation_id": record.conversation_id, "seq": detail["seq"], "event_seq": record.seq,
            "sender": record.sender, "ts": record.ts,
            **{name: detail[name] for name in ("text", "emoji", "add") if name in detail}}
    _peer(data, record)
    return [Event(kind, f"{record.conversation_id}/{record.seq}", record.ts, data, None, record.conversation_id,
                  record.seq)]


def group_changed(change: GroupChange) -> list[Event]:
    """``group.<event>`` from the notice a group change appended (its body is group_rules' notice); none for an add
    that only invited (no notice: nothing changed in the group yet)."""
    notice = change.notice
    if notice is None:
        return []
    system = dict(notice.body.get("system", {}))
    event = str(system.pop("event", "changed"))
    data = {"group_id": change.group.group_id, "conversation_id": notice.conversation_id, "seq": notice.seq,
            "ts": notice.ts, **system}
    return [Event(f"group.{event}", f"{notice.conversation_id}/{notice.seq}", notice.ts, data, None,
                  notice.conversation_id, notice.seq)]


def user_created(user_id: int, username: str, ts: int) -> list[Event]:
    return [Event("user.created", str(user_id), ts, {"user_id": user_id, "username": username, "ts": ts})]


def _peer(data: dict[str, Any], record: MessageRecord) -> None:
    group = group_id_of(record.conversation_id)
    if group is not None:
        data["group_id"] = group
    else:
        peer = direct_peer(record.conversation_id, record.sender)
        if peer is not None:
            data["to"] = peer
