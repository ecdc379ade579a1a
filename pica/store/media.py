"""Uploaded files, written once for both dialects (see :mod:`pica.store.txn`; docs/protocol.md, "Files").

A file row is one upload; its bytes are a *blob* named by their sha256, shared by every upload of the same content.
A message that references files writes ``file_refs`` rows in its own transaction (:func:`refs_of`, called by
:func:`pica.store.messages.append_batch`), and those rows are what lets members download: the same floor as the
timeline (``seq > joined_seq`` of a current membership). A recall deletes its message's rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import msgspec

from pica.errors import Forbidden, QuotaExceeded
from pica.store.base import FileRecord, FileSweep, UploadRecord
from pica.store.txn import Dialect, Read, Statement, Txn, Write

_meta_json: Final = msgspec.json.Encoder().encode
_meta_decode: Final = msgspec.json.Decoder(dict[str, Any]).decode

_FILE_COLUMNS: Final = "f.file_id, f.owner, f.sha256, f.size, f.content_type, f.name, f.created_at, f.meta"


def _file(row: Sequence[Any]) -> FileRecord:
    return FileRecord(row[0], row[1], row[2], row[3], row[4], row[5], row[6], _meta_decode(row[7]))


def reserve_blob(sha256: str, now_ms: int) -> Txn[None]:
    yield Write("reserve_blob", ([sha256], [now_ms]))


def add_file(record: FileRecord, quota_bytes: int) -> Txn[None]:
    used = (yield Read("file_usage", (record.owner,)))[0][0] or 0
    if used + record.size > quota_bytes:
        raise QuotaExceeded(f"your files would take {used + record.size} bytes, more than your quota of "
                            f"{quota_bytes}")
    yield Write("insert_file", ([record.file_id], [record.owner], [record.sha256], [record.size],
                                [record.content_type], [record.name], [record.created_at],
                                [_meta_json(record.meta).decode()]))


def file_usage(owner: int) -> Txn[int]:
    return int((yield Read("file_usage", (owner,)))[0][0] or 0)


def readable_file(file_id: str, user_id: int) -> Txn[FileRecord | None]:
    rows = yield Read("readable_file", (file_id, user_id))
    return _file(rows[0]) if rows else None


def refs_of(rows: Sequence[tuple[str, str, int]]) -> Txn[None]:
    """The (file id, conversation id, seq) references of messages being stored, in their transaction."""
    yield Write("insert_file_refs", tuple([row[i] for row in rows] for i in range(3)))


def drop_refs(conversation_id: str, seq: int) -> Txn[None]:
    """A recalled message no longer gives access to its files."""
    yield Write("delete_file_refs", ([conversation_id], [seq]))


def open_upload(record: UploadRecord, max_open: int) -> Txn[None]:
    count = (yield Read("open_uploads", (record.owner,)))[0][0]
    if count >= max_open:
        raise Forbidden(f"you have {count} unfinished uploads, the most allowed (media.max_open_uploads): finish "
                        "or cancel one")
    yield Write("insert_upload", ([record.upload_id], [record.owner], [record.length], [record.received],
                                  [record.name], [record.created_at], [record.touched_at]))


def get_upload(upload_id: str, owner: int) -> Txn[UploadRecord | None]:
    rows = yield Read("get_upload", (upload_id, owner))
    return UploadRecord(*rows[0]) if rows else None


def touch_upload(upload_id: str, received: int, now_ms: int) -> Txn[None]:
    yield Write("touch_upload", ([upload_id], [received], [now_ms]))


def end_upload(upload_id: str) -> Txn[None]:
    yield Write("delete_upload", ([upload_id],))


def sweep(unreferenced_before: int, abandoned_before: int, limit: int) -> Txn[FileSweep]:
    doomed = yield Read("unreferenced_files", (unreferenced_before, limit))
    ids = [row[0] for row in doomed]
    yield Write("delete_file", (ids,))
    orphans = yield Read("orphan_blobs", (unreferenced_before, limit))
    blobs = [row[0] for row in orphans]
    yield Write("delete_blob", (blobs,))
    uploads = [row[0] for row in (yield Read("abandoned_uploads", (abandoned_before, limit)))]
    yield Write("delete_upload", (uploads,))
    return FileSweep(len(ids), blobs, uploads)


_READABLE: Final = (
    "SELECT {columns} FROM files f WHERE f.file_id = {file} AND (f.owner = {user} OR EXISTS ("
    "SELECT 1 FROM file_refs r JOIN members m ON m.conversation_id = r.conversation_id AND m.user_id = {user}"
    " WHERE r.file_id = f.file_id AND r.seq > m.joined_seq))"
)
_UNREFERENCED: Final = (
    "SELECT f.file_id FROM files f WHERE f.created_at < {before}"
    " AND NOT EXISTS (SELECT 1 FROM file_refs r WHERE r.file_id = f.file_id) ORDER BY f.created_at LIMIT {limit}"
)
_ORPHANS: Final = (
    "SELECT b.sha256 FROM blobs b WHERE b.last_put < {before}"
    " AND NOT EXISTS (SELECT 1 FROM files f WHERE f.sha256 = b.sha256) LIMIT {limit}"
)

SQLITE: Final[Dialect] = {
    "reserve_blob": Statement(
        "INSERT INTO blobs (sha256, last_put) VALUES (?1, ?2) ON CONFLICT (sha256) DO UPDATE SET last_put = ?2"
    ),
    "file_usage": Statement("SELECT sum(size) FROM files WHERE owner = ?"),
    "insert_file": Statement(
        "INSERT INTO files (file_id, owner, sha256, size, content_type, name, created_at, meta)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    ),
    "readable_file": Statement(_READABLE.format(columns=_FILE_COLUMNS, file="?1", user="?2")),
    "insert_file_refs": Statement(
        "INSERT INTO file_refs (file_id, conversation_id, seq) VALUES (?, ?, ?) ON CONFLICT DO NOTHING"
    ),
    "delete_file_refs": Statement("DELETE FROM file_refs WHERE conversation_id = ? AND seq = ?"),
    "open_uploads": Statement("SELECT count(*) FROM uploads WHERE owner = ?"),
    "insert_upload": Statement(
        "INSERT INTO uploads (upload_id, owner, length, received, name, created_at, touched_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)"
    ),
    "get_upload": Statement(
        "SELECT upload_id, owner, length, received, name, created_at, touched_at FROM uploads WHERE upload_id = ?"
        " AND owner = ?"
    ),
    "touch_upload": Statement("UPDATE uploads SET received = ?2, touched_at = ?3 WHERE upload_id = ?1"),
    "delete_upload": Statement("DELETE FROM uploads WHERE upload_id = ?"),
    "unreferenced_files": Statement(_UNREFERENCED.format(before="?1", limit="?2")),
    "delete_file": Statement("DELETE FROM files WHERE file_id = ?"),
    "orphan_blobs": Statement(_ORPHANS.format(before="?1", limit="?2")),
    "delete_blob": Statement("DELETE FROM blobs WHERE sha256 = ?"),
    "abandoned_uploads": Statement("SELECT upload_id FROM uploads WHERE touched_at < ?1 LIMIT ?2"),
}

POSTGRES: Final[Dialect] = {
    "reserve_blob": Statement(
        "INSERT INTO blobs (sha256, last_put) SELECT * FROM unnest($1::text[], $2::bigint[])"
        " ON CONFLICT (sha256) DO UPDATE SET last_put = excluded.last_put"
    ),
    "file_usage": Statement("SELECT sum(size) FROM files WHERE owner = $1"),
    "insert_file": Statement(
        "INSERT INTO files (file_id, owner, sha256, size, content_type, name, created_at, meta)"
        " SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::text[], $6::text[],"
        " $7::bigint[], $8::text[])"
    ),
    "readable_file": Statement(_READABLE.format(columns=_FILE_COLUMNS, file="$1", user="$2")),
    "insert_file_refs": Statement(
        "INSERT INTO file_refs (file_id, conversation_id, seq)"
        " SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[]) ON CONFLICT DO NOTHING"
    ),
    "delete_file_refs": Statement(
        "DELETE FROM file_refs r USING unnest($1::text[], $2::bigint[]) AS k(c, s)"
        " WHERE r.conversation_id = k.c AND r.seq = k.s"
    ),
    "open_uploads": Statement("SELECT count(*) FROM uploads WHERE owner = $1"),
    "insert_upload": Statement(
        "INSERT INTO uploads (upload_id, owner, length, received, name, created_at, touched_at)"
        " SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::text[], $6::bigint[],"
        " $7::bigint[])"
    ),
    "get_upload": Statement(
        "SELECT upload_id, owner, length, received, name, created_at, touched_at FROM uploads WHERE upload_id = $1"
        " AND owner = $2"
    ),
    "touch_upload": Statement(
        "UPDATE uploads u SET received = k.r, touched_at = k.t FROM unnest($1::text[], $2::bigint[], $3::bigint[])"
        " AS k(id, r, t) WHERE u.upload_id = k.id"
    ),
    "delete_upload": Statement("DELETE FROM uploads u USING unnest($1::text[]) AS k(id) WHERE u.upload_id = k.id"),
    "unreferenced_files": Statement(_UNREFERENCED.format(before="$1", limit="$2")),
    "delete_file": Statement("DELETE FROM files f USING unnest($1::text[]) AS k(id) WHERE f.file_id = k.id"),
    "orphan_blobs": Statement(_ORPHANS.format(before="$1", limit="$2")),
    "delete_blob": Statement("DELETE FROM blobs b USING unnest($1::text[]) AS k(s) WHERE b.sha256 = k.s"),
    "abandoned_uploads": Statement("SELECT upload_id FROM uploads WHERE touched_at < $1 LIMIT $2"),
}
