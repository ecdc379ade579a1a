"""Accounts and sessions over HTTP: register, login, refresh, logout, the session list, password change
(protocol §23.1)."""

from __future__ import annotations

from aiohttp import web

from pica.api.common import client_address, identity, json_body, json_response, services
from pica.core.sessions import SessionTokens
from pica.errors import BadRequest


def _session_body(tokens: SessionTokens) -> dict[str, object]:
    return {
        "token": tokens.token,
        "user_id": tokens.user_id,
        "expires_at": tokens.expires_at,
        "refresh_token": tokens.refresh_token,
        "refresh_expires_at": tokens.refresh_expires_at,
        "session_id": tokens.session_id,
    }


def _user_agent(request: web.Request) -> str:
    return request.headers.get("User-Agent", "")


async def register(request: web.Request) -> web.Response:
    body = await json_body(request)
    user_id = await services(request).accounts.register(body.get("username"), body.get("password"),
                                                        client_address(request), invite=body.get("invite"))
    return json_response({"user_id": user_id}, status=201)


async def login(request: web.Request) -> web.Response:
    body = await json_body(request)
    tokens = await services(request).accounts.login(body.get("username"), body.get("password"),
                                                    client_address(request), _user_agent(request))
    return json_response(_session_body(tokens))


async def refresh(request: web.Request) -> web.Response:
    body = await json_body(request)
    tokens = await services(request).accounts.sessions.refresh(body.get("refresh_token"), client_address(request))
    return json_response(_session_body(tokens))


async def logout(request: web.Request) -> web.Response:
    who = await identity(request)
    await services(request).accounts.sessions.end(who.user_id, who.session_id, "logout")
    return web.Response(status=204)


async def list_sessions(request: web.Request) -> web.Response:
    who = await identity(request)
    rows = await services(request).accounts.sessions.list(who.user_id)
    return json_response({"sessions": [
        {
            "session_id": s.session_id,
            "created_at": s.created_at,
            "last_used_at": s.last_used_at,
            "expires_at": s.expires_at,
            "address": s.address,
            "user_agent": s.user_agent,
            "current": s.session_id == who.session_id,
        }
        for s in rows
    ]})


async def end_session(request: web.Request) -> web.Response:
    who = await identity(request)
    session_id = request.match_info["session_id"]
    if len(session_id) > 64:
        raise BadRequest("session_id is too long")
    await services(request).accounts.sessions.end(who.user_id, session_id, "revoked_by_user")
    return web.Response(status=204)


async def change_password(request: web.Request) -> web.Response:
    who = await identity(request)
    body = await json_body(request)
    ended = await services(request).accounts.change_password(who, body.get("old_password"),
                                                             body.get("new_password"), client_address(request))
    return json_response({"sessions_ended": ended})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/auth/register", register)
    app.router.add_post("/v1/auth/login", login)
    app.router.add_post("/v1/auth/refresh", refresh)
    app.router.add_post("/v1/auth/logout", logout)
    app.router.add_get("/v1/sessions", list_sessions)
    app.router.add_delete("/v1/sessions/{session_id}", end_session)
    app.router.add_put("/v1/me/password", change_password)
