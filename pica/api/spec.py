"""Each HTTP route declared once, with its typed request and response.

The router is built from these declarations, and so is the OpenAPI document (:mod:`pica.api.openapi`): a route
cannot exist without its declaration, and a declared body is the type the handler decodes (``struct_body``,
``struct_query``) and encodes.

A request type may name, in a class attribute ``FIELD_ERRORS`` (``{"field": ErrorClass}``, ``"*"`` for any field),
the error a wrong or missing field is refused with, where the protocol promises one other than ``bad_request``
(``invalid_username`` for the username of a registration, ``invalid_credentials`` for a login's fields).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar

import msgspec
from aiohttp import web

from pica.errors import BadRequest, PicaError
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
    content_type: str = "application/json"
    """The success body's media type: ``text/plain`` for ``/metrics``, ``text/html`` for a page."""
    responses: Mapping[int, Any] | None = None
    """Other answers that are not errors ``{"code","message"}``, by status: ``{503: Health}``."""


class Operations(list[Operation]):
    """The application's declared routes, in the order they were added."""


OPERATIONS_KEY: Final = web.AppKey("pica_operations", Operations)


def route(app: web.Application, method: str, path: str, handler: Handler, *, summary: str, request: Any = None,
          response: Any = None, status: int = 200, query: Any = None, auth: Auth = "user", tag: str = "",
          content_type: str = "application/json", responses: Mapping[int, Any] | None = None) -> None:
    """Add a route to the router and its declaration to the application's list of operations."""
    if OPERATIONS_KEY not in app:
        app[OPERATIONS_KEY] = Operations()
    method = method.upper()
    app[OPERATIONS_KEY].append(Operation(method, path, handler, summary, request, response, status, query, auth,
                                         tag, content_type, responses))
    if method == "GET":
        app.router.add_get(path, handler)  # with HEAD, as aiohttp gives every GET route
    else:
        app.router.add_route(method, path, handler)


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
    """The request's JSON body as ``kind`` (an empty body counts as ``{}``); a body that is not JSON, or not that
    shape, is 400 with msgspec's description of the first problem (``Expected `int`, got `str` - at `$.to```), or
    the error ``kind.FIELD_ERRORS`` names for that field."""
    raw = await read_body(request, timeout=timeout)
    return decode_body(raw or b"{}", kind)


def decode_body(raw: bytes, kind: type[T]) -> T:
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError as exc:
        try:
            whole = msgspec.json.decode(raw)
        except MALFORMED:
            whole = None
        if not isinstance(whole, dict):
            raise BadRequest("request body must be a JSON object") from None
        raise refusal(kind, exc, "request body") from None
    except MALFORMED:
        raise BadRequest("request body must be JSON") from None


def struct_query(request: web.Request, kind: type[T]) -> T:
    """The query parameters as ``kind``, a Struct of optional fields (an empty value counts as absent). Integers
    are decimal ASCII digits (``str.isdigit`` also takes '²'), a list is comma-separated (``1,2,3``; blanks and empty
    items ignored); ranges and required fields are checked by ``kind``'s own constraints."""
    values: dict[str, Any] = {}
    for field in msgspec.structs.fields(kind):  # type: ignore[arg-type]
        raw = request.query.get(field.encode_name)
        if raw is not None and raw != "":
            values[field.encode_name] = _query_value(raw, msgspec.inspect.type_info(field.type), field.encode_name)
    try:
        return msgspec.convert(values, kind)
    except msgspec.ValidationError as exc:
        raise refusal(kind, exc, "query") from None


MAX_ID: Final = 2**53 - 1
"""Largest id, seq or count accepted from a client: what every client (JavaScript included) can represent, and well
inside SQLite's and PostgreSQL's 64-bit integers."""

_INTEGER: Final = re.compile(r"-?[0-9]{1,20}")
"""A path or query integer: ASCII digits only (``str.isdigit`` also takes '²' and other scripts' digits), at most one
minus sign (which the range check then refuses)."""


def parse_int(raw: str, name: str, minimum: int = 0) -> int:
    """A path or query integer from ``minimum`` to MAX_ID."""
    if not _INTEGER.fullmatch(raw):
        raise BadRequest(f"{name} must be an integer")
    value = int(raw)
    if value < minimum or value > MAX_ID:
        raise BadRequest(f"{name} is out of range")
    return value


def _query_value(raw: str, info: msgspec.inspect.Type, name: str) -> Any:
    if isinstance(info, msgspec.inspect.UnionType):  # `int | None`: the one real type (UNSET is left out already)
        info = next(t for t in info.types if not isinstance(t, msgspec.inspect.NoneType))
    if isinstance(info, msgspec.inspect.Metadata):  # Annotated[int, Meta(...)]: the constraints are checked later
        info = info.type
    if isinstance(info, msgspec.inspect.IntType):
        return parse_int(raw, name, minimum=-MAX_ID)  # the range is the field's own constraint
    if isinstance(info, msgspec.inspect.BoolType):
        if raw not in ("true", "false"):
            raise BadRequest(f"{name} must be true or false")
        return raw == "true"
    if isinstance(info, msgspec.inspect.ListType):
        parts = [part.strip() for part in raw.split(",")]
        try:
            return [_query_value(part, info.item_type, name) for part in parts if part]
        except BadRequest:
            raise BadRequest(f"{name} must be comma-separated integers from 1 to 2^53 - 1") from None
    return raw


_AT_FIELD: Final = re.compile(r" - at `\$\.([A-Za-z_][A-Za-z0-9_]*)")
_MISSING: Final = re.compile(r"^Object missing required field `([^`]+)`$")


def refusal(kind: Any, exc: msgspec.ValidationError, where: str) -> PicaError:
    """The error for a body or query that does not fit ``kind``: the one its ``FIELD_ERRORS`` names for the field
    at fault, or ``bad_request``."""
    text = str(exc)
    found = _AT_FIELD.search(text) or _MISSING.match(text)
    errors: Mapping[str, type[PicaError]] = getattr(kind, "FIELD_ERRORS", {})
    error = errors.get(found.group(1) if found else "", errors.get("*", BadRequest))
    return error(f"{where}: {text}")
