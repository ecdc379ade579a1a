"""What a client may say about reactions, replies, threads and mentions (docs/protocol.md section 28), checked
before anything reaches the store; the rules that need stored messages are :mod:`pica.store.reaction_rules`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pica.errors import BadRequest
from pica.protocol.text import has_control_chars

_MAX_SEQ = 2**53 - 1


@dataclass(frozen=True, slots=True)
class Links:
    """The messages and people a validated body names."""

    reply_seq: int = 0
    thread_root: int = 0
    mentions: tuple[int, ...] = ()
    mention_all: bool = False


def _seq(value: object, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= _MAX_SEQ:
        raise BadRequest(f"{where} must be the seq of a message of the conversation")
    return value


def links_of(body: dict[str, Any]) -> Links | None:
    """The links of a validated body, None when it names nothing (the plain send path). ``reply`` is
    ``{"seq": N}`` (the server writes the rest of the quote), ``thread`` is ``{"root": N}``, ``mention_all`` is
    ``true``; other keys the client put in ``reply`` or ``thread`` are dropped."""
    reply, thread, everyone = body.get("reply"), body.get("thread"), body.get("mention_all")
    mentions = body.get("mentions")
    if reply is None and thread is None and everyone is None and not mentions:
        return None
    if reply is not None and not isinstance(reply, dict):
        raise BadRequest("body.reply must be an object {\"seq\": N}")
    if thread is not None and not isinstance(thread, dict):
        raise BadRequest("body.thread must be an object {\"root\": N}")
    if everyone is not None and everyone is not True:
        raise BadRequest("body.mention_all must be true when present")
    return Links(
        reply_seq=_seq(reply.get("seq"), "body.reply.seq") if reply is not None else 0,
        thread_root=_seq(thread.get("root"), "body.thread.root") if thread is not None else 0,
        mentions=tuple(mentions) if isinstance(mentions, list) else (),
        mention_all=everyone is True,
    )


def linked_body(body: dict[str, Any], links: Links) -> dict[str, Any]:
    """The body as the store starts from: ``reply`` and ``thread`` cut to what the client may say."""
    shaped = dict(body)
    if links.reply_seq:
        shaped["reply"] = {"seq": links.reply_seq}
    if links.thread_root:
        shaped["thread"] = {"root": links.thread_root}
    return shaped


def check_emoji(emoji: object, max_chars: int) -> str:
    """A reaction is a short string: 1 to ``max_chars`` code points, no control characters, not blank. Which
    strings are emoji is left to clients (new emoji appear every year)."""
    if not isinstance(emoji, str) or not emoji.strip() or len(emoji) > max_chars or has_control_chars(emoji):
        raise BadRequest(f"a reaction must be 1 to {max_chars} characters, not blank, without control characters")
    return emoji
