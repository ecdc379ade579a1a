"""The link preview cache (table ``link_previews``, migration 0015), one transaction per operation for both dialects.

A row is what a fetch of one URL gave (docs/protocol.md section 30), JSON, and when; a lookup takes it only while it
is younger than ``previews.cache_ttl``. Writing a row also drops a bounded number of expired ones, so the table
holds about the URLs of the last TTL, without a sweeper of its own.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from pica.store.txn import Dialect, Read, Statement, Txn, Write

_encode: Final = msgspec.json.Encoder().encode
_decode: Final = msgspec.json.Decoder(dict[str, Any]).decode
_SWEEP: Final = 100
"""Expired rows dropped per write, at most."""


def cached(url: str, since_ms: int) -> Txn[dict[str, Any] | None]:
    rows = yield Read("cached_preview", (url, since_ms))
    return _decode(rows[0][0]) if rows else None


def save(url: str, preview: dict[str, Any], now_ms: int, expired_before_ms: int) -> Txn[None]:
    yield Write("drop_expired_previews", ([expired_before_ms],))
    yield Write("upsert_preview", ([url], [now_ms], [_encode(preview).decode()]))


SQLITE: Final[Dialect] = {
    "cached_preview": Statement("SELECT preview FROM link_previews WHERE url = ?1 AND fetched_at >= ?2"),
    "drop_expired_previews": Statement(
        "DELETE FROM link_previews WHERE url IN"
        f" (SELECT url FROM link_previews WHERE fetched_at < ?1 ORDER BY fetched_at LIMIT {_SWEEP})"
    ),
    "upsert_preview": Statement(
        "INSERT INTO link_previews (url, fetched_at, preview) VALUES (?1, ?2, ?3)"
        " ON CONFLICT (url) DO UPDATE SET fetched_at = excluded.fetched_at, preview = excluded.preview"
    ),
}

POSTGRES: Final[Dialect] = {
    "cached_preview": Statement("SELECT preview FROM link_previews WHERE url = $1 AND fetched_at >= $2"),
    "drop_expired_previews": Statement(
        "DELETE FROM link_previews WHERE url IN (SELECT url FROM link_previews"
        f" WHERE fetched_at < ANY($1::bigint[]) ORDER BY fetched_at LIMIT {_SWEEP})"
    ),
    "upsert_preview": Statement(
        "INSERT INTO link_previews (url, fetched_at, preview)"
        " SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[])"
        " ON CONFLICT (url) DO UPDATE SET fetched_at = excluded.fetched_at, preview = excluded.preview"
    ),
}
