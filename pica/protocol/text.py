"""Checks on client-supplied text that every store backend must be able to keep as it is, and the words of a body
that search indexes (the same rule when a message is stored and when it is edited)."""

from __future__ import annotations

import re
from typing import Any, Final

_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")
"""C0 and C1 control characters. NUL is the one that matters most: PostgreSQL text cannot hold it at all."""


def has_control_chars(text: str) -> bool:
    return _CONTROL.search(text) is not None


def search_text(body: dict[str, Any]) -> str:
    """The words full-text search indexes for a body: its text (or caption) and a file's or image's name."""
    parts = [body["text"]] if isinstance(body.get("text"), str) else []
    for kind in ("file", "image"):
        ref = body.get(kind)
        if isinstance(ref, dict) and isinstance(ref.get("name"), str):
            parts.append(ref["name"])
    return " ".join(parts)
