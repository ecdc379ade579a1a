"""The Store methods written once, for every SQL backend.

Each method names a transaction (a generator of :mod:`pica.store.txn` steps, from :mod:`pica.store.messages` and its
sibling modules) and hands it to the backend, which runs it through its own driver: SQLite's writer thread or reader
pool, a PostgreSQL write lane or pooled connection. A backend implements the two hooks below, the hot-path appends,
and whatever it has not moved here yet.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, Literal, TypeVar

from pica.errors import PicaError
from pica.protocol.tokens import Phrase
from pica.store import (
    admin,
    bots,
    devices,
    groups,
    invites,
    jobs,
    lifecycle,
    media,
    messages,
    pins,
    previews,
    reactions,
    scram,
    search,
    sessions,
    social,
)
from pica.store.base import (
    AdminStats,
    AdminUser,
    AppendResult,
    AuditEntry,
    AuditRecord,
    BotKeyState,
    BotRecord,
    BotWebhook,
    ContactRecord,
    ConversationPrefs,
    ConversationSummary,
    DeviceRecord,
    EventAppend,
    FileRecord,
    FileSweep,
    GroupAction,
    GroupChange,
    GroupRecord,
    InvitationRecord,
    JobOutcome,
    JobRecord,
    JobRules,
    JobStats,
    MemberRecord,
    MessageRecord,
    NotificationSetting,
    Page,
    PinChange,
    PinRecord,
    PrefsChange,
    PresenceAudience,
    PresenceRecord,
    PushAudience,
    PushCandidate,
    PushMessage,
    ReadCursors,
    Refreshed,
    ReportRecord,
    RevokedSession,
    ScramKeyRecord,
    SessionRecord,
    SessionState,
    Store,
    SyncPage,
    ThreadSummary,
    UploadRecord,
    UserRecord,
    UserSettings,
    WebhookEndpoint,
)
from pica.store.job_rules import Event
from pica.store.txn import Txn

log = logging.getLogger(__name__)

T = TypeVar("T")


class SqlStore(Store):
    _job_rules: JobRules | None = None
    """What write transactions turn into job rows (None: nothing; see :mod:`pica.store.jobs`)."""
    _on_jobs: Callable[[], None] | None = None

    def set_job_rules(self, rules: JobRules | None, on_jobs: Callable[[], None] | None = None) -> None:
        self._job_rules = rules if rules is not None and not rules.empty else None
        self._on_jobs = on_jobs

    # ------------------------------------------------------------------------------------------------ pins, prefs

    async def set_pin(self, user_id: int, conversation_id: str, seq: int, pinned: bool, ts: int,
                      max_pins: int) -> PinChange:
        return await self._write_txn(partial(pins.set_pin, user_id, conversation_id, seq, pinned, ts, max_pins))

    async def list_pins(self, user_id: int, conversation_id: str) -> list[PinRecord]:
        return await self._read_txn(partial(pins.list_pins, user_id, conversation_id), snapshot=True)

    async def set_prefs(self, user_id: int, conversation_id: str, change: PrefsChange, ts: int) -> ConversationPrefs:
        return await self._write_txn(partial(pins.set_prefs, user_id, conversation_id, change, ts))

    async def prefs_of(self, user_id: int, conversation_ids: list[str]) -> dict[str, ConversationPrefs]:
        return await self._read_txn(partial(pins.prefs_of, user_id, conversation_ids), snapshot=True)

    def _jobs_written(self, _: object = None) -> None:
        """After a commit that may have queued jobs: wake the in-node worker (cheap; it coalesces)."""
        if self._on_jobs is not None:
            self._on_jobs()

    async def _write_jobs(self, make: Callable[[], Txn[T]], events: Callable[[T], list[Event]],
                          now_ms: int) -> T:
        """A write transaction followed, in the same transaction, by the jobs of what it did."""
        rules = self._job_rules
        result = await self._write_txn(jobs.with_jobs(make, rules, events, now_ms))
        if rules is not None:
            self._jobs_written()
        return result

    @abc.abstractmethod
    async def _read_txn(self, make: Callable[[], Txn[T]], *, snapshot: bool = False) -> T:
        """Run a read-only transaction. ``make`` builds it afresh for every attempt. ``snapshot``: the reads must
        see one point in time (SQLite's reads always do)."""

    @abc.abstractmethod
    async def _write_txn(self, make: Callable[[], Txn[T]]) -> T:
        """Run a transaction that writes, committed before this returns."""

    @staticmethod
    @abc.abstractmethod
    def _search_value(text: str) -> str | None:
        """What the dialect indexes for a message's searchable text (None: nothing)."""

    @staticmethod
    @abc.abstractmethod
    def _search_terms(phrases: Sequence[Phrase]) -> str | None:
        """The dialect's query for a search's phrases (None: nothing can match)."""

    # ------------------------------------------------------------------------------------------------ messages

    async def hide_message(self, user_id: int, conversation_id: str, seq: int, ts: int) -> MessageRecord:
        return await self._write_txn(partial(messages.hide_message, user_id, conversation_id, seq, ts))

    async def mark_delivered(self, user_id: int, conversation_id: str, seq: int) -> int | None:
        return await self._write_txn(partial(messages.mark_delivered, user_id, conversation_id, seq))

    async def mark_read(self, user_id: int, conversation_id: str, seq: int) -> ReadCursors | None:
        return await self._write_txn(partial(messages.mark_read, user_id, conversation_id, seq))

    async def history(
        self, user_id: int, conversation_id: str, *, after: int | None, before: int | None, limit: int
    ) -> Page:
        return await self._read_txn(partial(messages.history, user_id, conversation_id, after, before, limit),
                                    snapshot=True)

    async def sync(self, user_id: int, cursors: Mapping[str, int], limit: int) -> SyncPage:
        return await self._read_txn(partial(messages.sync, user_id, cursors, limit), snapshot=True)

    async def sync_plan(self, user_id: int, cursors: Mapping[str, int]) -> list[tuple[str, int, int]]:
        return await self._read_txn(partial(messages.sync_plan, user_id, cursors))

    async def sync_after(self, user_id: int, pending: Sequence[tuple[str, int, int]], limit: int) -> SyncPage:
        return await self._read_txn(partial(messages.sync_after, user_id, pending, limit))

    async def conversation_members(self, conversation_id: str) -> list[int]:
        return await self._read_txn(partial(messages.conversation_members, conversation_id))

    async def direct_refusal(self, sender: int, recipient: int) -> PicaError | None:
        return await self._read_txn(partial(messages.direct_refusal, sender, recipient))

    async def member_cursors(self, user_id: int, conversation_id: str) -> list[MemberRecord]:
        return await self._read_txn(partial(messages.member_cursors, user_id, conversation_id))

    async def list_conversations(
        self, user_id: int, *, limit: int, before_ts: int | None, before_id: str = ""
    ) -> list[ConversationSummary]:
        return await self._read_txn(partial(messages.list_conversations, user_id, limit, before_ts, before_id),
                                    snapshot=True)

    async def search(self, user_id: int, query: str, *, conversation_id: str | None, limit: int,
                     sender: int | None = None, since: int | None = None, until: int | None = None,
                     kind: str | None = None) -> list[MessageRecord]:
        terms = self._search_terms(search.phrases(query, kind))
        where = search.SearchFilter(conversation_id, sender, since, until)
        return await self._read_txn(partial(search.search, user_id, terms, where, limit))

    async def reindex_search(self, *, only_if_stale: bool = False) -> int:
        if only_if_stale and await self._read_txn(search.index_version) >= search.TOKENIZER_VERSION:
            return 0
        log.info("rebuilding the search index", extra={"tokenizer": search.TOKENIZER_VERSION})
        await self._write_txn(search.clear_index)
        total, after = 0, ("", 0)
        while True:
            count, last = await self._write_txn(partial(search.reindex_batch, after, search.REINDEX_BATCH,
                                                        self._search_value))
            total += count
            if last is None:
                break
            after = last
        await self._write_txn(partial(search.mark_index, search.TOKENIZER_VERSION))
        log.info("search index rebuilt", extra={"messages": total})
        return total

    async def group_fanout(self, conversation_id: str) -> tuple[int, dict[int, int]]:
        return await self._read_txn(partial(groups.members_with_version, conversation_id), snapshot=True)

    # ------------------------------------------------------------------------------------------------ groups

    async def create_group(
        self, owner: int, name: str, members: list[int], ts: int, max_members: int
    ) -> GroupChange:
        return await self._write_jobs(partial(groups.create_group, owner, name, members, ts, max_members),
                                      jobs.group_events, ts)

    async def group_action(self, action: GroupAction) -> GroupChange:
        return await self._write_jobs(partial(groups.group_action, action), jobs.group_events, action.ts)

    async def get_group(self, user_id: int, group_id: int) -> GroupRecord:
        return await self._read_txn(partial(groups.get_group, user_id, group_id))

    async def list_groups(self, user_id: int) -> list[GroupRecord]:
        return await self._read_txn(partial(groups.list_groups, user_id))

    async def group_members(self, user_id: int, group_id: int) -> list[MemberRecord]:
        return await self._read_txn(partial(groups.group_members, user_id, group_id), snapshot=True)

    async def list_all_groups(self, limit: int, after_id: int = 0) -> list[GroupRecord]:
        return await self._read_txn(partial(groups.list_all_groups, limit, after_id))

    # ------------------------------------------------------------------------------------------------ accounts

    async def create_user(self, username: str, password_hash: str, now_ms: int) -> int:
        return await self._write_jobs(partial(social.create_user, username, password_hash, now_ms),
                                      partial(jobs.user_events, username, now_ms), now_ms)

    async def create_users(self, usernames: Sequence[str], password_hash: str, now_ms: int) -> list[int | None]:
        return await self._write_jobs(partial(social.create_users, usernames, password_hash, now_ms),
                                      partial(jobs.users_events, usernames, now_ms), now_ms)

    # ------------------------------------------------------------------------------------------------ sessions

    async def create_session(self, session: SessionRecord, max_live: int, forget_before: int) -> None:
        await self.create_sessions([session], max_live, forget_before)

    async def create_sessions(self, records: Sequence[SessionRecord], max_live: int, forget_before: int) -> None:
        await self._write_txn(partial(sessions.create_sessions, records, max_live, forget_before))

    async def session_state(self, session_id: str) -> SessionState | None:
        return (await self.session_states([session_id])).get(session_id)

    async def session_states(self, session_ids: Sequence[str]) -> dict[str, SessionState]:
        return await self._read_txn(partial(sessions.session_states, session_ids))

    async def refresh_session(self, session_id: str, generation: int, now_ms: int, ttl_ms: int,
                              grace_ms: int) -> Refreshed:
        return await self._write_txn(partial(sessions.refresh_session, session_id, generation, now_ms, ttl_ms,
                                             grace_ms))

    async def list_sessions(self, user_id: int, now_ms: int) -> list[SessionRecord]:
        return await self._read_txn(partial(sessions.list_sessions, user_id, now_ms))

    async def revoke_session(self, user_id: int, session_id: str, now_ms: int, reason: str) -> bool:
        return await self._write_txn(partial(sessions.revoke_session, user_id, session_id, now_ms, reason))

    async def revoke_user_sessions(self, user_id: int, now_ms: int, reason: str, *, keep: str | None = None) -> int:
        return await self._write_txn(partial(sessions.revoke_user_sessions, user_id, now_ms, reason, keep))

    async def set_password(self, user_id: int, password_hash: str, now_ms: int, *, keep: str | None = None) -> int:
        return await self._write_txn(partial(sessions.set_password, user_id, password_hash, now_ms, keep))

    async def revoked_sessions(self, since_ms: int) -> list[RevokedSession]:
        return await self._read_txn(partial(sessions.revoked_sessions, since_ms))

    async def forget_sessions(self, before_ms: int) -> int:
        return await self._write_txn(partial(sessions.forget_sessions, before_ms))

    async def scram_key(self, user_id: int, mechanism: str) -> ScramKeyRecord | None:
        return await self._read_txn(partial(scram.scram_key, user_id, mechanism))

    async def set_scram_keys(self, keys: Sequence[ScramKeyRecord]) -> None:
        await self._write_txn(partial(scram.set_scram_keys, tuple(keys)))

    async def create_invite(self, code_hash: str, uses: int, expires_at: int, now_ms: int) -> None:
        await self._write_txn(partial(invites.create_invite, code_hash, uses, expires_at, now_ms))

    async def register_with_invite(self, code_hash: str, username: str, password_hash: str, now_ms: int) -> int:
        return await self._write_jobs(partial(invites.register_with_invite, code_hash, username, password_hash, now_ms),
                                      partial(jobs.user_events, username, now_ms), now_ms)

    async def get_user_by_name(self, username: str) -> UserRecord | None:
        return await self._read_txn(partial(social.get_user_by_name, username))

    async def get_user(self, user_id: int) -> UserRecord | None:
        return await self._read_txn(partial(social.get_user, user_id))

    # ------------------------------------------------------------------------------------------------ administration

    async def list_users(self, limit: int, after_id: int = 0, *, banned_only: bool = False) -> list[UserRecord]:
        return await self._read_txn(partial(social.list_users, limit, after_id, banned_only))

    async def set_banned(self, user_id: int, banned: bool) -> None:
        await self._write_txn(partial(social.set_banned, user_id, banned))

    # ------------------------------------------------------------------------------------------------ admin role, audit

    async def is_admin(self, user_id: int) -> bool:
        return await self._read_txn(partial(admin.is_admin, user_id))

    async def admin_users(self, limit: int, after_id: int, query: str, banned: bool | None) -> list[AdminUser]:
        return await self._read_txn(partial(admin.admin_users, limit, after_id, query, banned))

    async def admin_create_user(self, username: str, password_hash: str, grant_admin: bool,
                                audit: AuditEntry) -> int:
        return await self._write_jobs(partial(admin.create_user, username, password_hash, grant_admin, audit),
                                      partial(jobs.user_events, username, audit.ts), audit.ts)

    async def admin_create_group(self, owner: int, name: str, members: list[int], max_members: int,
                                 audit: AuditEntry) -> GroupChange:
        return await self._write_jobs(partial(admin.create_group, owner, name, members, max_members, audit),
                                      jobs.group_events, audit.ts)

    async def admin_set_flag(self, user_id: int, flag: Literal["banned", "admin"], value: bool,
                             audit: AuditEntry) -> None:
        await self._write_txn(partial(admin.audited, partial(admin.set_flag, user_id, flag, value), audit))

    async def admin_set_password(self, user_id: int, password_hash: str, audit: AuditEntry) -> int:
        return await self._write_txn(partial(admin.audited, partial(sessions.set_password, user_id, password_hash,
                                                                    audit.ts, None), audit))

    async def admin_end_sessions(self, user_id: int, session_id: str | None, audit: AuditEntry) -> int:
        return await self._write_txn(partial(admin.audited, partial(admin.end_sessions, user_id, session_id,
                                                                    audit.ts), audit))

    async def admin_delete_user(self, user_id: int, audit: AuditEntry) -> list[GroupChange]:
        return await self._write_jobs(partial(admin.audited, partial(lifecycle.delete_account, user_id, audit.ts),
                                              audit), jobs.group_list_events, audit.ts)

    async def admin_group_action(self, action: GroupAction, audit: AuditEntry) -> GroupChange:
        return await self._write_jobs(partial(admin.audited, partial(groups.group_action, action), audit),
                                      jobs.group_events, action.ts)

    async def admin_group(self, group_id: int) -> tuple[GroupRecord, list[MemberRecord]]:
        return await self._read_txn(partial(admin.group_with_members, group_id), snapshot=True)

    async def moderate_message(self, request: EventAppend, audit: AuditEntry) -> tuple[AppendResult, MessageRecord]:
        # Not on the hot path's queue: a moderation is rare, and its conversation's lock orders it among the appends.
        return await self._write_jobs(partial(admin.audited, partial(admin.moderate, request, self._search_value),
                                              audit), jobs.event_events, request.ts)

    async def message_author(self, conversation_id: str, seq: int) -> int | None:
        return await self._read_txn(partial(admin.message_author, conversation_id, seq))

    async def create_report(self, reporter: int, message: MessageRecord, reason: str, ts: int) -> ReportRecord:
        return await self._write_txn(partial(admin.create_report, reporter, message, reason, ts))

    async def list_reports(self, state: str | None, limit: int, after_id: int) -> list[ReportRecord]:
        return await self._read_txn(partial(admin.list_reports, state, limit, after_id))

    async def resolve_report(self, report_id: int, action: str, audit: AuditEntry) -> ReportRecord:
        return await self._write_txn(partial(admin.audited, partial(admin.resolve_report, report_id, action,
                                                                    audit.actor_id, audit.ts), audit))

    async def list_audit(self, limit: int, before_id: int | None) -> list[AuditRecord]:
        return await self._read_txn(partial(admin.list_audit, limit, before_id))

    async def admin_stats(self, now_ms: int) -> AdminStats:
        return await self._read_txn(partial(admin.stats, now_ms), snapshot=True)

    # ------------------------------------------------------------------------------------------------ social

    async def contact_request(self, user_id: int, peer_id: int, ts: int) -> str:
        return await self._write_txn(partial(social.contact_request, user_id, peer_id, ts))

    async def contact_respond(self, user_id: int, peer_id: int, accept: bool, ts: int) -> str:
        return await self._write_txn(partial(social.contact_respond, user_id, peer_id, accept, ts))

    async def contact_remove(self, user_id: int, peer_id: int) -> None:
        await self._write_txn(partial(social.contact_remove, user_id, peer_id))

    async def list_contacts(self, user_id: int) -> list[ContactRecord]:
        return await self._read_txn(partial(social.list_contacts, user_id))

    async def set_blocked(self, user_id: int, peer_id: int, blocked: bool, ts: int) -> None:
        await self._write_txn(partial(social.set_blocked, user_id, peer_id, blocked, ts))

    async def list_blocked(self, user_id: int) -> list[int]:
        return await self._read_txn(partial(social.list_blocked, user_id))

    async def set_only_contacts(self, user_id: int, only_contacts: bool) -> None:
        await self._write_txn(partial(social.set_only_contacts, user_id, only_contacts))

    async def get_only_contacts(self, user_id: int) -> bool:
        return await self._read_txn(partial(social.get_only_contacts, user_id))

    async def get_settings(self, user_id: int) -> UserSettings:
        return await self._read_txn(partial(social.get_settings, user_id))

    async def set_privacy(self, user_id: int, *, group_add: str | None = None, presence: str | None = None) -> None:
        await self._write_txn(partial(social.set_privacy, user_id, group_add, presence))

    async def presence_audience(self, user_id: int) -> PresenceAudience:
        return await self._read_txn(partial(social.presence_audience, user_id), snapshot=True)

    async def presence_audiences(self, user_ids: Sequence[int]) -> dict[int, PresenceAudience]:
        return await self._read_txn(partial(social.presence_audiences, user_ids), snapshot=True)

    async def presence_of(self, viewer: int, user_ids: list[int]) -> list[PresenceRecord]:
        return await self._read_txn(partial(social.presence_of, viewer, user_ids), snapshot=True)

    async def set_last_seen(self, seen: Mapping[int, int]) -> None:
        await self._write_txn(partial(social.set_last_seen, seen))

    # ------------------------------------------------------------------------------------------------ invitations

    async def list_invitations(self, user_id: int) -> list[InvitationRecord]:
        return await self._read_txn(partial(groups.list_invitations, user_id))

    async def accept_invitation(self, user_id: int, group_id: int, ts: int, max_members: int) -> GroupChange:
        return await self._write_jobs(partial(groups.accept_invitation, user_id, group_id, ts, max_members),
                                      jobs.group_events, ts)

    async def decline_invitation(self, user_id: int, group_id: int) -> None:
        await self._write_txn(partial(groups.decline_invitation, user_id, group_id))

    # ------------------------------------------------------------------------------------------------ lifecycle

    async def delete_account(self, user_id: int, ts: int) -> list[GroupChange]:
        return await self._write_jobs(partial(lifecycle.delete_account, user_id, ts), jobs.group_list_events, ts)

    async def sent_messages(self, user_id: int, after_client_msg_id: str, limit: int) -> list[MessageRecord]:
        return await self._read_txn(partial(lifecycle.sent_messages, user_id, after_client_msg_id, limit))

    # ------------------------------------------------------------------------------------------------ media

    async def reserve_blob(self, sha256: str, now_ms: int) -> None:
        await self._write_txn(partial(media.reserve_blob, sha256, now_ms))

    async def add_file(self, record: FileRecord, quota_bytes: int) -> None:
        await self._write_txn(partial(media.add_file, record, quota_bytes))

    async def file_usage(self, owner: int) -> int:
        return await self._read_txn(partial(media.file_usage, owner))

    async def readable_file(self, file_id: str, user_id: int) -> FileRecord | None:
        return await self._read_txn(partial(media.readable_file, file_id, user_id))

    async def open_upload(self, record: UploadRecord, max_open: int) -> None:
        await self._write_txn(partial(media.open_upload, record, max_open))

    async def get_upload(self, upload_id: str, owner: int) -> UploadRecord | None:
        return await self._read_txn(partial(media.get_upload, upload_id, owner))

    async def touch_upload(self, upload_id: str, received: int, now_ms: int) -> None:
        await self._write_txn(partial(media.touch_upload, upload_id, received, now_ms))

    async def end_upload(self, upload_id: str) -> None:
        await self._write_txn(partial(media.end_upload, upload_id))

    async def sweep_files(self, unreferenced_before: int, abandoned_before: int, limit: int) -> FileSweep:
        return await self._write_txn(partial(media.sweep, unreferenced_before, abandoned_before, limit))

    # ------------------------------------------------------------------------------------------------ jobs

    async def claim_jobs(self, now_ms: int, lease_ms: int, limit: int) -> list[JobRecord]:
        return await self._write_txn(partial(jobs.claim, now_ms, lease_ms, limit))

    async def finish_jobs(self, outcomes: list[JobOutcome]) -> int:
        return await self._write_txn(partial(jobs.finish, outcomes))

    async def list_jobs(self, state: str | None, limit: int, after_id: int = 0) -> list[JobRecord]:
        return await self._read_txn(partial(jobs.list_jobs, state, limit, after_id))

    async def retry_jobs(self, job_ids: list[int] | None, now_ms: int) -> int:
        return await self._write_txn(partial(jobs.retry_dead, job_ids, now_ms))

    async def drop_jobs(self, job_ids: list[int] | None) -> int:
        return await self._write_txn(partial(jobs.drop_dead, job_ids))

    async def job_stats(self) -> JobStats:
        return await self._read_txn(jobs.stats)

    async def add_webhook(self, endpoint: WebhookEndpoint) -> None:
        await self._write_txn(partial(jobs.add_webhook, endpoint))

    async def list_webhooks(self) -> list[WebhookEndpoint]:
        return await self._read_txn(jobs.list_webhooks)

    async def remove_webhook(self, endpoint_id: str) -> bool:
        return await self._write_txn(partial(jobs.remove_webhook, endpoint_id))

    async def disable_webhook(self, endpoint_id: str) -> None:
        await self._write_txn(partial(jobs.disable_webhook, endpoint_id))

    # ------------------------------------------------------------------------------------------------ bots

    async def create_bot(self, username: str, key_hash: str, session: SessionRecord, webhook_url: str,
                         webhook_secret: str) -> int:
        now = session.created_at
        return await self._write_jobs(partial(bots.create_bot, username, key_hash, session, webhook_url,
                                              webhook_secret), partial(jobs.user_events, username, now), now)

    async def rotate_bot_key(self, user_id: int, key_hash: str, session: SessionRecord) -> None:
        await self._write_txn(partial(bots.rotate_bot_key, user_id, key_hash, session))

    async def delete_bot(self, user_id: int, ts: int) -> list[GroupChange]:
        return await self._write_jobs(partial(bots.delete_bot, user_id, ts), jobs.group_list_events, ts)

    async def list_bots(self) -> list[BotRecord]:
        return await self._read_txn(bots.list_bots)

    async def bot_key_state(self, key_hash: str) -> BotKeyState | None:
        return await self._read_txn(partial(bots.bot_key_state, key_hash))

    async def bot_webhooks(self) -> list[BotWebhook]:
        return await self._read_txn(bots.bot_webhooks)
    # ------------------------------------------------------------------------------------------------ push

    async def register_device(self, device: DeviceRecord, max_per_user: int, now_ms: int) -> DeviceRecord:
        return await self._write_txn(partial(devices.register_device, device, max_per_user, now_ms))

    async def list_devices(self, user_id: int, now_ms: int) -> list[DeviceRecord]:
        return await self._read_txn(partial(devices.list_devices, user_id, now_ms))

    async def remove_device(self, user_id: int, device_id: str) -> bool:
        return await self._write_txn(partial(devices.remove_device, user_id, device_id))

    async def drop_devices(self, device_ids: list[str]) -> int:
        return await self._write_txn(partial(devices.drop_devices, device_ids)) if device_ids else 0

    async def set_notification_setting(self, user_id: int, setting: NotificationSetting) -> None:
        await self._write_txn(partial(devices.set_notification_setting, user_id, setting))

    async def get_notification_setting(self, user_id: int, conversation_id: str) -> NotificationSetting:
        return await self._read_txn(partial(devices.get_notification_setting, user_id, conversation_id))

    async def set_push_privacy(self, user_id: int, privacy: bool) -> None:
        await self._write_txn(partial(devices.set_push_privacy, user_id, privacy))

    async def get_push_privacy(self, user_id: int) -> bool:
        return await self._read_txn(partial(devices.get_push_privacy, user_id))

    async def cached_preview(self, url: str, since_ms: int) -> dict[str, Any] | None:
        return await self._read_txn(partial(previews.cached, url, since_ms))

    async def cache_preview(self, url: str, preview: dict[str, Any], now_ms: int, expired_before_ms: int) -> None:
        await self._write_txn(partial(previews.save, url, preview, now_ms, expired_before_ms))

    async def push_candidates(self, conversation_id: str, seq: int) -> tuple[PushMessage | None, list[PushCandidate]]:
        return await self._read_txn(partial(devices.push_candidates, conversation_id, seq), snapshot=True)

    async def push_audience(self, user_ids: list[int], now_ms: int) -> PushAudience:
        return await self._read_txn(partial(devices.push_audience, user_ids, now_ms), snapshot=True)

    # ------------------------------------------------------------------------------------------------ threads, mentions

    async def thread_messages(self, user_id: int, conversation_id: str, root_seq: int, after: int,
                              limit: int) -> Page:
        return await self._read_txn(partial(reactions.thread_messages, user_id, conversation_id, root_seq, after,
                                            limit), snapshot=True)

    async def threads(self, user_id: int, conversation_id: str, limit: int) -> list[ThreadSummary]:
        return await self._read_txn(partial(reactions.threads, user_id, conversation_id, limit), snapshot=True)

    async def mark_thread_read(self, user_id: int, conversation_id: str, root_seq: int, seq: int) -> None:
        await self._write_txn(partial(reactions.mark_thread_read, user_id, conversation_id, root_seq, seq))

    async def unread_mentions(self, user_id: int, conversation_ids: list[str]) -> dict[str, int]:
        return await self._read_txn(partial(reactions.unread_mentions, user_id, conversation_ids), snapshot=True)
