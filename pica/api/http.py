"""The HTTP API (JSON in, JSON out). Every error is ``{"code", "message"}`` with a fitting status.

This module builds the application: error mapping, health and metrics; :mod:`pica.api.auth`,
:mod:`pica.api.messages`, :mod:`pica.api.groups` and :mod:`pica.api.social` add their routes.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from pica.api import auth, calls, dispatch, groups, me, messages, social
from pica.api.common import check_http_rate, error_response, json_response, services
from pica.errors import BadRequest, InternalError, MethodNotAllowed, NotFound, PayloadTooLarge, PicaError
from pica.gateway.services import GatewayServices
from pica.gateway.ws import SERVICES_KEY, websocket_handler
from pica.web import add_routes as add_chat_page_routes

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

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
        check_http_rate(request)
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


async def healthz(request: web.Request) -> web.Response:
    node = services(request)
    if not node.accepting:
        return json_response({"status": "draining"}, status=503)
    if node.cluster_healthy is not None:
        # A node cut off from the bus still takes sends (the store is the record) and is still worth routing to,
        # so it stays 200; the field is for monitoring.
        return json_response({"status": "ok", "cluster": "ok" if node.cluster_healthy() else "degraded"})
    return json_response({"status": "ok"})


async def metrics(request: web.Request) -> web.Response:
    node = services(request)
    m = node.metrics
    values: list[tuple[str, str, float]] = [
        ("pica_connections", "gauge", node.hub.connection_count),
        ("pica_online_users", "gauge", node.hub.online_users),
        ("pica_connections_opened_total", "counter", m.connections_opened),
        ("pica_frames_in_total", "counter", m.frames_in),
        ("pica_messages_acked_total", "counter", m.messages_acked),
        ("pica_slow_consumers_total", "counter", m.slow_consumers),
        ("pica_connections_refused_total", "counter", node.address_slots.refused),
        ("pica_sessions_over_limit_total", "counter", m.sessions_over_limit),
    ]
    if node.cluster_stats is not None:
        stats = node.cluster_stats()
        values += [
            ("pica_cluster_live_nodes", "gauge", stats.get("live_nodes", 0)),
            ("pica_cluster_outbox", "gauge", stats.get("outbox", 0)),
            ("pica_cluster_published_total", "counter", stats.get("published", 0)),
            ("pica_cluster_received_total", "counter", stats.get("received", 0)),
            ("pica_cluster_dropped_total", "counter", stats.get("dropped", 0)),
            ("pica_cluster_resyncs_total", "counter", stats.get("resyncs", 0)),
            ("pica_cluster_presence_fallbacks_total", "counter", stats.get("presence_fallbacks", 0)),
        ]
    if node.job_stats is not None:
        try:
            values += [(f"pica_jobs_{name}", "counter" if name.endswith("_total") else "gauge", value)
                       for name, value in (await node.job_stats()).items()]
        except PicaError:  # the store cannot answer now: the other metrics still can
            log.warning("job metrics unavailable", exc_info=True)
    lines = []
    for name, kind, value in values:
        lines += [f"# TYPE {name} {kind}", f"{name} {value}"]
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")


def build_app(node: GatewayServices) -> web.Application:
    from pica.api.headers import security_headers

    app = web.Application(middlewares=[security_headers, error_middleware],
                          client_max_size=node.limits.max_http_body_bytes)
    app[SERVICES_KEY] = node
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    auth.add_routes(app)
    app.router.add_get("/v1/ws", websocket_handler)
    messages.add_routes(app)
    groups.add_routes(app)
    social.add_routes(app)
    me.add_routes(app)
    calls.add_routes(app)
    dispatch.add_routes(app)
    add_chat_page_routes(app)  # the web chat page: / and /static/<name>
    return app
