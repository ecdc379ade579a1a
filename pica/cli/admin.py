"""``pica user create|list|ban|admin|delete|sessions|revoke|reset-password``, ``pica invite create``, ``pica group
create|add|list|dissolve`` and ``pica search reindex``: administration straight on the store.

They open the node's store themselves, so they work whether the server runs or not (WAL lets a second process read
and write beside it). The user and group commands run :class:`pica.core.admin.AdminService`, the code of the admin
HTTP API, as the actor ``cli``: the same checks, and the same audit rows, written in the transaction of each change.
What they change reaches a running server through the database: a new user can log in at once; a ban refuses logins
and tokens at once, and the server's ban sweep closes the user's open connections within a few seconds, as every
node's revocation sweep closes those of sessions ended here (revoke, reset-password, delete) within
``auth.revocation_poll``; group changes reach members' devices by sync (this process cannot push to them).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import os
import secrets
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from pica.cli.render import stamp, table
from pica.config import Config, ConfigError, load_config
from pica.core.accounts import AccountService
from pica.core.admin import CLI, AdminService
from pica.core.passwords import PasswordHasher
from pica.core.ports import SystemClock
from pica.core.scram import ScramService
from pica.core.sessions import SessionService
from pica.core.tokens import RefreshTokens, TokenService
from pica.core.validation import normalize_username
from pica.errors import GroupNotFound, NotFound, PicaError, StartupError, UserNotFound
from pica.logs import configure
from pica.store import sqlite_files
from pica.store.base import Store, UserRecord
from pica.store.factory import build_store, is_postgres, sqlite_path


class AdminError(Exception):
    """A command cannot do what was asked; the message is shown as ``pica: <message>``."""


# ---------------------------------------------------------------------------------------------------------- parsers


def _positive(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {raw!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def common_arguments() -> argparse.ArgumentParser:
    """--config, --data-dir, --store: how every command that works on the store finds it."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="TOML configuration file (env: PICA_CONFIG), as for 'pica serve'")
    common.add_argument("--data-dir", help="the node's data directory (default ./pica-data)")
    common.add_argument("--store", help="the store's URL, as for 'pica serve' (default: SQLite in --data-dir)")
    return common


def add_parsers(sub: Any) -> None:
    common = common_arguments()

    user = sub.add_parser("user", help="manage accounts (directly in the store)")
    users = user.add_subparsers(dest="action", required=True)
    p = users.add_parser("create", parents=[common], help="create an account")
    p.add_argument("name")
    p.add_argument("--password", help="default: env PICA_PASSWORD, else asked for (or read from stdin)")
    p.add_argument("--admin", action="store_true", help="with the admin role (the /v1/admin API)")
    p = users.add_parser("list", parents=[common], help="list accounts")
    p.add_argument("--limit", type=_positive, default=100, help="most rows (default 100)")
    p.add_argument("--after", type=int, default=0, metavar="USER_ID", help="start after this user id (paging)")
    p.add_argument("--banned", action="store_true", help="only banned accounts")
    p.add_argument("--search", default="", metavar="TEXT", help="only names containing TEXT")
    p = users.add_parser("ban", parents=[common], help="ban an account (no login, tokens refused)")
    p.add_argument("name")
    p.add_argument("--unban", action="store_true", help="lift the ban")
    p = users.add_parser("admin", parents=[common], help="grant an account the admin role (the /v1/admin API)")
    p.add_argument("name")
    p.add_argument("--revoke", action="store_true", help="take the role back")
    p = users.add_parser("delete", parents=[common], help="delete an account (as DELETE /v1/me does)")
    p.add_argument("name")
    p = users.add_parser("sessions", parents=[common], help="list an account's signed-in sessions (devices)")
    p.add_argument("name")
    p = users.add_parser("revoke", parents=[common], help="end an account's sessions (all, or one)")
    p.add_argument("name")
    p.add_argument("--session", metavar="SESSION_ID", help="only this session (ids: 'pica user sessions')")
    p = users.add_parser("reset-password", parents=[common], help="set a new password and end every session")
    p.add_argument("name")
    p.add_argument("--password", help="default: env PICA_PASSWORD, else asked for (or read from stdin)")

    invite = sub.add_parser("invite", help="invite codes for auth.registration = \"invite\"")
    invites = invite.add_subparsers(dest="action", required=True)
    p = invites.add_parser("create", parents=[common], help="make an invite code (shown once)")
    p.add_argument("--uses", type=_positive, default=1, help="registrations it allows (default 1)")
    p.add_argument("--days", type=float, default=7.0, help="days it stays valid (default 7)")

    p = sub.add_parser("backup", parents=[common], help="copy the embedded database to a new file, consistently, "
                                                      "while the server runs")
    p.add_argument("file", help="the backup file to write (must not exist)")
    p = sub.add_parser("restore", parents=[common], help="replace the embedded database with a backup (the server "
                                                       "must be stopped)")
    p.add_argument("file", help="a file written by 'pica backup'")

    group = sub.add_parser("group", help="manage groups (directly in the store)")
    groups = group.add_subparsers(dest="action", required=True)
    p = groups.add_parser("create", parents=[common], help="create a group")
    p.add_argument("name")
    p.add_argument("--owner", required=True, metavar="USER")
    p.add_argument("--members", default="", metavar="U1,U2", help="comma-separated usernames")
    p = groups.add_parser("add", parents=[common], help="add members to a group (as its owner)")
    p.add_argument("group_id", type=_positive)
    p.add_argument("users", nargs="+", metavar="USER")
    p = groups.add_parser("list", parents=[common], help="list groups")
    p.add_argument("--user", metavar="NAME", help="only the groups of this user")
    p = groups.add_parser("dissolve", parents=[common], help="dissolve a group (it becomes read-only)")
    p.add_argument("group_id", type=_positive)

    search = sub.add_parser("search", help="the full-text search index (directly in the store)")
    searches = search.add_subparsers(dest="action", required=True)
    searches.add_parser("reindex", parents=[common],
                        help="rebuild the search index with this release's tokenizer (searches stay answered)")


