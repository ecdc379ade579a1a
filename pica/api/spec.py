"""Each HTTP route declared once, with its typed request and response.

The router is built from these declarations, and so is the OpenAPI document: a route cannot exist without its
declaration, and a declared body is the type the handler decodes (``struct_body``) and encodes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar

import msgspec
from aiohttp import web

from pica.errors import BadRequest
from pica.protocol.codec import MALFORMED

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Auth = Literal["none", "user", "admin"]
"""Who may call a route: anyone, a signed-in user (``Authorization: Bearer``), or an administrator."""

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    path: str
    handler: Handler
    summary: str
    request: Any = None
    """The JSON body's type (a ``msgspec.Struct``), or None: the route takes no JSON body."""
    response: Any = None
    """The success body's type (a ``msgspec.Struct``, ``list[...]``, ...), or None: no JSON body (204, a stream)."""
    status: int = 200
    query: Any = None
    """A ``msgspec.Struct`` whose fields are the query parameters, or None."""
    auth: Auth = "user"
    tag: str = ""


class Operations(list[Operation]):
    """The application's declared routes, in the order they were added."""


OPERATIONS_KEY: Final = web.AppKey("pica_operations", Operations)


def route(app: web.Application, method: str, path: str, handler: Handler, *, summary: str, request: Any = None,
          response: Any = None, status: int = 200, query: Any = None, auth: Auth = "user", tag: str = "") -> None:
    """Add a route to the router and its declaration to the application's list of operations."""
    if OPERATIONS_KEY not in app:
        app[OPERATIONS_KEY] = Operations()
    app[OPERATIONS_KEY].append(Operation(method.upper(), path, handler, summary, request, response, status, query,
                                         auth, tag))
    app.router.add_route(method.upper(), path, handler)


def operations(app: web.Application) -> list[Operation]:
    if OPERATIONS_KEY not in app:
        return []
    declared: Operations = app[OPERATIONS_KEY]
    return list(declared)


async def read_body(request: web.Request, *, timeout: float) -> bytes:
    """The request's body, whole (within ``client_max_size``), or 400 when it does not arrive in ``timeout``."""
    try:
        async with asyncio.timeout(timeout):
            return await request.read()
    except web.RequestPayloadError:
        # The framing or the Content-Encoding is broken (gzip that is not gzip, a bad chunk size after a good chunk).
        raise BadRequest("request body could not be read: bad Content-Encoding or chunked framing") from None
    except TimeoutError:
        raise BadRequest(f"request body not received within {timeout:g} s") from None


async def struct_body(request: web.Request, kind: type[T], *, timeout: float) -> T:
    """The request's JSON body as ``kind``; a body that is not JSON, or not that shape, is 400 with msgspec's
    description of the first problem (``Expected `int`, got `str` - at `$.to```)."""
    raw = await read_body(request, timeout=timeout)
    try:
        return msgspec.json.decode(raw or b"{}", type=kind)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"request body: {exc}") from None
    except MALFORMED:
        raise BadRequest("request body must be JSON") from None
