"""HTTP: the admin API (``/v1/admin/...``, administrators only, every change audited) and users' reports of messages
(``POST /v1/reports``). docs/admin.md describes every route.

Each handler checks the caller first (:func:`pica.api.common.admin_caller`: 401 without a token, 403 ``forbidden``
without the admin role) and then calls :class:`pica.core.admin.AdminService`, the code ``pica user`` and ``pica
group`` run too.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal, TypeVar

import msgspec
from aiohttp import web

from pica.api import spec
from pica.api.common import admin_caller, caller, client_address, json_response, path_int, services
from pica.api.spec import MAX_ID
from pica.core.admin import Actor, AdminService
from pica.errors import BadRequest, Unavailable
from pica.store.base import AuditRecord

T = TypeVar("T")

MAX_PAGE: Final = 500
Limit = Annotated[int, msgspec.Meta(ge=1, le=MAX_PAGE)]
Id = Annotated[int, msgspec.Meta(ge=0, le=MAX_ID)]
TAG: Final = "admin"

# ---------------------------------------------------------------------------------------------------- bodies


class CreateUser(msgspec.Struct, forbid_unknown_fields=True):
    username: str
    password: str
    admin: bool = False


class NewPassword(msgspec.Struct, forbid_unknown_fields=True):
    password: str


class Resolve(msgspec.Struct, forbid_unknown_fields=True):
    action: Literal["dismiss", "remove_message", "ban_sender"]


class NewReport(msgspec.Struct, forbid_unknown_fields=True):
    conversation_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    seq: Annotated[int, msgspec.Meta(ge=1, le=MAX_ID)]
    reason: str


class UsersQuery(msgspec.Struct, forbid_unknown_fields=True):
    limit: Limit = 100
    after: Id = 0
    q: Annotated[str, msgspec.Meta(max_length=64)] = ""
    banned: bool | None = None


class PageQuery(msgspec.Struct, forbid_unknown_fields=True):
    limit: Limit = 100
    after: Id = 0


class ReportsQuery(msgspec.Struct, forbid_unknown_fields=True):
    limit: Limit = 100
    after: Id = 0
    state: Literal["open", "resolved"] | None = None


class AuditQuery(msgspec.Struct, forbid_unknown_fields=True):
    limit: Limit = 100
    before: Annotated[int, msgspec.Meta(ge=1, le=MAX_ID)] | None = None


class UserOut(msgspec.Struct):
    user_id: int
    username: str
    created_at: int
    banned: bool
    admin: bool


class UsersPage(msgspec.Struct):
    users: list[UserOut]
    next_after: int | None
    """Pass as ``after`` for the next page; null on the last one."""


class CreatedUser(msgspec.Struct):
    user_id: int
    username: str
    admin: bool


class SessionOut(msgspec.Struct):
    session_id: str
    created_at: int
    last_used_at: int
    expires_at: int
    address: str
    user_agent: str


class SessionsOut(msgspec.Struct):
    sessions: list[SessionOut]


class Ended(msgspec.Struct):
    sessions_ended: int


class GroupOut(msgspec.Struct):
    group_id: int
    conversation_id: str
    name: str
    owner_id: int
    muted_all: bool
    dissolved: bool
    created_at: int
    member_count: int


class GroupsPage(msgspec.Struct):
    groups: list[GroupOut]
    next_after: int | None


class MemberOut(msgspec.Struct):
    user_id: int
    username: str
    role: str
    muted: bool
    joined_seq: int


class MembersOut(msgspec.Struct):
    members: list[MemberOut]


class GroupDetail(msgspec.Struct):
    group: GroupOut
    members: list[MemberOut]


class MessageOut(msgspec.Struct):
    conversation_id: str
    seq: int
    sender: int
    client_msg_id: str
    ts: int
    body: dict[str, Any]


class ReportOut(msgspec.Struct):
    report_id: int
    reporter: int
    conversation_id: str
    seq: int
    sender: int
    body: dict[str, Any]
    reason: str
    state: str
    action: str
    resolved_by: int
    resolved_at: int
    created_at: int


class ReportAck(msgspec.Struct):
    report_id: int
    state: str


class ReportsPage(msgspec.Struct):
    reports: list[ReportOut]
    next_after: int | None


class AuditOut(msgspec.Struct):
    audit_id: int
    ts: int
    actor_id: int
    actor: str
    action: str
    target: str
    details: dict[str, Any]
    address: str


class AuditPage(msgspec.Struct):
    entries: list[AuditOut]
    next_before: int | None
    """Pass as ``before`` for the next (older) page; null on the last one."""


class JobsOut(msgspec.Struct):
    queued: int
    running: int
    dead: int


class StatsOut(msgspec.Struct):
    users: int
    banned_users: int
    deleted_users: int
    admins: int
    groups: int
    dissolved_groups: int
    conversations: int
    messages: int
    open_reports: int
    live_sessions: int
    connections: int
    """Sockets open on the node that answers (each node counts its own)."""
    online_users: int
    jobs: JobsOut


# ---------------------------------------------------------------------------------------------------- helpers


def _service(request: web.Request) -> AdminService:
    admin = services(request).admin
    if admin is None:
        raise Unavailable("administration is not available on this node")
    return admin


async def _actor(request: web.Request) -> tuple[AdminService, Actor]:
    """The administrator calling, checked (401, 403), as the audit records them."""
    who = await admin_caller(request)
    user = await services(request).accounts.get(who.user_id)
    return _service(request), Actor(who.user_id, user.username if user is not None else "", client_address(request))


async def _body(request: web.Request, kind: type[T]) -> T:
    return await spec.struct_body(request, kind, timeout=services(request).limits.http_body_timeout)


def _out(record: Any, kind: type[T]) -> T:
    """A store record as its wire type (the same field names; the wire type may leave some out)."""
    return msgspec.convert(record, kind, from_attributes=True)


def _next(rows: list[Any], limit: int, key: str) -> int | None:
    """The cursor of the next page: the last row's ``key`` when the page is full."""
    return int(getattr(rows[-1], key)) if rows and len(rows) == limit else None


