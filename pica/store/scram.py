"""SCRAM credentials (RFC 5802) of the XMPP gateway, one row per user and mechanism; the rule of when they are good
is :mod:`pica.core.scram`'s."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from pica.store.base import ScramKeyRecord
from pica.store.txn import Dialect, Read, Statement, Txn, Write


def scram_key(user_id: int, mechanism: str) -> Txn[ScramKeyRecord | None]:
    rows = yield Read("scram_key", (user_id, mechanism))
    if not rows:
        return None
    salt, iterations, stored_key, server_key, tag = rows[0]
    return ScramKeyRecord(user_id, mechanism, salt, int(iterations), stored_key, server_key, tag)


def set_scram_keys(keys: Sequence[ScramKeyRecord]) -> Txn[None]:
    yield Write("upsert_scram_keys", ([k.user_id for k in keys], [k.mechanism for k in keys], [k.salt for k in keys],
                                      [k.iterations for k in keys], [k.stored_key for k in keys],
                                      [k.server_key for k in keys], [k.password_tag for k in keys]))


SQLITE: Final[Dialect] = {
    "scram_key": Statement("SELECT salt, iterations, stored_key, server_key, password_tag FROM scram_keys"
                           " WHERE user_id = ?1 AND mechanism = ?2"),
    "upsert_scram_keys": Statement(
        "INSERT INTO scram_keys (user_id, mechanism, salt, iterations, stored_key, server_key, password_tag)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (user_id, mechanism) DO UPDATE SET salt = excluded.salt,"
        " iterations = excluded.iterations, stored_key = excluded.stored_key, server_key = excluded.server_key,"
        " password_tag = excluded.password_tag"),
}

POSTGRES: Final[Dialect] = {
    "scram_key": Statement("SELECT salt, iterations, stored_key, server_key, password_tag FROM scram_keys"
                           " WHERE user_id = $1 AND mechanism = $2"),
    "upsert_scram_keys": Statement(
        "INSERT INTO scram_keys (user_id, mechanism, salt, iterations, stored_key, server_key, password_tag)"
        " SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::int[], $5::text[], $6::text[], $7::text[])"
        " ON CONFLICT (user_id, mechanism) DO UPDATE SET salt = excluded.salt, iterations = excluded.iterations,"
        " stored_key = excluded.stored_key, server_key = excluded.server_key, password_tag = excluded.password_tag"),
}
