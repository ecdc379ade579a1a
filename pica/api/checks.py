"""The test suite's check that every answer is what its route declares (:mod:`pica.api.spec`).

With a ``ResponseCheck`` handed to ``build_app`` (tests/conftest.py does, for every node it starts), each answer a
handler returns is compared with its route's declaration: the success status, and the body decoded strictly as the
declared type and encoded again, which must give the same JSON (a field the type does not declare, or one it
declares and the answer lacks, makes a difference). A mismatch is logged, recorded, and answered 500, so that every
API test doubles as a check of the OpenAPI document. Errors raised as exceptions (the ``{"code","message"}`` bodies)
and streamed answers (``GET /v1/me/export``, the WebSocket upgrade) are not seen here.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

import msgspec
from aiohttp import web

from pica.api.spec import Operation, operations
from pica.errors import InternalError

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ResponseCheck:
    """What the check found: one line per answer that did not match its declaration."""

    def __init__(self) -> None:
        self.mismatches: list[str] = []
        self._declared: dict[tuple[str, str], Operation] = {}

    def watch(self, app: web.Application) -> None:
        self._declared = {(op.method, op.path): op for op in operations(app)}
        app[CHECK_KEY] = self

    def problem(self, request: web.Request, response: web.StreamResponse) -> str | None:
        """What is wrong with this answer, if anything."""
        resource = request.match_info.route.resource
        method = "GET" if request.method == "HEAD" else request.method
        op = self._declared.get((method, resource.canonical)) if resource is not None else None
        if op is None or response.prepared or request.method == "HEAD":
            return None  # not an API route, or already sent (a stream, an upgrade)
        if response.status == op.status:
            kind = op.response
        elif op.responses and response.status in op.responses:
            kind = op.responses[response.status]
        elif 200 <= response.status < 300:
            return f"status {response.status}, declared {op.status}"
        else:
            return f"status {response.status} returned (errors are raised), declared {op.status}"
        return _body_problem(response, kind, op.content_type)


CHECK_KEY: Final = web.AppKey("pica_response_check", ResponseCheck)


def _body_problem(response: web.StreamResponse, kind: Any, content_type: str) -> str | None:
    body = response.body if isinstance(response, web.Response) and isinstance(response.body, bytes) else None
    if kind is None:
        if content_type == "application/json" and body:
            return f"a body, declared none: {body[:200]!r}"
        if body and response.content_type != content_type:
            return f"Content-Type {response.content_type}, declared {content_type}"
        return None
    if response.content_type != "application/json" or body is None:
        return f"Content-Type {response.content_type} (or a streamed body), declared JSON"
    try:
        value = msgspec.json.decode(body, type=kind)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        return f"does not decode as {_name(kind)}: {exc}"
    sent, declared = msgspec.json.decode(body), msgspec.json.decode(msgspec.json.encode(value))
    if sent != declared:
        return f"fields that {_name(kind)} does not declare, or lacks: sent {body[:300]!r}"
    return None


def _name(kind: Any) -> str:
    return getattr(kind, "__name__", repr(kind))


@web.middleware
async def response_check_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    check = request.app[CHECK_KEY]
    found = check.problem(request, response)
    if found is not None:
        line = f"{request.method} {request.path}: {found}"
        check.mismatches.append(line)
        log.error("an answer does not match its route's declaration: %s", line)
        raise InternalError("the answer does not match its declared type")
    return response
