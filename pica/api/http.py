"""The HTTP API (JSON in, JSON out). Every error is ``{"code", "message"}`` with a fitting status.

This module builds the application: error mapping, health and metrics; :mod:`pica.api.auth`,
:mod:`pica.api.messages`, :mod:`pica.api.groups`, :mod:`pica.api.social`, :mod:`pica.api.me` and
:mod:`pica.api.dispatch` add their routes, each declared with :func:`pica.api.spec.route`, and
:mod:`pica.api.openapi` the document built from those declarations and its page.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import msgspec
from aiohttp import web

from pica.api import admin, auth, calls, devices, dispatch, files, groups, me, messages, openapi, social
from pica.api.checks import ResponseCheck, response_check_middleware
from pica.api.common import check_http_rate, error_response, json_response, services
from pica.api.spec import route
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


class Health(msgspec.Struct, omit_defaults=True):
    status: str
    """``ok``; ``draining`` (503) during a graceful shutdown."""
    cluster: str | msgspec.UnsetType = msgspec.UNSET
    """Cluster mode only: ``ok``, or ``degraded`` while the node is cut off from the bus."""


class WsQuery(msgspec.Struct):
    """The upgrade request's parameters (protocol section 2.1)."""

    encoding: str | None = None
    """``msgpack``: answer in binary MessagePack frames until an ``auth`` frame says otherwise; else JSON."""
    device: str | None = None
    """Device label, with header authentication only (cut to 64 characters)."""


async def healthz(request: web.Request) -> web.Response:
    node = services(request)
    if not node.accepting:
        return json_response(Health("draining"), status=503)
    if node.cluster_healthy is not None:
        # A node cut off from the bus still takes sends (the store is the record) and is still worth routing to,
        # so it stays 200; the field is for monitoring.
        return json_response(Health("ok", "ok" if node.cluster_healthy() else "degraded"))
    return json_response(Health("ok"))


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


def build_app(node: GatewayServices, check: ResponseCheck | None = None) -> web.Application:
    """``check``: compare every success answer with its route's declared type (the test suite's check)."""
    from pica.api.headers import security_headers

    middlewares = [security_headers, error_middleware]
    if check is not None:
        middlewares.append(response_check_middleware)  # inside error_middleware: a mismatch answers 500
    app = web.Application(middlewares=middlewares, client_max_size=node.limits.max_http_body_bytes)
    app[SERVICES_KEY] = node
    route(app, "GET", "/healthz", healthz, summary="Is this node up (for load balancers)", response=Health,
          responses={503: Health}, auth="none", tag="operations")
    route(app, "GET", "/metrics", metrics, summary="Prometheus metrics", auth="none", tag="operations",
          content_type="text/plain")
    auth.add_routes(app)
    route(app, "GET", "/v1/ws", websocket_handler, summary="The WebSocket gateway (protocol section 2.1)",
          query=WsQuery, status=101, auth="none", tag="operations")
    messages.add_routes(app)
    groups.add_routes(app)
    social.add_routes(app)
    me.add_routes(app)
    devices.add_routes(app)
    calls.add_routes(app)
    dispatch.add_routes(app)
    files.add_routes(app)
    openapi.add_routes(app)  # /openapi.json and its page, /docs
    admin.add_routes(app)
    add_chat_page_routes(app)  # the web chat page: / and /static/<name>
    if check is not None:
        check.watch(app)
    return app
