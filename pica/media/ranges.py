"""HTTP byte ranges (RFC 9110 section 14): which part of a file a ``Range`` header asks for. Pure."""

from __future__ import annotations

import re
from typing import Final

_SINGLE: Final = re.compile(r"bytes=(\d*)-(\d*)")


class Unsatisfiable(ValueError):
    """A range that starts past the end (answered 416 with ``Content-Range: bytes */<size>``)."""


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, end exclusive) for a single range, or None for the whole file: no header, a header this server does
    not honour (several ranges, another unit, bad syntax: RFC 9110 lets a server ignore it and answer 200)."""
    if header is None:
        return None
    match = _SINGLE.fullmatch(header.strip())
    if match is None or match[1] == match[2] == "":
        return None
    if match[1] == "":  # the last N bytes
        suffix = int(match[2])
        if suffix == 0:
            raise Unsatisfiable(header)
        return max(0, size - suffix), size
    start = int(match[1])
    end = size if match[2] == "" else min(int(match[2]) + 1, size)
    if start >= size:
        raise Unsatisfiable(header)
    if end <= start:
        return None  # "bytes=5-2": invalid, ignored
    return start, end
