"""The first web link of a message's text: which URL a link preview is made for (docs/protocol.md section 30).

Pure, and shared by the store (which writes a preview job for a message with a link, in the message's own
transaction) and by clients that want to know which link a preview belongs to. Only ``http://`` and ``https://``
links count; a bare ``www.`` has no scheme to fetch with.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

MAX_URL_CHARS: Final = 2048
"""A longer link is not previewed (and would not fit in a cache key worth keeping)."""

_URL: Final = re.compile(r"https?://[!#-&(-;=?-_a-~]+", re.IGNORECASE)
"""Printable ASCII but quotes, backquote, ``<`` and ``>``: a link ends at a space or at the first other character,
so a full-width comma right after it (Chinese text) ends it (a non-ASCII path must be percent-encoded)."""
_TRAILING: Final = ".,;:!?)]}"
"""Punctuation that ends a sentence rather than the link (``see https://x.org/a.``)."""


def first_link(text: str) -> str | None:
    """The first http(s) URL in ``text``, trailing punctuation dropped; None when there is none (or it is too long).
    An unbalanced closing parenthesis is punctuation; a balanced one (Wikipedia's ``Foo_(bar)``) is the URL's."""
    match = _URL.search(text)
    if match is None:
        return None
    url = match.group(0)
    while url and url[-1] in _TRAILING:
        if url[-1] == ")" and url.count("(") >= url.count(")"):
            break
        url = url[:-1]
    if len(url) > MAX_URL_CHARS or "://" not in url or url.endswith("://"):
        return None
    return url


def link_of(body: Mapping[str, Any]) -> str | None:
    """The link a message body is previewed for: the first link of its ``text`` (a text message or a caption)."""
    text = body.get("text")
    if not isinstance(text, str) or "http" not in text.lower():
        return None
    return first_link(text)
