"""The HTTP API (JSON in, JSON out). Every error is ``{"code", "message"}`` with a fitting status.

This module builds the application: error mapping, health and metrics; :mod:`pica.api.auth`,
:mod:`pica.api.messages`, :mod:`pica.api.groups`, :mod:`pica.api.social`, :mod:`pica.api.me` and
:mod:`pica.api.dispatch` add their routes, each declared with :func:`pica.api.spec.route`, and
:mod:`pica.api.openapi` the document built from those declarations and its page.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

import msgspec
from aiohttp import web

from pica.api import (
    admin,
    auth,
    calls,
    devices,
    dispatch,
    files,
    groups,
    me,
    messages,
    openapi,
    pins,
    reactions,
    social,
)
from pica.api.checks import ResponseCheck, response_check_middleware
from pica.api.common import STARTED_KEY, check_http_rate, error_response, json_response, services
from pica.api.spec import route
from pica.errors import BadRequest, InternalError, MethodNotAllowed, NotFound, PayloadTooLarge, PicaError
from pica.gateway.services import GatewayServices
from pica.gateway.ws import SERVICES_KEY, websocket_handler
from pica.metrics import CONTENT_TYPE
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


_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The latency of every request by method and route template (``/v1/groups/{group_id}``, never the raw path:
    the label's values are bounded by the routes, whatever clients ask for). A WebSocket upgrade lasts as long as
    its socket, so it is left out."""
    request[STARTED_KEY] = started = time.monotonic()
    response = await handler(request)
    if response.status != 101:
        resource = request.match_info.route.resource
        if resource is not None:
            method, route = request.match_info.route.method, resource.canonical
        else:  # 404, 405: no route; the method is the client's, so only the standard ones are kept
            method, route = (request.method if request.method in _METHODS else "other"), "unmatched"
        services(request).metrics.observe_http(method, route, time.monotonic() - started)
    return response


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        check_http_rate(request)
        return await handler(request)
    except PicaError as exc:
        return _error(request, exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        error_class = _STATUS_ERRORS.get(exc.status, BadRequest if exc.status < 500 else InternalError)
        return _error(request, error_class(exc.reason))
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return _error(request, InternalError("internal error"))


def _error(request: web.Request, error: PicaError) -> web.Response:
    services(request).metrics.error(error, "http")
    return error_response(error)


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
    """The node's metrics (pica/metrics.py) in the Prometheus text format."""
    node = services(request)
    return await metrics_response(node.metrics.render, node.job_stats)


async def metrics_response(render: Callable[[Mapping[str, float] | None], bytes],
                           job_stats: Callable[[], Awaitable[dict[str, float]]] | None) -> web.Response:
    """``/metrics`` of a node or of a ``pica worker``: the job queue's figures read first (the store read is
    asynchronous, the registry's collection is not), then everything rendered."""
    jobs = None
    if job_stats is not None:
        try:
            jobs = await job_stats()
        except PicaError:  # the store cannot answer now: the other metrics still can
            log.warning("job metrics unavailable", exc_info=True)
    response = web.Response(body=render(jobs))
    response.headers["Content-Type"] = CONTENT_TYPE
    return response


def build_app(node: GatewayServices, check: ResponseCheck | None = None) -> web.Application:
    """``check``: compare every success answer with its route's declared type (the test suite's check)."""
    from pica.api.headers import security_headers

    middlewares = [metrics_middleware, security_headers, error_middleware]
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
    reactions.add_routes(app)
    groups.add_routes(app)
    social.add_routes(app)
    me.add_routes(app)
    devices.add_routes(app)
    calls.add_routes(app)
    dispatch.add_routes(app)
    files.add_routes(app)
    openapi.add_routes(app)  # /openapi.json and its page, /docs
    admin.add_routes(app)
    pins.add_routes(app)
    add_chat_page_routes(app)  # the web chat page: / and /static/<name>
    if check is not None:
        check.watch(app)
    return app
