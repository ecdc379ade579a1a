"""Who gets a push for a message, and what it says: pure, the one place these decisions are made.

The push job of a message runs ``push.delay`` seconds after its commit (pica/store/job_rules.py) and asks
:func:`recipients` which members to push to, then :func:`notification` what each device is sent. The push services'
answers are turned into one job verdict by :func:`verdict`. Specified in docs/push.md.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from pica.jobs.policy import DONE, Verdict
from pica.protocol.ids import group_id_of
from pica.store.base import DeviceRecord, PushCandidate, PushMessage

PREVIEW_CHARS: Final = 200
"""Longest text shown in a push (the services' payload limits are 4 KiB; a lock screen shows a few lines)."""
PRIVATE_TITLE: Final = "New message"
"""What a user in privacy mode sees: no sender, no conversation name, no text."""
_NAMESPACE: Final = uuid.UUID("5d2c0f37-7a61-4f1e-9d0b-6f1f3c2a8e41")


def recipients(message: PushMessage, candidates: Sequence[PushCandidate], now_ms: int) -> list[int]:
    """The members to push ``message`` to: not the sender (not a candidate), a member when it was sent, whose
    delivered cursor has not reached it (no device of theirs received it live and said so within ``push.delay``), who
    did not mute the conversation (until a time still to come, or for good with level "none") and, at level
    "mentions", whom the message mentions (by id or ``@all``). A thread message goes only to the thread's participants
    and whom it mentions. A recalled message pushes nobody."""
    record = message.message
    if message.state == "recalled":
        return []
    mentions = record.body.get("mentions")
    mentioned = set(mentions) if isinstance(mentions, list) else set()
    everyone = record.body.get("mention_all") is True
    # A thread message (docs/protocol.md section 28) is for the thread's participants and whom it mentions: the
    # rest of the group sees the thread grow under its root without a push per message.
    in_thread = isinstance(record.body.get("thread"), dict)
    chosen = []
    for c in candidates:
        if c.delivered_seq >= record.seq or c.joined_seq >= record.seq:
            continue
        if c.level == "none" or (c.mute_until is not None and c.mute_until > now_ms):
            continue
        named = everyone or c.user_id in mentioned
        if c.level == "mentions" and not named:
            continue
        if in_thread and not named and c.user_id not in message.thread_participants:
            continue
        chosen.append(c.user_id)
    return chosen


@dataclass(frozen=True, slots=True)
class Notification:
    """One push to one device, in the terms every provider maps to its own payload."""

    push_id: str
    """A UUID, the same for every attempt of this message to this device: the receiver de-duplicates by it (APNs'
    ``apns-id``; ``push_id`` in FCM's data and in the Web Push payload)."""
    conversation_id: str
    seq: int
    ts: int
    """The message's time (ms since the epoch)."""
    title: str
    body: str
    badge: int
    """The recipient's unread messages over all their conversations."""

    @property
    def collapse_id(self) -> str:
        """A later push of the same conversation replaces an earlier one not yet shown (APNs ``apns-collapse-id``,
        at most 64 bytes; FCM ``collapse_key``; conversation ids are short ASCII)."""
        return self.conversation_id

    @property
    def topic(self) -> str:
        """Web Push's ``Topic`` (RFC 8030 §5.4: at most 32 characters of the base64url alphabet), per
        conversation."""
        return base64.urlsafe_b64encode(hashlib.sha256(self.conversation_id.encode()).digest()).decode()[:32]

    def data(self) -> dict[str, str]:
        """What the app needs to open the conversation; strings only (FCM's ``data`` takes nothing else)."""
        return {"push_id": self.push_id, "conversation_id": self.conversation_id, "seq": str(self.seq),
                "ts": str(self.ts)}


def push_id(conversation_id: str, seq: int, device_id: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{conversation_id}/{seq}/{device_id}"))


def preview(body: dict[str, Any]) -> str:
    """A message body as one line of text (docs/protocol.md §7.1: text, file, image, voice, custom)."""
    if isinstance(body.get("text"), str):  # a text, or a file's or an image's caption
        text = body["text"]
    elif "image" in body:
        text = "[image]"
    elif "voice" in body:
        text = "[voice note]"
    elif "file" in body:
        name = body["file"].get("name") if isinstance(body["file"], dict) else None
        text = f"[file] {name}" if isinstance(name, str) else "[file]"
    else:
        text = "[message]"
    text = " ".join(text.split())
    return text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS - 1] + "…"


def notification(message: PushMessage, device: DeviceRecord, privacy: bool, badge: int) -> Notification:
    record = message.message
    ident = push_id(record.conversation_id, record.seq, device.device_id)
    if privacy:
        return Notification(ident, record.conversation_id, record.seq, record.ts, PRIVATE_TITLE, "", badge)
    sender = message.sender_name or "Someone"
    if group_id_of(record.conversation_id) is not None:
        title = f"{sender} in {message.group_name}" if message.group_name else sender
    else:
        title = sender
    return Notification(ident, record.conversation_id, record.seq, record.ts, title, preview(record.body), badge)


Outcome = Literal["sent", "gone", "retry", "failed"]


@dataclass(frozen=True, slots=True)
class Sent:
    """A push service's answer for one device. ``gone``: the service says the target no longer exists (the device
    is deleted); ``retry``: a later attempt may succeed (429, 5xx, a timeout, an expired credential); ``failed``:
    it never will (the error is logged, the device kept)."""

    outcome: Outcome
    detail: str = ""


def verdict(results: Sequence[Sent]) -> Verdict:
    """The job's verdict: retried while any device's push may still succeed (every device is sent to again, with
    the same push id: those that had it drop the repeat), else done."""
    for r in results:
        if r.outcome == "retry":
            return Verdict("retry", r.detail or "a push service asked to retry")
    return DONE