# ---------------------------------------------------------------------------------------------------------- running


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(config_file=args.config, overrides={"data_dir": args.data_dir, "store": args.store})
    except ConfigError as exc:
        print(f"pica: configuration error: {exc}", file=sys.stderr)
        return 2
    # Only the audit records (account created, user banned) are worth a line on stderr here: they are the trace an
    # administrator's action leaves, in the node's log format.
    configure("WARNING", config.log.format)
    try:
        asks = (args.command, getattr(args, "action", None)) in {("user", "create"), ("user", "reset-password")}
        password = _password(args) if asks else ""
        if args.command in ("backup", "restore"):
            out = _files(args, config)
        else:
            out = asyncio.run(_dispatch(args, config, password))
    except (AdminError, PicaError, StartupError) as exc:
        print(f"pica: {exc}", file=sys.stderr)
        return 1
    print(out)
    return 0


def _password(args: argparse.Namespace) -> str:
    password: str | None = args.password or os.environ.get("PICA_PASSWORD")
    if password:
        return password
    if not sys.stdin.isatty():  # scripts pipe it in
        return sys.stdin.readline().rstrip("\r\n")
    try:
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            raise AdminError("the passwords differ")
    except (EOFError, KeyboardInterrupt):
        raise AdminError("no password given") from None
    return password


def _files(args: argparse.Namespace, config: Config) -> str:
    """``pica backup`` and ``pica restore``: whole files of the embedded store (pica/store/sqlite_files.py)."""
    if is_postgres(config.store):
        raise AdminError(f"pica {args.command} is for the embedded SQLite store; for PostgreSQL use pg_dump and "
                         "pg_restore (docs/operations.md, Backups)")
    database = sqlite_path(config)
    target = Path(args.file)
    try:
        if args.command == "backup":
            info = sqlite_files.backup(database, target)
            return (f"backed up {database} to {info.path}: {info.size:,} bytes, {info.messages:,} messages, schema "
                    f"version {info.schema_version} (keep the token secret too: {config.data_dir / 'token_secret'}, "
                    "or auth.token_secret)")
        info = sqlite_files.restore(target, database)
    except (ValueError, OSError) as exc:
        raise AdminError(str(exc)) from None
    return (f"restored {database} from {target}: {info.messages:,} messages, schema version {info.schema_version}; "
            "start the server")


