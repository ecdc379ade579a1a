"""Recall, edit and link preview rules, shared by every store backend.

Pure: a backend reads the member row and the target message inside its transaction, asks :func:`plan_event`, and
writes the plan (the target's new state, body and search text, and the event message appended after it); a recall
also asks :func:`scrub_edits` which earlier edit events to rewrite. Keeping
the rules here means SQLite and PostgreSQL cannot drift apart on what may be recalled or edited (docs/protocol.md,
"Recall, edit and delete for me"; the contract suite checks the outcome on both).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from pica.errors import BadRequest, Forbidden, MessageNotFound
from pica.protocol.links import link_of
from pica.protocol.tokens import document
from pica.store.base import EventAppend

EVENT_KEYS: Final = ("system", "recall", "edit", "preview")
"""Bodies that are notices or events, never the target of one."""


@dataclass(frozen=True, slots=True)
class Target:
    """The message a recall or edit names, as stored."""

    sender: int
    ts: int
    state: str
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class EventPlan:
    state: str
    """The target's new state: ``recalled`` or ``edited`` (a preview keeps the target's state)."""
    body: dict[str, Any] | None
    """The target's new body; None for a recall (the backend stores its tombstone body)."""
    search_text: str | None
    """The search document (:func:`pica.protocol.tokens.document`) of the target from now on; None: nothing (a
    recalled message is not searchable)."""
    event: dict[str, Any]
    """The body of the event message appended to the conversation."""


def plan_event(request: EventAppend, *, joined_seq: int, dissolved: bool, target: Target | None) -> EventPlan:
    """Check a recall or edit of ``target`` by ``request.user_id`` (a member who joined after ``joined_seq``).

    A moderated recall (``request.moderated``: an administrator removing a message for everyone) is the same rule
    without the author's limits: it needs no membership, no authorship, no window, and works in a dissolved group;
    what may be recalled at all (not a notice or an event, not recalled already) is the same."""
    moderated = request.moderated
    if target is None or (not moderated and request.target_seq <= joined_seq):
        raise MessageNotFound()
    if moderated and request.kind != "recall":
        raise BadRequest("moderation can only remove a message")
    if target.sender != request.user_id:
        raise Forbidden(f"only the author can {request.kind} a message")
    if target.state == "recalled":
        raise Forbidden("the message was recalled")
    if dissolved and not moderated:
        raise Forbidden("the group was dissolved")
    body = target.body
    if any(key in body for key in EVENT_KEYS):
        raise Forbidden(f"this message cannot be {request.kind}ed")
    if request.kind in ("preview", "unpreview"):
        return _plan_preview(request, target)
    if request.kind == "recall":
        if moderated:
            return EventPlan("recalled", None, None, {"recall": {"seq": request.target_seq, "moderated": True}})
        if request.ts - target.ts > request.window_ms:
            raise Forbidden("the recall window has passed")
        return EventPlan("recalled", None, None, {"recall": {"seq": request.target_seq}})
    if "text" not in body:
        raise BadRequest("only text messages can be edited")
    edited = {**body, "text": request.text, "edited": request.ts}
    # The same words as when the message was stored: a file's or image's name stays searchable beside its caption.
    return EventPlan("edited", edited, document(edited), {"edit": {"seq": request.target_seq, "text": request.text}})


def _plan_preview(request: EventAppend, target: Target) -> EventPlan:
    """Attach a link preview (the server, for the author) or remove it (the author): docs/protocol.md section 30.
    Either decides the message's preview for good: a preview fetched after a removal, or a second one, is refused."""
    body = target.body
    if link_of(body) is None:
        raise BadRequest("the message has no link to preview")
    current = body.get("link_preview")
    if request.kind == "preview":
        if current is not None:
            raise Forbidden("the message's preview was attached or removed already")
        preview = dict(request.preview or {})
        event: dict[str, Any] = {"preview": {"seq": request.target_seq, **preview}}
    else:
        if isinstance(current, dict) and current.get("removed"):
            raise BadRequest("the message's preview was removed already")
        preview = {"removed": True}
        event = {"preview": {"seq": request.target_seq, "removed": True}}
    # The words searched stay the author's: a page's title is not what they wrote.
    return EventPlan(target.state, {**body, "link_preview": preview}, document(body), event)


def scrub_edits(target_seq: int, later: Iterable[tuple[int, dict[str, Any]]]) -> list[tuple[int, dict[str, Any]]]:
    """The edit events of a message being recalled, each with its new body; ``later``: (seq, body) of the author's
    messages after the target. An edit event carries the text it set, so leaving it would keep the recalled words
    readable in history and sync: its body becomes ``{"edit": {"seq": N, "recalled": true}}`` (protocol 13.1). A link
    preview event names the link: it becomes ``{"preview": {"seq": N, "recalled": true}}`` (section 30)."""
    return [(seq, {key: {"seq": target_seq, "recalled": True}}) for seq, body in later for key in ("edit", "preview")
            if isinstance(body.get(key), dict) and body[key].get("seq") == target_seq]
