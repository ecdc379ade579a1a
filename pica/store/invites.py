"""Invite codes (``auth.registration = "invite"``): made by an administrator (``pica invite create``), each good for
a number of registrations until it expires. Only the code's SHA-256 is stored, so a copy of the database hands out
no invitations. Redeeming and creating the account are one transaction: a refused registration (a taken username)
spends nothing."""

from __future__ import annotations

from typing import Final

from pica.errors import Forbidden
from pica.store import social
from pica.store.txn import Dialect, Read, Statement, Txn, Write


def create_invite(code_hash: str, uses: int, expires_at: int, now_ms: int) -> Txn[None]:
    yield Write("insert_invite", ([code_hash], [uses], [expires_at], [now_ms]))


def register_with_invite(code_hash: str, username: str, password_hash: str, now_ms: int) -> Txn[int]:
    """The new account's id, once the invite pays one use; ``forbidden`` when it is unknown, used up or expired
    (which of these is not said: a guesser learns nothing). The invite is checked (and, on PostgreSQL, its row
    locked) before anything is written, and the account is created before the use is spent, so every refusal comes
    before the first write, as the SQLite writer requires."""
    usable = yield Read("usable_invite", (code_hash, now_ms))
    if not usable:
        raise Forbidden("this invite code is not valid (unknown, used up or expired)")
    user_id = yield from social.create_user(username, password_hash, now_ms)
    yield Write("spend_invite", ([code_hash],))
    return user_id


SQLITE: Final[Dialect] = {
    "insert_invite": Statement(
        "INSERT INTO invites (code_hash, uses_left, expires_at, created_at) VALUES (?, ?, ?, ?)"
    ),
    "usable_invite": Statement(
        "SELECT uses_left FROM invites WHERE code_hash = ?1 AND uses_left > 0 AND expires_at > ?2"
    ),
    "spend_invite": Statement("UPDATE invites SET uses_left = uses_left - 1 WHERE code_hash = ?"),
}

POSTGRES: Final[Dialect] = {
    "insert_invite": Statement(
        "INSERT INTO invites (code_hash, uses_left, expires_at, created_at)"
        " SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[], $4::bigint[])"
    ),
    # FOR UPDATE: two nodes redeeming the last use of one code are serialised here; the second sees it spent.
    "usable_invite": Statement(
        "SELECT uses_left FROM invites WHERE code_hash = $1 AND uses_left > 0 AND expires_at > $2 FOR UPDATE"
    ),
    "spend_invite": Statement(
        "UPDATE invites i SET uses_left = i.uses_left - 1 FROM unnest($1::text[]) AS k(code_hash)"
        " WHERE i.code_hash = k.code_hash"
    ),
}
