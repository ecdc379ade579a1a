"""Accounts and sessions over HTTP: register, login, refresh, logout, the session list, password change
(protocol §23.1)."""

from __future__ import annotations

from typing import ClassVar

import msgspec
from aiohttp import web

from pica.api.common import body_of, client_address, identity, json_response, services
from pica.api.spec import route
from pica.core.sessions import SessionTokens
from pica.errors import BadRequest, InvalidCredentials, InvalidToken, InvalidUsername, PicaError, WeakPassword


class Register(msgspec.Struct):
    username: str
    """3-32 characters of a-z, 0-9, '_', '.', '-', not starting with '.' or '-'; case-insensitive."""
    password: str
    invite: str | msgspec.UnsetType = msgspec.UNSET
    """An invite code, where ``auth.registration`` is "invite" (ignored otherwise)."""

    FIELD_ERRORS: ClassVar[dict[str, type[PicaError]]] = {"username": InvalidUsername, "password": WeakPassword}


class Registered(msgspec.Struct):
    user_id: int


class Login(msgspec.Struct):
    username: str
    password: str

    # Not a bad request: refused like wrong ones, so that a guesser learns nothing from the shape of the answer.
    FIELD_ERRORS: ClassVar[dict[str, type[PicaError]]] = {"*": InvalidCredentials}


class Refresh(msgspec.Struct):
    refresh_token: str

    FIELD_ERRORS: ClassVar[dict[str, type[PicaError]]] = {"*": InvalidToken}


class Session(msgspec.Struct):
    """The tokens of a session, as login and refresh answer them (protocol section 18). Times in seconds."""

    token: str
    user_id: int
    expires_at: int
    refresh_token: str
    refresh_expires_at: int
    session_id: str

    @classmethod
    def of(cls, t: SessionTokens) -> Session:
        return cls(t.token, t.user_id, t.expires_at, t.refresh_token, t.refresh_expires_at, t.session_id)


class SessionInfo(msgspec.Struct):
    """One live session of the caller's (times in ms); ``current``: the caller's own."""

    session_id: str
    created_at: int
    last_used_at: int
    expires_at: int
    address: str
    user_agent: str
    current: bool


class Sessions(msgspec.Struct):
    sessions: list[SessionInfo]


class PasswordChange(msgspec.Struct):
    old_password: str
    new_password: str

    FIELD_ERRORS: ClassVar[dict[str, type[PicaError]]] = {"old_password": InvalidCredentials,
                                                            "new_password": WeakPassword}


class PasswordChanged(msgspec.Struct):
    sessions_ended: int
    """Every other session of the user, ended in the same commit."""


def _user_agent(request: web.Request) -> str:
    return request.headers.get("User-Agent", "")


async def register(request: web.Request) -> web.Response:
    body = await body_of(request, Register)
    invite = None if body.invite is msgspec.UNSET else body.invite
    user_id = await services(request).accounts.register(body.username, body.password, client_address(request),
                                                        invite=invite)
    return json_response(Registered(user_id), status=201)


async def login(request: web.Request) -> web.Response:
    body = await body_of(request, Login)
    tokens = await services(request).accounts.login(body.username, body.password, client_address(request),
                                                    _user_agent(request))
    return json_response(Session.of(tokens))


async def refresh(request: web.Request) -> web.Response:
    body = await body_of(request, Refresh)
    tokens = await services(request).accounts.sessions.refresh(body.refresh_token, client_address(request))
    return json_response(Session.of(tokens))


async def logout(request: web.Request) -> web.Response:
    who = await identity(request)
    await services(request).accounts.sessions.end(who.user_id, who.session_id, "logout")
    return web.Response(status=204)


async def list_sessions(request: web.Request) -> web.Response:
    who = await identity(request)
    rows = await services(request).accounts.sessions.list(who.user_id)
    return json_response(Sessions([SessionInfo(s.session_id, s.created_at, s.last_used_at, s.expires_at, s.address,
                                               s.user_agent, s.session_id == who.session_id) for s in rows]))


async def end_session(request: web.Request) -> web.Response:
    who = await identity(request)
    session_id = request.match_info["session_id"]
    if len(session_id) > 64:
        raise BadRequest("session_id is too long")
    await services(request).accounts.sessions.end(who.user_id, session_id, "revoked_by_user")
    return web.Response(status=204)


async def change_password(request: web.Request) -> web.Response:
    who = await identity(request)
    body = await body_of(request, PasswordChange)
    ended = await services(request).accounts.change_password(who, body.old_password, body.new_password,
                                                             client_address(request))
    return json_response(PasswordChanged(ended))


def add_routes(app: web.Application) -> None:
    tag = "accounts"
    route(app, "POST", "/v1/auth/register", register, summary="Create an account", request=Register,
          response=Registered, status=201, auth="none", tag=tag)
    route(app, "POST", "/v1/auth/login", login, summary="Sign in: a new session's tokens", request=Login,
          response=Session, auth="none", tag=tag)
    route(app, "POST", "/v1/auth/refresh", refresh, summary="New tokens for a refresh token (spent)",
          request=Refresh, response=Session, auth="none", tag=tag)
    route(app, "POST", "/v1/auth/logout", logout, summary="End the caller's session", status=204, tag=tag)
    route(app, "GET", "/v1/sessions", list_sessions, summary="The caller's live sessions", response=Sessions,
          tag=tag)
    route(app, "DELETE", "/v1/sessions/{session_id}", end_session, summary="End one of the caller's sessions",
          status=204, tag=tag)
    route(app, "PUT", "/v1/me/password", change_password,
          summary="Change the password, ending every other session", request=PasswordChange,
          response=PasswordChanged, tag=tag)
