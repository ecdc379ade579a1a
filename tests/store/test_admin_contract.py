"""The store's administration (pica/store/admin.py), on every backend: the admin role, the user listing with its
search, the audit row written in the transaction of each change (and none for a refused one), the moderated recall,
reports and the counts."""

from __future__ import annotations

import json

import pytest

from pica.errors import Conflict, Forbidden, MessageNotFound, NotFound, UsernameTaken, UserNotFound
from pica.store.base import AuditEntry, DirectAppend, EventAppend, GroupAction, SessionRecord, Store
from tests.store.test_contract import store, users

__all__ = ["store"]  # the fixture, run for every backend

DAY = 86_400_000


def entry(action: str, target: str, ts: int = 1_000, **details: object) -> AuditEntry:
    return AuditEntry(7, "root", action, target, dict(details), "10.0.0.9", ts)


async def audit_actions(store: Store) -> list[tuple[str, str]]:
    return [(a.entry.action, a.entry.target) for a in reversed(await store.list_audit(100, None))]


async def test_the_admin_role_the_user_search_and_their_audit_rows(store: Store) -> None:
    alice, bob, _ = await users(store, "alice", "bob", "alfred")
    assert not await store.is_admin(alice)
    root = await store.admin_create_user("root", "hash", True, entry("account_created", "user:"))
    assert await store.is_admin(root)
    await store.admin_set_flag(alice, "admin", True, entry("admin_granted", f"user:{alice}"))
    await store.admin_set_flag(bob, "banned", True, entry("user_banned", f"user:{bob}"))
    assert await store.is_admin(alice)

    assert [u.user.username for u in await store.admin_users(10, 0, "AL", None)] == ["alice", "alfred"]
    assert [u.user.username for u in await store.admin_users(10, 0, "", True)] == ["bob"]
    assert [(u.user.username, u.admin) for u in await store.admin_users(10, 0, "", False)] == [
        ("alice", True), ("alfred", False), ("root", True)]
    assert [u.user.username for u in await store.admin_users(1, alice, "", None)] == ["bob"]  # keyset paging
    assert await store.admin_users(10, 0, "%", None) == []  # LIKE's wildcards are plain characters
    assert await store.admin_users(10, 0, "_", None) == []

    # A refused change writes no audit row.
    with pytest.raises(UsernameTaken):
        await store.admin_create_user("alice", "hash", False, entry("account_created", "user:"))
    with pytest.raises(UserNotFound):
        await store.admin_set_flag(9_999, "banned", True, entry("user_banned", "user:9999"))
    assert await audit_actions(store) == [("account_created", f"user:{root}"), ("admin_granted", f"user:{alice}"),
                                          ("user_banned", f"user:{bob}")]
    newest = (await store.list_audit(1, None))[0]
    assert newest.entry == AuditEntry(7, "root", "user_banned", f"user:{bob}", {}, "10.0.0.9", 1_000)
    older = await store.list_audit(10, newest.audit_id)
    assert [a.entry.action for a in older] == ["admin_granted", "account_created"]


