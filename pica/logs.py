"""Logging set-up: text for people, one JSON object per line for log shippers. Fields passed with ``extra=`` are
kept as structured fields. Never log a token, a password or a message body.

Logs must not be a lever against the node: whatever a client can make the node log is rate-limited
(:class:`RepeatFilter`), and what a client did wrong is one line, never a traceback (:class:`BadHttpRequestFilter`
for aiohttp's parser; our own code logs a client's error without ``exc_info``).
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit, urlunsplit

REPEAT_BURST: Final = 5
"""Records with the same (logger, level, message template) let through per window; the rest are only counted."""

REPEAT_WINDOW: Final = 10.0
"""Seconds of one window: the first record of a key starts it, and the count of what it suppressed is logged at
the first record of any key after it ends."""

REPEAT_MAX_KEYS: Final = 1024
"""Keys tracked at once; a new key beyond it ends the oldest window early. Bounds the filter's memory, whatever
messages a client manages to produce."""

_TEMPLATE_CHARS: Final = 200
"""The length of a message template kept as a key (a library may log preformatted text of any length)."""

_SUMMARY: Final = "_pica_repeat_summary"
"""Marks the filter's own "suppressed K similar messages" records (a leading underscore keeps it out of the
output)."""


AUDIT: Final = logging.getLogger("pica.audit")
"""Security events, one structured line each, on a logger of their own so that operators can route them apart
(``logging`` configuration, or a filter on ``logger = "pica.audit"`` in the JSON lines)."""


def audit(event: str, **fields: object) -> None:
    """Record a security event (``login_failed``, ``login_refused``, ``user_banned``, ...) with its fields: the user
    or account name, the client address, the reason. Never a password or a token."""
    AUDIT.warning(event, extra={"event": event, **fields})


def redact_url(url: str) -> str:
    """The URL with its password masked (a store or Redis URL may carry one), for logs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def _fields(record: logging.LogRecord) -> dict[str, object]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-5s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extra = _fields(record)
        if extra:
            text += " " + " ".join(f"{k}={v}" for k, v in extra.items())
        return text


@dataclass(slots=True)
class _Window:
    started: float
    seen: int = 0


class RepeatFilter(logging.Filter):
    """Lets the first ``burst`` records of each (logger, level, message template) through per ``window`` seconds
    and counts the rest. When a window with suppressed records ends (noticed at the next record of any key), one
    record "suppressed K similar messages" stands for them: same logger and level, fields ``suppressed`` and
    ``template``. A client that can make the node log something (a refused request, a bad frame) can then neither
    fill the disk nor bury every other line, and an operator still sees that it happened and how often.

    Memory is bounded by ``max_keys`` windows; a new key beyond it ends the oldest window early. Thread-safe:
    threads of the process log through the same handler."""

    def __init__(self, burst: int = REPEAT_BURST, window: float = REPEAT_WINDOW, max_keys: int = REPEAT_MAX_KEYS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._burst = burst
        self._window = window
        self._max_keys = max_keys
        self._clock = clock
        self._windows: OrderedDict[tuple[str, int, str], _Window] = OrderedDict()  # oldest window first
        self._lock = threading.Lock()

    @property
    def keys(self) -> int:
        """How many keys are tracked now."""
        return len(self._windows)

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, _SUMMARY, False):
            return True
        key = (record.name, record.levelno, str(record.msg)[:_TEMPLATE_CHARS])
        with self._lock:
            now = self._clock()
            ended = []
            while self._windows:  # windows start in insertion order, so the ended ones are at the front
                first_key, first = next(iter(self._windows.items()))
                if now - first.started < self._window:
                    break
                ended.append((first_key, self._windows.pop(first_key)))
            window = self._windows.get(key)
            if window is None:
                if len(self._windows) >= self._max_keys:
                    ended.append(self._windows.popitem(last=False))
                window = self._windows[key] = _Window(now)
            window.seen += 1
            passes = window.seen <= self._burst
        # Outside the lock: the summaries come back through this filter (and pass it).
        for (name, level, template), ended_window in ended:
            if ended_window.seen > self._burst:
                suppressed = ended_window.seen - self._burst
                logging.getLogger(name).log(level, "suppressed %d similar messages", suppressed,
                                            extra={_SUMMARY: True, "suppressed": suppressed, "template": template})
        return passes


def _is_bad_http_message(exc: BaseException | None) -> bool:
    """An error of aiohttp's HTTP parser (by name: importing aiohttp here would slow every command down)."""
    return any(f"{cls.__module__}.{cls.__qualname__}" == "aiohttp.http_exceptions.BadHttpMessage"
               for cls in type(exc).__mro__)


class BadHttpRequestFilter(logging.Filter):
    """aiohttp logs a request its parser refused (an over-long header line, a bad URL or method, broken framing)
    at ERROR with a traceback (a bad method as the first request at DEBUG), and answers 400 itself. That is the
    client's error, not the node's: it becomes one line, at INFO at most, naming the error's class, without the
    traceback and the client's bytes it quotes."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != "aiohttp.server" or not record.exc_info or not _is_bad_http_message(record.exc_info[1]):
            return True
        remote = record.args[0] if isinstance(record.args, tuple) and record.args else None
        record.msg, record.args = "refused a malformed HTTP request", None
        record.remote, record.error = remote, type(record.exc_info[1]).__name__
        record.exc_info, record.exc_text = None, None
        level = min(record.levelno, logging.INFO)  # aiohttp logs some at DEBUG already
        record.levelno, record.levelname = level, logging.getLevelName(level)
        return logging.getLogger(record.name).isEnabledFor(level)  # it passed the level check at its old level


def configure(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(BadHttpRequestFilter())
    handler.addFilter(RepeatFilter())  # after the rewrite above, so that it counts the rewritten lines
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
