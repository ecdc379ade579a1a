"""Text shared by ``pica chat`` and the admin commands: message bodies, group notices, tables, times, fixed texts."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

HELP: Final = """commands:
  /list                 conversations: name, unread, last message
  /open NAME            1:1 conversation with a user       /open #ID   a group       /open N   N-th of /list
  /more                 older messages of the open conversation
  /who                  presence of the open conversation's peer (or the group's members)
  /group NAME u1,u2     create a group with these users and open it
  /add USER...          add users to the open group
  /read                 mark the open conversation read
  /send PATH [caption]  upload a file and send it to the open conversation
  /save N [PATH]        save the file of message #N of the open conversation (to its own name, or PATH)
  /forward N[,M] TO     forward messages #N,#M to users or #GROUP_IDs (comma-separated)
  /pin N  /unpin N      pin or unpin message #N (groups: owner and admins)      /pins   the pinned messages
  /draft [TEXT]         save my draft here (my other devices see it); alone: clear it
  /top /untop           pin to or unpin from the top of /list   /archive /unarchive   /unread   mark unread
  /mute [HOURS] /unmute no notifications from here (default 8 hours)
  /react N EMOJI        react to message #N (/unreact N EMOJI takes it back)
  /reply N TEXT         reply to message #N with a quote of it
  /thread N [TEXT]      show the thread under group message #N, or write TEXT in it
  /unpreview N          remove the link preview of my message #N
  /quit                 leave (also Ctrl-D)
anything else is sent to the open conversation (start it with // to send a leading /)"""

CONTACT_STATES: Final = {
    "incoming": "* {who} asks to be your contact",
    "outgoing": "* contact request sent to {who}",
    "accepted": "* {who} is now a contact",
    "none": "* {who} is no longer a contact",
}

NameOf = Callable[[int], str]
"""user id -> display name (a username, or ``user#ID`` when it is not known)."""


def clock(ts_ms: int) -> str:
    """HH:MM for today, otherwise YYYY-MM-DD HH:MM (local time)."""
    if ts_ms <= 0:
        return "never"
    moment = time.localtime(ts_ms / 1000)
    if time.strftime("%Y-%m-%d", moment) == time.strftime("%Y-%m-%d"):
        return time.strftime("%H:%M", moment)
    return time.strftime("%Y-%m-%d %H:%M", moment)


def stamp(ts_ms: int) -> str:
    """YYYY-MM-DD HH:MM (local time), for tables that outlive the day."""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts_ms / 1000)) if ts_ms > 0 else "-"


def _size(n: object) -> str:
    if not isinstance(n, int) or isinstance(n, bool):
        return "?"
    value = float(n)
    for unit in ("B", "KB", "MB"):
        if value < 1024:
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def content(body: dict[str, Any]) -> str:
    """What a user message says, on one line (newlines shown as ⏎ so a message stays one line)."""
    if body.get("deleted"):
        return "(deleted)"
    if body.get("recalled"):
        return "(recalled)"
    parts: list[str] = []
    for kind in ("file", "image"):
        item = body.get(kind)
        if isinstance(item, dict):
            parts.append(f"[{kind} {item.get('name', '?')} ({_size(item.get('size'))})]")
    voice = body.get("voice")
    if isinstance(voice, dict) and isinstance(voice.get("duration_ms"), int):
        seconds = round(voice["duration_ms"] / 1000)
        parts.append(f"[voice note {seconds // 60}:{seconds % 60:02d}]")
    if "custom" in body:
        data_type = body.get("type")
        parts.append(f"[custom{' ' + data_type if isinstance(data_type, str) else ''}] "
                     f"{json.dumps(body['custom'], ensure_ascii=False)[:200]}")
    text = body.get("text")
    if isinstance(text, str):
        parts.append(text.replace("\r\n", "\n").replace("\n", " ⏎ "))
    if not parts:
        parts.append(json.dumps(body, ensure_ascii=False)[:200])
    if body.get("edited"):
        parts.append("(edited)")
    card = preview_card(body.get("link_preview"))
    if card:
        parts.append(card)
    return " ".join(parts)


