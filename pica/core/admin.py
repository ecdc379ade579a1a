"""Administration: what an administrator may do, for the admin HTTP API (``/v1/admin/...``) and the ``pica user``
/ ``pica group`` commands alike, and users' reports of messages.

Every change is written with its audit row in one store transaction (:mod:`pica.store.admin`) and logged as an
audit record. The actor is an administrator (a user whose ``admin`` flag is set) or the command line (``cli``,
user id 0). What a change means for connected devices follows the commit, as in the services it mirrors: a removed
message is routed like a recall, a dissolved group's notice through the group fan-out, a deleted account's sockets
closed on this node. A service built without those collaborators (the command line has no sockets) leaves them to
sync, and to the server's sweeps of bans and ended sessions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Final, Literal

from pica.config import LimitsConfig
from pica.core.accounts import AccountService
from pica.core.chat import ChatService
from pica.core.ports import Clock, GroupRouter
from pica.core.ratelimit import RateLimits
from pica.core.validation import normalize_username
from pica.errors import BadRequest, Forbidden, MessageNotFound, UserNotFound
from pica.logs import audit as audit_log
from pica.protocol.ids import names_nothing
from pica.protocol.text import has_control_chars
from pica.store.base import (
    AdminStats,
    AdminUser,
    AuditEntry,
    AuditRecord,
    EventAppend,
    GroupAction,
    GroupChange,
    GroupRecord,
    JobStats,
    MemberRecord,
    MessageRecord,
    ReportRecord,
    SessionRecord,
    Store,
    UserRecord,
)

REPORT_ACTIONS: Final = ("dismiss", "remove_message", "ban_sender")
"""How an administrator resolves a report: nothing to do, remove the message for everyone, ban its sender."""


@dataclass(frozen=True, slots=True)
class Actor:
    """Who performs an administrative action: an administrator signed in over HTTP, or the command line."""

    user_id: int
    """0 for the command line."""
    name: str
    address: str = ""


CLI: Final = Actor(0, "cli")


@dataclass(frozen=True, slots=True)
class Stats:
    store: AdminStats
    jobs: JobStats


class AdminService:
    def __init__(self, store: Store, accounts: AccountService, clock: Clock, limits: LimitsConfig, *,
                 chat: ChatService | None = None, fanout: GroupRouter | None = None,
                 disconnect: Callable[[int], None] | None = None, rates: RateLimits | None = None) -> None:
        self._store = store
        self._accounts = accounts
        self._clock = clock
        self._limits = limits
        self._chat = chat
        self._fanout = fanout
        self._disconnect = disconnect
        """Closes a user's sockets on this node (the composition root's; None: nothing to close)."""
        self._rates = rates

    def _entry(self, actor: Actor, action: str, target: str, **details: Any) -> AuditEntry:
        return AuditEntry(actor.user_id, actor.name, action, target, details, actor.address, self._clock.now_ms())

    @staticmethod
    def _logged(entry: AuditEntry) -> None:
        """The audit row's twin in the log, once the change committed."""
        audit_log(entry.action, actor=entry.actor, actor_id=entry.actor_id, target=entry.target,
                  address=entry.address, **entry.details)

    async def require_admin(self, user_id: int) -> None:
        """Raises Forbidden unless ``user_id`` holds the admin role."""
        if not await self._store.is_admin(user_id):
            raise Forbidden("this needs the admin role")

    async def _user(self, user_id: int) -> UserRecord:
        user = await self._store.get_user(user_id)
        if user is None or user.deleted:
            raise UserNotFound(f"user {user_id} does not exist")
        return user

    @staticmethod
    def _not_self(actor: Actor, user_id: int, what: str) -> None:
        # An administrator who locks themself out leaves the server without one; another administrator (or the
        # command line) can do it.
        if actor.user_id == user_id:
            raise BadRequest(f"an administrator cannot {what} themself")

    # ------------------------------------------------------------------------------------------------ users

    async def users(self, limit: int, after_id: int = 0, query: str = "", banned: bool | None = None
                    ) -> list[AdminUser]:
        if has_control_chars(query):  # PostgreSQL text cannot even hold a NUL: refused like any bad parameter
            raise BadRequest("q must not hold control characters")
        return await self._store.admin_users(limit, after_id, query.strip(), banned)

    async def create_user(self, actor: Actor, username: object, password: object, *, admin: bool = False) -> int:
        """A new account (the registration rules for the name and password, whatever ``auth.registration`` says)."""
        name = normalize_username(username)
        password_hash = await self._accounts.new_password_hash(name, password)
        entry = self._entry(actor, "account_created", "user:", username=name, admin=admin)
        user_id = await self._store.admin_create_user(name, password_hash, admin, entry)
        self._logged(replace(entry, target=f"user:{user_id}"))
        return user_id

    async def set_banned(self, actor: Actor, user_id: int, banned: bool) -> None:
        await self._set_flag(actor, user_id, "banned", banned, "user_banned" if banned else "user_unbanned",
                             "ban" if banned else None)

    async def set_admin(self, actor: Actor, user_id: int, admin: bool) -> None:
        await self._set_flag(actor, user_id, "admin", admin, "admin_granted" if admin else "admin_revoked",
                             None if admin else "revoke the admin role of")

    async def _set_flag(self, actor: Actor, user_id: int, flag: Literal["banned", "admin"], value: bool,
                        action: str, not_on_self: str | None) -> None:
        if not_on_self is not None:
            self._not_self(actor, user_id, not_on_self)
        user = await self._user(user_id)
        entry = self._entry(actor, action, f"user:{user_id}", username=user.username)
        await self._store.admin_set_flag(user_id, flag, value, entry)
        self._logged(entry)

    async def reset_password(self, actor: Actor, user_id: int, password: object) -> int:
        """A new password and every session ended; how many ended."""
        user = await self._user(user_id)
        password_hash = await self._accounts.new_password_hash(user.username, password)
        entry = self._entry(actor, "password_reset", f"user:{user_id}", username=user.username)
        result = await self._store.admin_set_password(user_id, password_hash, entry)
        self._logged(entry)
        return result

    async def delete_user(self, actor: Actor, user_id: int) -> None:
        """The deletion of ``DELETE /v1/me`` (protocol §14.5), without the password."""
        self._not_self(actor, user_id, "delete")
        user = await self._user(user_id)
        entry = self._entry(actor, "account_deleted", f"user:{user_id}", username=user.username)
        changes = await self._store.admin_delete_user(user_id, entry)
        self._logged(entry)
        self._apply(changes)
        if self._disconnect is not None:
            self._disconnect(user_id)

    async def sessions(self, user_id: int) -> list[SessionRecord]:
        await self._user(user_id)
        return await self._store.list_sessions(user_id, self._clock.now_ms())

    async def end_sessions(self, actor: Actor, user_id: int, session_id: str | None = None) -> int:
        """End one session of the user, or all of them; how many ended. Every node closes their sockets at its next
        revocation sweep."""
        if session_id is not None and has_control_chars(session_id):
            raise BadRequest("session_id must not hold control characters")
        user = await self._user(user_id)
        details: dict[str, Any] = {"username": user.username}
        if session_id is not None:
            details["session_id"] = session_id
        entry = self._entry(actor, "sessions_revoked", f"user:{user_id}", **details)
        result = await self._store.admin_end_sessions(user_id, session_id, entry)
        self._logged(entry)
        return result

    # ------------------------------------------------------------------------------------------------ groups

    async def groups(self, limit: int, after_id: int = 0) -> list[GroupRecord]:
        return await self._store.list_all_groups(limit, after_id)

    async def group(self, group_id: int) -> tuple[GroupRecord, list[MemberRecord]]:
        return await self._store.admin_group(group_id)

    async def create_group(self, actor: Actor, owner: int, name: str, members: list[int]) -> GroupChange:
        """A group made for ``owner`` (the store's checks of the name, the members and the size apply)."""
        entry = self._entry(actor, "group_created", "group:", group_name=name, owner_id=owner, members=members)
        change = await self._store.admin_create_group(owner, name, members, self._limits.max_group_members, entry)
        self._logged(replace(entry, target=f"group:{change.group.group_id}"))
        self._apply([change])
        return change

    async def add_members(self, actor: Actor, group_id: int, user_ids: list[int]) -> GroupChange:
        """Add members as the group's owner would (the consent rule and the size limit apply)."""
        group, _ = await self._store.admin_group(group_id)
        entry = self._entry(actor, "group_members_added", f"group:{group_id}", user_ids=user_ids)
        change = await self._store.admin_group_action(
            GroupAction("add", group.owner_id, group_id, entry.ts, tuple(user_ids),
                        max_members=self._limits.max_group_members), entry)
        self._logged(entry)
        self._apply([change])
        return change

    async def dissolve_group(self, actor: Actor, group_id: int) -> GroupChange:
        """Dissolve a group as its owner would (the notice says the owner dissolved it: the administrator is not a
        member, and the group rules, which refuse a dissolved group, stay one)."""
        group, _ = await self._store.admin_group(group_id)
        entry = self._entry(actor, "group_dissolved", f"group:{group_id}", group_name=group.name,
                            owner_id=group.owner_id)
        change = await self._store.admin_group_action(
            GroupAction("dissolve", group.owner_id, group_id, entry.ts), entry)
        self._logged(entry)
        self._apply([change])
        return change

    def _apply(self, changes: list[GroupChange]) -> None:
        if self._fanout is not None:
            for change in changes:  # in commit order: no later frame overtakes them
                self._fanout.apply(change)

    # ------------------------------------------------------------------------------------------------ messages

    async def remove_message(self, actor: Actor, conversation_id: str, seq: int) -> MessageRecord:
        """Remove a message for everyone: a recall by moderation (``{"recall": {"seq", "moderated": true}}``),
        delivered like the author's own recall; the event message is the answer."""
        if names_nothing(conversation_id):
            raise MessageNotFound()
        entry = self._entry(actor, "message_removed", f"message:{conversation_id}:{seq}")
        request = EventAppend("recall", conversation_id, 0, seq, "", entry.ts, moderated=True)
        result, record = await self._store.moderate_message(request, entry)
        self._logged(entry)
        if self._chat is not None:
            self._chat.deliver_event(record, result)
        return record

    # ------------------------------------------------------------------------------------------------ reports

    async def report(self, reporter: int, conversation_id: str, seq: int, reason: object) -> ReportRecord:
        """A user reports a message they can see (the history rule decides: membership, joining point, delete for
        me); a second report of one message by one user answers the first."""
        if not isinstance(reason, str) or not reason.strip():
            raise BadRequest("'reason' must be a non-empty string")
        if len(reason) > self._limits.max_report_reason_chars:
            raise BadRequest(f"'reason' is longer than {self._limits.max_report_reason_chars} characters")
        if has_control_chars(reason.replace("\n", "").replace("\t", "")):
            raise BadRequest("'reason' must not hold control characters other than newlines and tabs")
        if names_nothing(conversation_id):
            raise MessageNotFound()
        page = await self._store.history(reporter, conversation_id, after=seq - 1, before=None, limit=1)
        if not page.messages or page.messages[0].seq != seq:
            raise MessageNotFound()
        message = page.messages[0]
        if message.sender == reporter:
            raise BadRequest("you cannot report your own message")
        if "system" in message.body or message.body.get("recalled") or message.body.get("deleted"):
            raise BadRequest("this message cannot be reported")
        if self._rates is not None:  # counted once the report is one: a mistyped seq costs nothing
            self._rates.check(self._rates.reports, reporter, "reports")
        report = await self._store.create_report(reporter, message, reason.strip(), self._clock.now_ms())
        audit_log("message_reported", user_id=reporter, report_id=report.report_id, target=f"message:"
                  f"{conversation_id}:{seq}")
        return report

    async def reports(self, state: Literal["open", "resolved"] | None, limit: int, after_id: int = 0
                      ) -> list[ReportRecord]:
        return await self._store.list_reports(state, limit, after_id)

    async def resolve_report(self, actor: Actor, report_id: int, action: str) -> ReportRecord:
        """Resolve a report with ``action`` (REPORT_ACTIONS), carried out first, each step with its audit row."""
        if action not in REPORT_ACTIONS:
            raise BadRequest(f"'action' must be one of {', '.join(REPORT_ACTIONS)}")
        found = [r for r in await self._store.list_reports(None, 1, report_id - 1) if r.report_id == report_id]
        if found and found[0].state == "open":
            report = found[0]
            if action == "remove_message":
                await self.remove_message(actor, report.conversation_id, report.seq)
            elif action == "ban_sender":
                await self.set_banned(actor, report.sender, True)
        entry = self._entry(actor, "report_resolved", f"report:{report_id}", resolution=action)
        result = await self._store.resolve_report(report_id, action, entry)
        self._logged(entry)
        return result

    # ------------------------------------------------------------------------------------------------ audit, stats

    async def audit(self, limit: int, before_id: int | None = None) -> list[AuditRecord]:
        return await self._store.list_audit(limit, before_id)

    async def stats(self) -> Stats:
        return Stats(await self._store.admin_stats(self._clock.now_ms()), await self._store.job_stats())