@contextlib.asynccontextmanager
async def open_store(config: Config, *, creating: bool) -> AsyncIterator[Store]:
    """The store the configuration names, opened for one command (``creating``: a new SQLite file is fine)."""
    if not is_postgres(config.store):
        path = sqlite_path(config)
        if not creating and not path.exists():
            raise AdminError(f"no Pica database at {path} (give --data-dir, --store or --config)")
    store = build_store(config, one_shot=True)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def _dispatch(args: argparse.Namespace, config: Config, password: str) -> str:
    creating = (args.command, args.action) in {("user", "create"), ("invite", "create")}
    async with open_store(config, creating=creating) as store:
        if args.command == "invite":
            return await invite_create(store, config, args.uses, args.days)
        if args.command == "search":
            return await search_reindex(store)
        admin = _admin(store, config)
        if args.command == "user":
            if args.action == "create":
                return await user_create(admin, args.name, password, args.admin)
            if args.action == "list":
                return await user_list(admin, args.limit, args.after, args.banned, args.search)
            if args.action == "sessions":
                return await user_sessions(store, admin, args.name)
            if args.action == "revoke":
                return await user_revoke(store, admin, args.name, args.session)
            if args.action == "reset-password":
                return await user_reset_password(store, admin, args.name, password)
            if args.action == "admin":
                return await user_admin(store, admin, args.name, not args.revoke)
            if args.action == "delete":
                return await user_delete(store, admin, args.name)
            return await user_ban(store, admin, args.name, not args.unban)
        if args.action == "create":
            return await group_create(store, admin, args.name, args.owner, args.members.split(","))
        if args.action == "add":
            return await group_add(store, admin, args.group_id, args.users)
        if args.action == "dissolve":
            return await group_dissolve(admin, args.group_id)
        return await group_list(store, args.user)


async def search_reindex(store: Store) -> str:
    """Rebuild the index in batches beside a running server (its appends keep indexing meanwhile); searches miss
    messages not re-indexed yet while it runs."""
    count = await store.reindex_search()
    return f"re-indexed {count} messages"


async def _user(store: Store, name: str) -> UserRecord:
    try:
        user = await store.get_user_by_name(normalize_username(name))
    except PicaError:
        user = None
    if user is None:
        raise AdminError(f"no user named {name!r}")
    return user


# ---------------------------------------------------------------------------------------------------------- users


def _accounts(store: Store, config: Config) -> AccountService:
    """The account service as an administrator's command uses it: it issues no token, so a throwaway secret keeps
    the node's own secret file out of this."""
    auth = config.auth
    hasher = PasswordHasher(time_cost=auth.argon2_time_cost, memory_kib=auth.argon2_memory_kib,
                            parallelism=auth.argon2_parallelism, concurrency=1)
    secret = secrets.token_urlsafe(48)
    clock = SystemClock()
    sessions = SessionService(store, TokenService(secret, auth.token_ttl, auth.token_algorithm),
                              RefreshTokens(secret), clock, auth)
    # SCRAM keys for the XMPP gateway come with the password an administrator sets (pica/core/scram.py).
    return AccountService(store, hasher, sessions, clock, auth, scram=ScramService(store, sessions, None))


def _admin(store: Store, config: Config) -> AdminService:
    """The admin API's service, acting as ``cli``: the same checks and audit rows; no sockets to reach, so devices
    learn of a change by sync and the server's sweeps (bans, ended sessions)."""
    return AdminService(store, _accounts(store, config), SystemClock(), config.limits)


async def user_create(admin: AdminService, name: str, password: str, grant_admin: bool) -> str:
    user_id = await admin.create_user(CLI, name, password, admin=grant_admin)
    return f"created {'administrator' if grant_admin else 'user'} {name.lower()} (#{user_id})"


async def invite_create(store: Store, config: Config, uses: int, days: float) -> str:
    code = await _accounts(store, config).create_invite(uses, days * 86400)
    mode = config.auth.registration
    note = "" if mode == "invite" else f" (note: auth.registration is {mode!r})"
    return f"{code}\ngood for {uses} registration(s) during {days:g} day(s){note}"


async def user_list(admin: AdminService, limit: int, after: int, banned_only: bool, search: str) -> str:
    users = await admin.users(limit, after, search, True if banned_only else None)
    if not users:
        return "no users"
    rows = [(u.user.user_id, u.user.username, stamp(u.user.created_at),
             "banned" if u.user.banned else "admin" if u.admin else "active") for u in users]
    out = table(("ID", "USERNAME", "CREATED", "STATUS"), rows)
    if len(users) == limit:
        out += f"\n(more: --after {users[-1].user.user_id})"
    return out


async def user_ban(store: Store, admin: AdminService, name: str, banned: bool) -> str:
    user = await _user(store, name)
    await admin.set_banned(CLI, user.user_id, banned)
    if banned:
        return (f"banned {user.username} (#{user.user_id}): logins and tokens are refused; a running server closes "
                "their connections within seconds")
    return f"unbanned {user.username} (#{user.user_id})"


