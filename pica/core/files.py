"""What a message says about the file it carries: the rules that turn a client's reference into the truth.

A client names an uploaded file by its id; every fact about the file in the stored body comes from the upload (what
the server sniffed, measured and made), never from the client, so a peer can trust the size before downloading and
the type before rendering.
"""

from __future__ import annotations

from typing import Any

from pica.core.validation import FILE_KINDS
from pica.store.base import FileRecord


def referenced_file(body: dict[str, Any]) -> tuple[str, str] | None:
    """(kind, file id) of a validated body that carries a file, or None."""
    for kind in FILE_KINDS:
        if kind in body:
            return kind, body[kind]["id"]
    return None


def with_truth(body: dict[str, Any], kind: str, record: FileRecord) -> dict[str, Any]:
    """The body with its file reference rewritten from the upload: id, name, type, size, and what the server learned
    of an image (dimensions, placeholder, thumbnail sizes). A voice note keeps its duration and waveform."""
    ref: dict[str, Any] = {"id": record.file_id, "name": record.name, "mime": record.content_type,
                           "size": record.size}
    if kind == "image":
        ref.update({key: record.meta[key] for key in ("width", "height", "placeholder", "thumbnails")
                    if key in record.meta})
    if kind == "voice":
        client = body["voice"]
        ref["duration_ms"] = client["duration_ms"]
        ref["waveform"] = client.get("waveform", [])
    return {**body, kind: ref}
