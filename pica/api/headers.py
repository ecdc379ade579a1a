"""The middleware that puts the node's common headers (:mod:`pica.gateway.http_headers`) on every HTTP response,
whichever handler (or error) produced it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from pica.gateway.http_headers import headers_for

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost, so that it also sees the error responses of ``error_middleware``."""
    headers = headers_for(request.path)
    # A WebSocket upgrade is answered (prepared) inside its handler, before this middleware sees the response:
    # the handler adds the headers itself (pica.gateway.ws).
    response = await handler(request)
    if not response.prepared:
        response.headers.update(headers)
    return response