def links(body: dict[str, Any], name_of: NameOf) -> tuple[str, str]:
    """(before, after) the content of a message: the quote it replies with, its thread, its reactions and who it
    mentions (docs/protocol.md section 28)."""
    before, after = "", []
    quote = body.get("reply")
    if isinstance(quote, dict):
        who = name_of(quote["sender"]) if isinstance(quote.get("sender"), int) else "?"
        said = "(recalled)" if quote.get("recalled") else str(quote.get("text") or f"[{quote.get('kind', '?')}]")
        before = f"[↪ #{quote.get('seq')} {who}: {said}] "
    thread = body.get("thread")
    if isinstance(thread, dict):
        before = f"[thread #{thread.get('root')}] " + before
    if body.get("mention_all") is True:
        after.append("@all")
    info = body.get("thread_info")
    if isinstance(info, dict):
        after.append(f"[{info.get('count', 0)} in thread: /thread N]")
    reactions = body.get("reactions")
    if isinstance(reactions, dict) and reactions:
        after.append("[" + " ".join(f"{emoji} {len(ids)}" for emoji, ids in reactions.items()
                                    if isinstance(ids, list)) + "]")
    return before, "".join(" " + part for part in after)


def preview_card(preview: object) -> str:
    """A link preview on one line (docs/protocol.md section 30); empty for none or a removed one."""
    if not isinstance(preview, dict) or preview.get("removed"):
        return ""
    words = [str(preview[k]) for k in ("title", "site_name") if isinstance(preview.get(k), str)]
    description = preview.get("description")
    if isinstance(description, str):
        words.append(description if len(description) <= 80 else description[:79] + "…")
    return f"[{' · '.join(words)}]" if words else ""


def _people(event: dict[str, Any], name_of: NameOf) -> str:
    ids = event.get("user_ids")
    if isinstance(ids, list):
        return ", ".join(name_of(i) for i in ids if isinstance(i, int)) or "nobody"
    return f"{event.get('count', '?')} users"


def notice(sender: str, body: dict[str, Any], name_of: NameOf) -> str | None:
    """A system notice, recall, edit or reaction as a sentence; None for an ordinary message."""
    if isinstance(body.get("reaction"), dict):
        reaction = body["reaction"]
        verb = "reacted {} to" if reaction.get("add") else "took back {} on"
        return f"* {sender} {verb.format(reaction.get('emoji'))} message #{reaction.get('seq')}"
    if isinstance(body.get("recall"), dict):
        return f"* {sender} recalled message #{body['recall'].get('seq')}"
    if isinstance(body.get("edit"), dict):
        edit = body["edit"]
        if not isinstance(edit.get("text"), str):  # the edit of a message recalled since: its text is gone
            return f"* {sender} edited message #{edit.get('seq')} (recalled since)"
        return f"* {sender} edited message #{edit.get('seq')}: {edit['text']}"
    if isinstance(body.get("preview"), dict):
        preview = body["preview"]
        if preview.get("removed"):
            return f"* {sender} removed the link preview of message #{preview.get('seq')}"
        if preview.get("recalled"):
            return f"* link preview of message #{preview.get('seq')} (recalled since)"
        return f"* link preview of message #{preview.get('seq')}: {preview_card(preview)}"
    event = body.get("system")
    if not isinstance(event, dict):
        return None
    kind = str(event.get("event", "?"))
    by = name_of(event["by"]) if isinstance(event.get("by"), int) else sender
    sentences = {
        "created": lambda: f'{by} created the group "{event.get("name", "")}" with {_people(event, name_of)}',
        "members_added": lambda: f"{by} added {_people(event, name_of)}",
        "members_removed": lambda: f"{by} removed {_people(event, name_of)}",
        "member_left": lambda: f"{_people(event, name_of)} left",
        "role_changed": lambda: f"{by} made {_people(event, name_of)} {event.get('role', '?')}",
        "owner_changed": lambda: f"{by} handed ownership to {name_of(int(event.get('user_id', 0)))}",
        "renamed": lambda: f'{by} renamed the group to "{event.get("name", "")}"',
        "muted": lambda: f"{by} muted {_people(event, name_of)}",
        "unmuted": lambda: f"{by} unmuted {_people(event, name_of)}",
        "group_muted": lambda: f"{by} muted the group",
        "group_unmuted": lambda: f"{by} unmuted the group",
        "dissolved": lambda: f"{by} dissolved the group",
        "deleted": lambda: f"you deleted message #{event.get('seq')} of {event.get('conversation_id')}",
        "removed_from_group": lambda: f'{by} removed you from the group "{event.get("name", "")}"',
        "pinned": lambda: f"{by} pinned message #{event.get('seq')}",
        "unpinned": lambda: f"{by} unpinned message #{event.get('seq')}",
    }
    sentence = sentences.get(kind)
    return "* " + (sentence() if sentence else f"{kind} ({json.dumps(event, ensure_ascii=False)[:200]})")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Columns padded to their widest cell; the last column is not padded (no trailing blanks)."""
    cells = [[str(c) for c in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        padded = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])] + [row[-1]]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines)
