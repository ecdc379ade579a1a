"""The HTTP API (JSON in, JSON out). Every error is ``{"code", "message"}`` with a fitting status."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import web

from pica.core.chat import message_frame
from pica.errors import (
    BadRequest,
    InternalError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    PicaError,
    Unauthenticated,
)
from pica.gateway.services import GatewayServices
from pica.gateway.ws import SERVICES_KEY, websocket_handler

log = logging.getLogger(__name__)

_json_encode = msgspec.json.Encoder().encode
_json_decode = msgspec.json.Decoder().decode
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=_json_encode(data), status=status, content_type="application/json")


def error_response(error: PicaError) -> web.Response:
    return json_response(error.to_dict(), status=error.http_status)


# Framework-raised statuses mapped onto the error hierarchy, so that every error body has a documented code.
_STATUS_ERRORS: dict[int, type[PicaError]] = {
    400: BadRequest,
    404: NotFound,
    405: MethodNotAllowed,
    413: PayloadTooLarge,
}


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except PicaError as exc:
        return error_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        error_class = _STATUS_ERRORS.get(exc.status, BadRequest if exc.status < 500 else InternalError)
        return error_response(error_class(exc.reason))
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(InternalError("internal error"))


async def _json_body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        data = _json_decode(raw)
    except msgspec.DecodeError:
        raise BadRequest("request body must be JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object")
    return data


def _services(request: web.Request) -> GatewayServices:
    return request.app[SERVICES_KEY]


async def _caller(request: web.Request) -> int:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("send 'Authorization: Bearer <token>'")
    claims = await _services(request).accounts.authenticate(token.strip())
    return claims.user_id


def _int_param(request: web.Request, name: str, *, minimum: int = 0) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer") from None
    if value < minimum or value > 2**62:
        raise BadRequest(f"{name} is out of range")
    return value


# ------------------------------------------------------------------------------------------------ handlers


async def healthz(request: web.Request) -> web.Response:
    services = _services(request)
    if not services.accepting:
        return json_response({"status": "draining"}, status=503)
    return json_response({"status": "ok"})


async def register(request: web.Request) -> web.Response:
    body = await _json_body(request)
    user_id = await _services(request).accounts.register(body.get("username"), body.get("password"))
    return json_response({"user_id": user_id}, status=201)


async def login(request: web.Request) -> web.Response:
    body = await _json_body(request)
    result = await _services(request).accounts.login(body.get("username"), body.get("password"))
    return json_response({"token": result.token, "user_id": result.user_id, "expires_at": result.expires_at})


async def send_message(request: web.Request) -> web.Response:
    user_id = await _caller(request)
    body = await _json_body(request)
    to = body.get("to")
    client_msg_id = body.get("client_msg_id")
    if not isinstance(to, int) or isinstance(to, bool) or to < 1:
        raise BadRequest("'to' must be a user id")
    if not isinstance(client_msg_id, str) or not 1 <= len(client_msg_id) <= 64:
        raise BadRequest("'client_msg_id' must be a string of 1-64 characters")
    services = _services(request)
    ack = await services.chat.send_direct(user_id, to, client_msg_id, body.get("body"))
    services.metrics.messages_acked += 1
    return json_response(
        {
            "conversation_id": ack.conversation_id,
            "seq": ack.seq,
            "ts": ack.ts,
            "client_msg_id": ack.client_msg_id,
            "duplicate": ack.duplicate,
        }
    )


async def conversation_messages(request: web.Request) -> web.Response:
    user_id = await _caller(request)
    conversation_id = request.match_info["conversation_id"]
    limit = _int_param(request, "limit", minimum=1)
    page = await _services(request).chat.history(
        user_id,
        conversation_id,
        after=_int_param(request, "after_seq"),
        before=_int_param(request, "before_seq"),
        limit=limit,
    )
    messages = [msgspec.structs.asdict(message_frame(m)) for m in page.messages]
    for m in messages:
        m.pop("t", None)
    return json_response({"conversation_id": conversation_id, "messages": messages, "more": page.more})


async def conversations(request: web.Request) -> web.Response:
    user_id = await _caller(request)
    items = await _services(request).chat.conversations(user_id)
    return json_response(
        {
            "conversations": [
                {
                    "conversation_id": c.conversation_id,
                    "kind": c.kind,
                    "last_seq": c.last_seq,
                    "last_ts": c.last_ts,
                    "delivered_seq": c.delivered_seq,
                    "read_seq": c.read_seq,
                }
                for c in items
            ]
        }
    )


async def metrics(request: web.Request) -> web.Response:
    services = _services(request)
    m = services.metrics
    lines = [
        "# TYPE pica_connections gauge",
        f"pica_connections {services.hub.connection_count}",
        "# TYPE pica_online_users gauge",
        f"pica_online_users {services.hub.online_users}",
        "# TYPE pica_connections_opened_total counter",
        f"pica_connections_opened_total {m.connections_opened}",
        "# TYPE pica_frames_in_total counter",
        f"pica_frames_in_total {m.frames_in}",
        "# TYPE pica_messages_acked_total counter",
        f"pica_messages_acked_total {m.messages_acked}",
        "# TYPE pica_slow_consumers_total counter",
        f"pica_slow_consumers_total {m.slow_consumers}",
    ]
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")


def build_app(services: GatewayServices) -> web.Application:
    app = web.Application(middlewares=[error_middleware], client_max_size=services.limits.max_http_body_bytes)
    app[SERVICES_KEY] = services
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/v1/auth/register", register)
    app.router.add_post("/v1/auth/login", login)
    app.router.add_post("/v1/messages", send_message)
    app.router.add_get("/v1/conversations", conversations)
    app.router.add_get("/v1/conversations/{conversation_id}/messages", conversation_messages)
    app.router.add_get("/v1/ws", websocket_handler)
    return app
