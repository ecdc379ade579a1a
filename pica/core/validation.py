"""Validation of user input that the frame schema alone cannot express."""

from __future__ import annotations

import re
from typing import Any, Final

import msgspec

from pica.config import LimitsConfig
from pica.errors import BadRequest, InvalidUsername, WeakPassword
from pica.protocol.text import has_control_chars

USERNAME_RE: Final = re.compile(r"[a-z0-9_][a-z0-9_.-]{2,31}")
"""Matched whole (``fullmatch``): with ``match`` and ``$``, a trailing newline slipped through, so "bob\n" was a
second, look-alike "bob"."""
MAX_PASSWORD_BYTES: Final = 1024
MAX_SAFE_INTEGER: Final = 2**53 - 1

_json_encode: Final = msgspec.json.Encoder().encode


def normalize_username(username: object) -> str:
    """Usernames are case-insensitive: 3-32 of a-z 0-9 _ . -, not starting with . or -; stored lower-case."""
    if not isinstance(username, str) or not USERNAME_RE.fullmatch(username.lower()):
        raise InvalidUsername("a username is 3-32 characters of a-z, 0-9, '_', '.', '-', not starting with '.' or '-'")
    return username.lower()


def check_password(password: object, min_length: int) -> str:
    if not isinstance(password, str):
        raise WeakPassword("password must be a string")
    if len(password) < min_length:
        raise WeakPassword(f"password must have at least {min_length} characters")
    if len(password.encode()) > MAX_PASSWORD_BYTES:
        raise WeakPassword(f"password must be at most {MAX_PASSWORD_BYTES} bytes")
    if len(set(password)) < 4:
        raise WeakPassword("password must use at least 4 different characters")
    return password


_ESTIMATED_CHARS: Final = 72
"""zxcvbn's own limit; a password longer than this is judged by its beginning (length alone is strength by then)."""


def check_password_guessability(password: str, username: str, min_score: int) -> None:
    """NIST 800-63B's list check, by the zxcvbn estimator (its dictionaries of common passwords, words and names,
    keyboard patterns, dates, l33t substitutions): refuse a password scoring under ``min_score`` (0 skips it), and
    one equal to the username whatever the score. About 2-5 ms of CPU: run it off the event loop."""
    if password.casefold() == username.casefold():
        raise WeakPassword("password must not be the username")
    if min_score <= 0:
        return
    from zxcvbn import zxcvbn  # imported on first use: a node that registers nobody never loads its dictionaries

    verdict = zxcvbn(password[:_ESTIMATED_CHARS], user_inputs=[username])
    if verdict["score"] < min_score:
        warning = verdict["feedback"].get("warning") or "it is too easy to guess"
        raise WeakPassword(f"password is too easy to guess: {warning.rstrip('.')}")


CONTENT_KINDS: Final = ("text", "file", "image", "voice", "custom")
FILE_KINDS: Final = ("file", "image", "voice")
"""Bodies that reference an uploaded file (``{"<kind>": {"id": <file_id>, ...}}``)."""
MAX_VOICE_MS: Final = 3_600_000
MAX_WAVEFORM: Final = 100
SERVER_ONLY_KEYS: Final = ("system", "recall", "edit", "deleted", "recalled", "edited", "call", "forwarded", "reaction",
                            "reactions", "thread_info", "preview", "link_preview")