async def test_password_sessions_deletion_and_a_dissolved_group_are_audited(store: Store) -> None:
    alice, bob = await users(store, "alice", "bob")
    for sid in ("s1", "s2", "s3"):
        await store.create_session(SessionRecord(sid, alice, 0, 0, DAY, "", ""), max_live=10, forget_before=0)
    assert await store.admin_end_sessions(alice, "s1", entry("sessions_revoked", f"user:{alice}")) == 1
    with pytest.raises(NotFound):
        await store.admin_end_sessions(alice, "s1", entry("sessions_revoked", f"user:{alice}"))
    assert await store.admin_set_password(alice, "new hash", entry("password_reset", f"user:{alice}")) == 2
    user = await store.get_user(alice)
    assert user is not None and user.password_hash == "new hash"

    change = await store.create_group(alice, "club", [bob], 1_000, 100)
    group_id = change.group.group_id
    group, members = await store.admin_group(group_id)
    assert group.name == "club" and [m.user_id for m in members] == [alice, bob]
    dissolved = await store.admin_group_action(GroupAction("dissolve", alice, group_id, 2_000),
                                               entry("group_dissolved", f"group:{group_id}"))
    assert dissolved.group.dissolved
    made = await store.admin_create_group(bob, "book club", [], 100, entry("group_created", "group:"))
    await store.admin_delete_user(bob, entry("account_deleted", f"user:{bob}"))
    assert (await store.get_user(bob)).deleted  # type: ignore[union-attr]
    assert await audit_actions(store) == [
        ("sessions_revoked", f"user:{alice}"), ("password_reset", f"user:{alice}"),
        ("group_dissolved", f"group:{group_id}"), ("group_created", f"group:{made.group.group_id}"),
        ("account_deleted", f"user:{bob}")]


async def test_a_moderated_recall_removes_any_message_once_and_reports_keep_what_was_seen(store: Store) -> None:
    alice, bob, _ = await users(store, "alice", "bob", "carol")
    body = json.dumps({"text": "rude words"}).encode()
    sent = await store.append_direct(DirectAppend("d:1:2", alice, bob, "m1", body, 1_000))
    old = 1_000 + 10 * DAY  # long past any recall window: moderation has none

    page = await store.history(bob, "d:1:2", after=0, before=None, limit=10)
    report = await store.create_report(bob, page.messages[0], "insulting", old)
    assert (report.reporter, report.sender, report.body, report.state) == (bob, alice, {"text": "rude words"}, "open")
    assert (await store.create_report(bob, page.messages[0], "again", old)).report_id == report.report_id
    assert await store.message_author("d:1:2", 1) == alice and await store.message_author("d:1:2", 9) is None

    request = EventAppend("recall", "d:1:2", 0, sent.seq, "", old, moderated=True)
    result, event = await store.moderate_message(request, entry("message_removed", "message:d:1:2:1", old))
    assert (result.seq, event.sender, event.body) == (2, alice, {"recall": {"seq": 1, "moderated": True}})
    assert event.client_msg_id == "~m:d:1:2:1"
    page = await store.history(bob, "d:1:2", after=0, before=None, limit=10)
    assert [m.body for m in page.messages] == [{"recalled": True}, {"recall": {"seq": 1, "moderated": True}}]
    with pytest.raises(Forbidden):  # removed already: nothing more to remove, and no second audit row
        await store.moderate_message(request, entry("message_removed", "message:d:1:2:1", old))
    with pytest.raises(MessageNotFound):
        await store.moderate_message(EventAppend("recall", "d:1:2", 0, 9, "", old, moderated=True),
                                     entry("message_removed", "message:d:1:2:9", old))

    # The report still shows what bob saw; resolving it is audited, once.
    assert [r.report_id for r in await store.list_reports("open", 10, 0)] == [report.report_id]
    resolved = await store.resolve_report(report.report_id, "remove_message",
                                          entry("report_resolved", f"report:{report.report_id}"))
    assert (resolved.state, resolved.action, resolved.resolved_by, resolved.body) == (
        "resolved", "remove_message", 7, {"text": "rude words"})
    with pytest.raises(Conflict):
        await store.resolve_report(report.report_id, "dismiss", entry("report_resolved", "report:x"))
    with pytest.raises(NotFound):
        await store.resolve_report(9_999, "dismiss", entry("report_resolved", "report:9999"))
    assert await store.list_reports("open", 10, 0) == []
    assert [r.state for r in await store.list_reports(None, 10, 0)] == ["resolved"]
    assert await audit_actions(store) == [("message_removed", "message:d:1:2:1"),
                                          ("report_resolved", f"report:{report.report_id}")]

    stats = await store.admin_stats(old)
    assert (stats.users, stats.conversations, stats.messages, stats.open_reports) == (3, 1, 2, 0)