def _audit(a: AuditRecord) -> AuditOut:
    e = a.entry
    return AuditOut(a.audit_id, e.ts, e.actor_id, e.actor, e.action, e.target, e.details, e.address)


def _session_id(request: web.Request) -> str:
    session_id = request.match_info["session_id"]
    if len(session_id) > 64:
        raise BadRequest("session_id is too long")
    return session_id


# ---------------------------------------------------------------------------------------------------- users


async def list_users(request: web.Request) -> web.Response:
    admin, _ = await _actor(request)
    query = spec.struct_query(request, UsersQuery)
    rows = await admin.users(query.limit, query.after, query.q, query.banned)
    users = [UserOut(u.user.user_id, u.user.username, u.user.created_at, u.user.banned, u.admin) for u in rows]
    return json_response(UsersPage(users, _next(users, query.limit, "user_id")))


async def create_user(request: web.Request) -> web.Response:
    admin, actor = await _actor(request)
    body = await _body(request, CreateUser)
    user_id = await admin.create_user(actor, body.username, body.password, admin=body.admin)
    created = await services(request).accounts.get(user_id)
    return json_response(CreatedUser(user_id, created.username if created else "", body.admin), status=201)


async def ban(request: web.Request) -> web.Response:
    admin, actor = await _actor(request)
    await admin.set_banned(actor, path_int(request, "user_id"), request.method == "POST")
    return web.Response(status=204)


async def admin_role(request: web.Request) -> web.Response:
    admin, actor = await _actor(request)
    await admin.set_admin(actor, path_int(request, "user_id"), request.method == "POST")
    return web.Response(status=204)


async def reset_password(request: web.Request) -> web.Response:
    admin, actor = await _actor(request)
    body = await _body(request, NewPassword)
    return json_response(Ended(await admin.reset_password(actor, path_int(request, "user_id"), body.password)))


async def delete_user(request: web.Request) -> web.Response:
    admin, actor = await _actor(request)
    await admin.delete_user(actor, path_int(request, "user_id"))
    return web.Response(status=204)


async def user_sessions(request: web.Request) -> web.Response:
    admin, _ = await _actor(request)
    rows = await admin.sessions(path_int(request, "user_id"))
    return json_response(SessionsOut([_out(s, SessionOut) for s in rows]))


async def end_sessions(request: web.Request) -> web.Response:
    admin, actor = await _actor(request)
    session_id = _session_id(request) if "session_id" in request.match_info else None
    return json_response(Ended(await admin.end_sessions(actor, path_int(request, "user_id"), session_id)))


# ---------------------------------------------------------------------------------------------------- groups


async def list_groups(request: web.Request) -> web.Response:
    admin, _ = await _actor(request)
    query = spec.struct_query(request, PageQuery)
    rows = await admin.groups(query.limit, query.after)
    return json_response(GroupsPage([_out(g, GroupOut) for g in rows], _next(rows, query.limit, "group_id")))


async def get_group(request: web.Request) -> web.Response:
    admin, _ = await _actor(request)
    group, members = await admin.group(path_int(request, "group_id"))
    return json_response(GroupDetail(_out(group, GroupOut), [_out(m, MemberOut) for m in members]))


async def group_members(request: web.Request) -> web.Response:
    admin, _ = await _actor(request)
    _, members = await admin.group(path_int(request, "group_id"))
    return json_response(MembersOut([_out(m, MemberOut) for m in members]))


async def dissolve_group(request: web.Request) -> web.Response:
    admin, actor = await _actor(request)
    change = await admin.dissolve_group(actor, path_int(request, "group_id"))
    return json_response(_out(change.group, GroupOut))


# ---------------------------------------------------------------------------------------------------- messages, reports


async def remove_message(request: web.Request) -> web.Response:
    admin, actor = await _actor(request)
    event = await admin.remove_message(actor, request.match_info["conversation_id"], path_int(request, "seq"))
    return json_response(_out(event, MessageOut))