async def user_admin(store: Store, admin: AdminService, name: str, grant: bool) -> str:
    user = await _user(store, name)
    await admin.set_admin(CLI, user.user_id, grant)
    if grant:
        return f"{user.username} (#{user.user_id}) is an administrator: the /v1/admin API answers their tokens"
    return f"{user.username} (#{user.user_id}) is no longer an administrator"


async def user_delete(store: Store, admin: AdminService, name: str) -> str:
    user = await _user(store, name)
    await admin.delete_user(CLI, user.user_id)
    return (f"deleted {user.username} (#{user.user_id}): their sessions ended, their groups passed on or dissolved; "
            "a running server closes their connections within seconds")


async def user_sessions(store: Store, admin: AdminService, name: str) -> str:
    user = await _user(store, name)
    sessions = await admin.sessions(user.user_id)
    if not sessions:
        return f"{user.username} has no live session"
    rows = [(s.session_id, stamp(s.created_at), stamp(s.last_used_at), s.address or "-", s.user_agent[:40] or "-")
            for s in sessions]
    return table(("SESSION", "CREATED", "LAST USED", "ADDRESS", "USER AGENT"), rows)


async def user_revoke(store: Store, admin: AdminService, name: str, session_id: str | None) -> str:
    user = await _user(store, name)
    if session_id is not None:
        try:
            await admin.end_sessions(CLI, user.user_id, session_id)
        except NotFound:
            raise AdminError(f"{user.username} has no live session {session_id!r}") from None
        return f"ended session {session_id} of {user.username}: a running server closes its connections within seconds"
    ended = await admin.end_sessions(CLI, user.user_id)
    return (f"ended {ended} session(s) of {user.username} (#{user.user_id}): their tokens are refused, and a running "
            "server closes their connections within seconds")


async def user_reset_password(store: Store, admin: AdminService, name: str, password: str) -> str:
    user = await _user(store, name)
    ended = await admin.reset_password(CLI, user.user_id, password)
    return f"new password set for {user.username} (#{user.user_id}); {ended} session(s) ended"


# ---------------------------------------------------------------------------------------------------------- groups


async def group_create(store: Store, admin: AdminService, name: str, owner_name: str, member_names: list[str]) -> str:
    owner = await _user(store, owner_name)
    members = [(await _user(store, m.strip())).user_id for m in member_names if m.strip()]
    group = (await admin.create_group(CLI, owner.user_id, name, members)).group
    return f"created group #{group.group_id} {group.name!r}: owner {owner.username}, {group.member_count} members"


async def group_add(store: Store, admin: AdminService, group_id: int, user_names: list[str]) -> str:
    users = [await _user(store, n) for n in user_names]
    try:
        change = await admin.add_members(CLI, group_id, [u.user_id for u in users])
    except (GroupNotFound, UserNotFound) as exc:
        raise AdminError(f"no group #{group_id}" if isinstance(exc, GroupNotFound) else exc.message) from None
    added = ", ".join(u.username for u in users if u.user_id in change.added)
    return f"added {added} to group #{group_id} {change.group.name!r} ({change.group.member_count} members)"


async def group_dissolve(admin: AdminService, group_id: int) -> str:
    try:
        change = await admin.dissolve_group(CLI, group_id)
    except GroupNotFound:
        raise AdminError(f"no group #{group_id}") from None
    return f"dissolved group #{group_id} {change.group.name!r}: it is read-only now"


async def group_list(store: Store, user_name: str | None) -> str:
    if user_name is not None:
        groups = await store.list_groups((await _user(store, user_name)).user_id)
    else:
        groups, after = [], 0
        while page := await store.list_all_groups(1000, after):
            groups.extend(page)
            after = page[-1].group_id
    if not groups:
        return "no groups"
    owners: dict[int, str] = {}
    for g in groups:
        if g.owner_id not in owners:
            owner = await store.get_user(g.owner_id)
            owners[g.owner_id] = owner.username if owner else f"user#{g.owner_id}"
    rows = [(g.group_id, g.name, owners[g.owner_id], g.member_count, stamp(g.created_at),
             "dissolved" if g.dissolved else "muted" if g.muted_all else "active") for g in groups]
    return table(("ID", "NAME", "OWNER", "MEMBERS", "CREATED", "STATUS"), rows)
