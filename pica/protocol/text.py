"""Checks on client-supplied text that every store backend must be able to keep as it is. (What search indexes of a
body is :func:`pica.protocol.tokens.document`, the same when a message is stored and when it is edited.)"""

from __future__ import annotations

import re
from typing import Final

_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")
"""C0 and C1 control characters. NUL is the one that matters most: PostgreSQL text cannot hold it at all."""


def has_control_chars(text: str) -> bool:
    return _CONTROL.search(text) is not None