async def report(request: web.Request) -> web.Response:
    body = await _body(request, NewReport)
    user_id = await caller(request)
    made = await _service(request).report(user_id, body.conversation_id, body.seq, body.reason)
    return json_response(ReportAck(made.report_id, made.state), status=201)


async def list_reports(request: web.Request) -> web.Response:
    admin, _ = await _actor(request)
    query = spec.struct_query(request, ReportsQuery)
    rows = await admin.reports(query.state, query.limit, query.after)
    return json_response(ReportsPage([_out(r, ReportOut) for r in rows], _next(rows, query.limit, "report_id")))


async def resolve_report(request: web.Request) -> web.Response:
    admin, actor = await _actor(request)
    body = await _body(request, Resolve)
    resolved = await admin.resolve_report(actor, path_int(request, "report_id"), body.action)
    return json_response(_out(resolved, ReportOut))


# ---------------------------------------------------------------------------------------------------- audit, stats


async def audit(request: web.Request) -> web.Response:
    admin, _ = await _actor(request)
    query = spec.struct_query(request, AuditQuery)
    rows = await admin.audit(query.limit, query.before)
    return json_response(AuditPage([_audit(a) for a in rows], _next(rows, query.limit, "audit_id")))


async def stats(request: web.Request) -> web.Response:
    admin, _ = await _actor(request)
    counted = await admin.stats()
    s, jobs, hub = counted.store, counted.jobs, services(request).hub
    return json_response(StatsOut(s.users, s.banned_users, s.deleted_users, s.admins, s.groups, s.dissolved_groups,
                                  s.conversations, s.messages, s.open_reports, s.live_sessions, hub.connection_count,
                                  hub.online_users, JobsOut(jobs.queued, jobs.running, jobs.dead)))


def add_routes(app: web.Application) -> None:
    def admin_route(method: str, path: str, handler: spec.Handler, summary: str, **kw: Any) -> None:
        spec.route(app, method, path, handler, summary=summary, auth="admin", tag=TAG, **kw)

    users, user = "/v1/admin/users", "/v1/admin/users/{user_id}"
    admin_route("GET", users, list_users, "List users (paged, searched by name, filtered by ban)",
                query=UsersQuery, response=UsersPage)
    admin_route("POST", users, create_user, "Create a user (optionally an administrator)", request=CreateUser,
                response=CreatedUser, status=201)
    admin_route("DELETE", user, delete_user, "Delete a user's account, as DELETE /v1/me does", status=204)
    admin_route("POST", f"{user}/ban", ban, "Ban a user: no login, tokens refused, sockets closed", status=204)
    admin_route("DELETE", f"{user}/ban", ban, "Lift a user's ban", status=204)
    admin_route("POST", f"{user}/admin", admin_role, "Grant the admin role", status=204)
    admin_route("DELETE", f"{user}/admin", admin_role, "Revoke the admin role", status=204)
    admin_route("POST", f"{user}/reset-password", reset_password, "Set a new password and end every session",
                request=NewPassword, response=Ended)
    admin_route("GET", f"{user}/sessions", user_sessions, "A user's live sessions", response=SessionsOut)
    admin_route("DELETE", f"{user}/sessions", end_sessions, "End every session of a user", response=Ended)
    admin_route("DELETE", f"{user}/sessions/{{session_id}}", end_sessions, "End one session of a user",
                response=Ended)
    admin_route("GET", "/v1/admin/groups", list_groups, "List every group (paged)", query=PageQuery,
                response=GroupsPage)
    admin_route("GET", "/v1/admin/groups/{group_id}", get_group, "A group with its members", response=GroupDetail)
    admin_route("GET", "/v1/admin/groups/{group_id}/members", group_members, "A group's members",
                response=MembersOut)
    admin_route("POST", "/v1/admin/groups/{group_id}/dissolve", dissolve_group, "Dissolve a group",
                response=GroupOut)
    admin_route("DELETE", "/v1/admin/messages/{conversation_id}/{seq}", remove_message,
                "Remove a message for everyone (a recall by moderation)", response=MessageOut)
    admin_route("GET", "/v1/admin/reports", list_reports, "Users' reports (paged, by state)", query=ReportsQuery,
                response=ReportsPage)
    admin_route("POST", "/v1/admin/reports/{report_id}/resolve", resolve_report,
                "Resolve a report: dismiss, remove the message or ban its sender", request=Resolve,
                response=ReportOut)
    admin_route("GET", "/v1/admin/audit", audit, "The audit log, newest first (paged)", query=AuditQuery,
                response=AuditPage)
    admin_route("GET", "/v1/admin/stats", stats, "Counts of users, groups, messages, reports, sessions, "
                "connections and jobs", response=StatsOut)
    spec.route(app, "POST", "/v1/reports", report, summary="Report a message I can see to the administrators",
               request=NewReport, response=ReportAck, status=201, auth="user", tag="reports")
