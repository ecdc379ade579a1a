"""A file's type, from its bytes (libmagic, the library behind file(1)), never from what the client declared."""

from __future__ import annotations

from typing import Final

import magic

HEAD_BYTES: Final = 64 * 1024
"""How much of a file is read to know its type: enough for libmagic's container formats (Office files are zips whose
first entries name their kind)."""

INLINE: Final = frozenset({
    "image/png", "image/jpeg", "image/gif", "image/webp", "image/avif",
    "audio/ogg", "audio/mpeg", "audio/mp4", "audio/webm", "audio/wav", "audio/x-wav", "audio/aac", "audio/flac",
    "video/mp4", "video/webm", "video/ogg", "video/quicktime",
    "application/pdf", "text/plain",
})
"""Types a browser may show in place. Everything else is sent as an attachment: an uploaded HTML or SVG page must
never run as a page of Pica's origin."""


def sniff(head: bytes) -> str:
    """The MIME type of a file that starts with ``head``; ``application/octet-stream`` when unknown."""
    if not head:
        return "application/octet-stream"
    found = magic.from_buffer(head, mime=True)
    return found if isinstance(found, str) and "/" in found else "application/octet-stream"
