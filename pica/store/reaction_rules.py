"""Reaction, reply, thread and mention rules, shared by every store backend (docs/protocol.md section 28).

Pure, like :mod:`pica.store.event_rules`: a transaction (:mod:`pica.store.reactions`) reads the member row and the
messages a request names, asks these functions, and writes what they decide. Checks run in a fixed order: the
message exists and the user could see it, it is a message people write (not a notice or an event), it is not
recalled, then the rule of the feature.
"""

from __future__ import annotations

from typing import Any, Final

from pica.errors import BadRequest, Conflict, Forbidden, MessageNotFound
from pica.store.base import ReactionAppend
from pica.store.event_rules import Target

_NOT_CONTENT: Final = ("system", "recall", "edit", "reaction", "recalled", "deleted")
"""Bodies nobody can react to, reply to or open a thread under: notices, events and tombstones."""
QUOTED_KINDS: Final = ("image", "file", "voice", "custom", "call")
"""What a quote says the quoted message was, in this order; a message with none of them is ``text``."""
RECALLED_QUOTE: Final = {"recalled": True}


def _checked(target: Target | None, seq: int, joined_seq: int, what: str) -> Target:
    if target is None or seq <= joined_seq:
        raise MessageNotFound()
    if target.state == "recalled":
        raise Forbidden("the message was recalled")
    if any(key in target.body for key in _NOT_CONTENT):
        raise Forbidden(f"this message cannot be {what}")
    return target


def plan_reaction(request: ReactionAppend, *, joined_seq: int,
                  target: Target | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the target's new body, the event's body). The target's ``reactions`` maps each emoji to the ids of the users
    who chose it, in the order they did; an emoji nobody holds any more is dropped."""
    found = _checked(target, request.target_seq, joined_seq, "reacted to")
    current = found.body.get("reactions")
    reactions: dict[str, list[int]] = ({k: list(v) for k, v in current.items() if isinstance(v, list)}
                                       if isinstance(current, dict) else {})
    holders = reactions.get(request.emoji, [])
    user = request.user_id
    if request.remove:
        if user not in holders:
            raise Conflict(f"you have not reacted with {request.emoji}")
        holders = [u for u in holders if u != user]
    else:
        if user in holders:
            raise Conflict(f"you have already reacted with {request.emoji}")
        if request.emoji not in reactions and len(reactions) >= request.per_message:
            raise Forbidden(f"a message carries at most {request.per_message} different reactions")
        if sum(user in ids for ids in reactions.values()) >= request.per_user:
            raise Forbidden(f"you may have at most {request.per_user} reactions on one message")
        holders = [*holders, user]
    if holders:
        reactions[request.emoji] = holders
    else:
        reactions.pop(request.emoji, None)
    body = {k: v for k, v in found.body.items() if k != "reactions"}
    if reactions:
        body["reactions"] = reactions
    event = {"reaction": {"seq": request.target_seq, "emoji": request.emoji, "add": not request.remove}}
    return body, event


def quote_of(target: Target | None, seq: int, joined_seq: int, chars: int) -> dict[str, Any]:
    """The truth about the message a reply quotes, a snapshot taken now: later edits do not change it, a recall
    does (:data:`RECALLED_QUOTE`)."""
    found = _checked(target, seq, joined_seq, "replied to")
    body = found.body
    kind = next((k for k in QUOTED_KINDS if k in body), "text")
    quote: dict[str, Any] = {"seq": seq, "sender": found.sender, "kind": kind}
    text = body.get("text")
    if isinstance(text, str):
        text = " ".join(text.split())
        quote["text"] = text if len(text) <= chars else text[:max(chars - 1, 0)] + "…"
    return quote


def recalled_quote(body: dict[str, Any]) -> dict[str, Any]:
    """A reply's body once the message it quotes is recalled: the quote keeps only which message and whose."""
    quote = body.get("reply")
    if not isinstance(quote, dict):
        return body
    return {**body, "reply": {"seq": quote.get("seq"), "sender": quote.get("sender"), **RECALLED_QUOTE}}


def check_thread_root(target: Target | None, seq: int, joined_seq: int, *, group: bool) -> Target:
    """A thread hangs under a group message that is not itself in a thread (threads do not nest)."""
    if not group:
        raise Forbidden("threads are for group conversations")
    found = _checked(target, seq, joined_seq, "the root of a thread")
    if "thread" in found.body:
        raise BadRequest("a thread message cannot be the root of another thread")
    return found


def thread_info(body: dict[str, Any], seq: int, ts: int) -> dict[str, Any]:
    """The root's body with its thread summary counting one more message, ``seq`` at ``ts``."""
    info = body.get("thread_info")
    count = info.get("count", 0) if isinstance(info, dict) else 0
    return {**body, "thread_info": {"count": count + 1, "last_seq": seq, "last_ts": ts}}


def check_mention_all(*, group: bool, role: str, members: int, limit: int) -> None:
    if not group:
        raise BadRequest("@all is for group conversations")
    if members > limit and role not in ("owner", "admin"):
        raise Forbidden(f"in a group of more than {limit} members only admins may mention @all")