def validate_body(body: object, limits: LimitsConfig) -> tuple[dict[str, Any], bytes]:
    """A message body is a JSON object with exactly one content key (docs/protocol.md, "Message bodies"):

    - ``{"text": str, "mentions"?: [user_id, ...]}``: text, optionally mentioning users;
    - ``{"file": {"id"}, "text"?: caption}``: an uploaded file (the server fills in its name, type and size);
    - ``{"image": {"id"}, "text"?: caption}``: an uploaded image (and its dimensions, placeholder, thumbnails);
    - ``{"voice": {"id", "duration_ms", "waveform"?}}``: a recorded voice note;
    - ``{"custom": <any JSON>, "type"?: str}``: application data.

    ``system``, ``recall``, ``edit`` and the state markers are the server's; other top-level keys are kept as
    metadata. Bytes (a MessagePack bin), non-finite numbers, integers beyond ±(2**53 - 1) and nesting deeper than
    ``max_body_depth`` are rejected. Returns the body and its JSON encoding (what the store keeps)."""
    if not isinstance(body, dict):
        raise BadRequest("body must be an object")
    _check_json(body, limits.max_body_depth)
    for key in SERVER_ONLY_KEYS:
        if key in body:
            raise BadRequest(f"body.{key} is set by the server only")
    kinds = [k for k in (*FILE_KINDS, "custom") if k in body]
    if len(kinds) > 1 or (("custom" in body or "voice" in body) and "text" in body):
        raise BadRequest("body needs exactly one of 'text', 'file', 'image', 'voice', 'custom'")
    if not kinds and "text" not in body:
        raise BadRequest("body needs 'text', 'file', 'image', 'voice' or 'custom'")
    if "text" in body:
        text = body["text"]
        if not isinstance(text, str) or not text.strip():
            raise BadRequest("body.text must be a non-empty string")
        if len(text) > limits.max_text_chars:
            raise BadRequest(f"body.text is longer than {limits.max_text_chars} characters")
    if "mentions" in body:
        mentions = body["mentions"]
        if not isinstance(mentions, list) or len(mentions) > 100 or not all(
            isinstance(m, int) and not isinstance(m, bool) and m > 0 for m in mentions
        ):
            raise BadRequest("body.mentions must be a list of at most 100 user ids")
    for kind in FILE_KINDS:
        if kind in body:
            _check_file(body[kind], kind)
    if "type" in body and not isinstance(body["type"], str):
        raise BadRequest("body.type must be a string")
    encoded = _json_encode(body)
    if len(encoded) > limits.max_body_bytes:
        raise BadRequest(f"body is {len(encoded)} bytes, more than the limit of {limits.max_body_bytes}")
    return body, encoded


def _check_file(ref: object, kind: str) -> None:
    """The client's part of a file reference: the id (what the file is, the server fills in), and for a voice note
    what only the recording device knows: its duration and a waveform summary."""
    if not isinstance(ref, dict):
        raise BadRequest(f"body.{kind} must be an object")
    file_id = ref.get("id")
    if not isinstance(file_id, str) or not 1 <= len(file_id) <= 64:
        raise BadRequest(f"body.{kind}.id must be the id of an uploaded file (POST /v1/files)")
    if kind != "voice":
        return
    duration = ref.get("duration_ms")
    if not isinstance(duration, int) or isinstance(duration, bool) or not 0 < duration <= MAX_VOICE_MS:
        raise BadRequest(f"body.voice.duration_ms must be an integer from 1 to {MAX_VOICE_MS}")
    waveform = ref.get("waveform", [])
    if not isinstance(waveform, list) or len(waveform) > MAX_WAVEFORM or not all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in waveform):
        raise BadRequest(f"body.voice.waveform must be a list of at most {MAX_WAVEFORM} integers from 0 to 255")


def check_client_msg_id(client_msg_id: object) -> str:
    """1-64 characters; ids starting with ``~`` are the server's own (notices, deletions)."""
    if not isinstance(client_msg_id, str) or not 1 <= len(client_msg_id) <= 64:
        raise BadRequest("client_msg_id must be a string of 1-64 characters")
    if client_msg_id.startswith("~"):
        raise BadRequest("client_msg_id must not start with '~'")
    if has_control_chars(client_msg_id):
        raise BadRequest("client_msg_id must not contain control characters")
    return client_msg_id


def _check_json(value: object, depth_left: int) -> None:
    if depth_left < 0:
        raise BadRequest("body is nested too deeply")
    if value is None or isinstance(value, (bool, str)):
        return
    if isinstance(value, int):
        if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            raise BadRequest("body integers must be within ±(2**53 - 1), the range every client can represent")
        return
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise BadRequest("body numbers must be finite")
        return
    if isinstance(value, dict):
        for key, inner in value.items():
            if not isinstance(key, str):
                raise BadRequest("body keys must be strings")
            _check_json(inner, depth_left - 1)
        return
    if isinstance(value, list):
        for inner in value:
            _check_json(inner, depth_left - 1)
        return
    raise BadRequest(f"body holds a value JSON cannot carry ({type(value).__name__})")
