"""The OpenAPI 3.1 document of the HTTP API, built from the routes' declarations (:mod:`pica.api.spec`), served at
``GET /openapi.json``; and ``GET /docs``, a page that renders it with no network access (its files are in
``docs/`` beside this module: plain HTML, CSS and one script, no build step, nothing from a CDN).

Schemas come from the same ``msgspec.Struct`` types the handlers decode and encode (``msgspec.json.schema_components``),
path parameters from the ``{name}`` segments (:data:`pica.api.common.PATH_PARAMETERS` says which are integers), query
parameters from the route's query Struct, and every operation lists the shared error body ``{"code","message"}``.
"""

from __future__ import annotations

import ast
import functools
import inspect
import re
import textwrap
from http import HTTPStatus
from importlib import metadata
from pathlib import Path
from typing import Any, Final

import msgspec
from aiohttp import web

from pica.api.bodies import Error, PositiveId
from pica.api.common import PATH_PARAMETERS
from pica.api.spec import Operation, operations, route
from pica.errors import NotFound

NOT_API: Final = frozenset({
    ("GET", "/"),  # the web chat page (pica.web) ...
    ("GET", "/static/{name}"),  # ... and its files
    ("GET", "/docs"),  # this document's page ...
    ("GET", "/docs/{file}"),  # ... and its files
})
"""The routes that are pages for a browser, not API: they are not in the document. Every other route is (the
test suite checks both ways)."""

DOCS_DIR: Final = Path(__file__).resolve().parent / "docs"
_DOCS_FILES: Final = {"docs.js": "text/javascript", "docs.css": "text/css"}
# The page loads its own two files and fetches the document from its own origin; nothing else, inline or remote.
_DOCS_CSP: Final = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' "
                    "data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
_REF: Final = "#/components/schemas/{name}"
_PARAM: Final = re.compile(r"\{([^}/]+)\}")
_INT_PARAM: Final = msgspec.json.schema(PositiveId)


def document(app: web.Application) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``app``'s declared routes."""
    declared = [op for op in operations(app) if (op.method, op.path) not in NOT_API]
    bodies = [Error, *(t for op in declared for t in _body_types(op))]
    refs, components = msgspec.json.schema_components(bodies, ref_template=_REF)
    _describe_fields(bodies, components)
    schema_of = dict(zip(map(_key, bodies), refs, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    used: dict[str, int] = {}
    for op in declared:
        described = _operation(op, schema_of)
        # One handler may serve several routes (a ban and its lifting): later ones get a number.
        name = described["operationId"]
        used[name] = used.get(name, 0) + 1
        if used[name] > 1:
            described["operationId"] = f"{name}.{used[name]}"
        paths.setdefault(op.path, {})[op.method.lower()] = described
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Pica HTTP API",
            "version": _version(),
            "description": "The HTTP API of a Pica node. The conventions (strict JSON bodies, integer ranges, "
                           "errors) and each route's semantics are in docs/protocol.md, section 23; the "
                           "WebSocket and TCP protocol in the rest of that document.",
        },
        "tags": [{"name": tag} for tag in dict.fromkeys(op.tag for op in declared if op.tag)],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                                           "description": "An access token from login or refresh."}},
        },
    }


def _version() -> str:
    try:
        return metadata.version("pica")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "0"


def _describe_fields(kinds: list[Any], components: dict[str, Any]) -> None:
    """Each field's docstring (the string under it in its class) as its description: written once, beside the
    field, for readers of the code and of the document alike. RST's double backquotes become Markdown's."""
    for info in _structs(kinds):
        schema = components.get(info.cls.__name__)
        if schema is None:
            continue
        if "description" in schema:
            schema["description"] = _markdown(schema["description"])
        for name, text in _field_docs(info.cls).items():
            field = schema["properties"].get(name)
            if field is not None and "description" not in field:
                field["description"] = _markdown(text)


def _structs(kinds: list[Any]) -> list[msgspec.inspect.StructType]:
    found: dict[type, msgspec.inspect.StructType] = {}
    todo: list[msgspec.inspect.Type] = list(msgspec.inspect.multi_type_info(kinds))
    while todo:
        info = todo.pop()
        if isinstance(info, msgspec.inspect.StructType):
            if info.cls not in found:
                found[info.cls] = info
                todo += [field.type for field in info.fields]
        elif isinstance(info, msgspec.inspect.Metadata):
            todo.append(info.type)
        elif isinstance(info, msgspec.inspect.UnionType):
            todo += info.types
        elif isinstance(info, (msgspec.inspect.ListType, msgspec.inspect.DictType)):
            todo += [info.item_type] if isinstance(info, msgspec.inspect.ListType) else [info.value_type]
    return list(found.values())


@functools.cache
def _field_docs(cls: type) -> dict[str, str]:
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not issubclass(klass, msgspec.Struct) or klass is msgspec.Struct:
            continue
        body = ast.parse(textwrap.dedent(inspect.getsource(klass))).body[0]
        assert isinstance(body, ast.ClassDef)
        for field, after in zip(body.body, body.body[1:], strict=False):
            if (isinstance(field, ast.AnnAssign) and isinstance(field.target, ast.Name)
                    and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                    and isinstance(after.value.value, str)):
                docs[field.target.id] = inspect.cleandoc(after.value.value)
    return docs


def _markdown(text: str) -> str:
    return text.replace("``", "`")


def _key(kind: Any) -> str:
    return repr(kind)  # list[Group] and Group are different bodies; repr tells them apart, and is hashable


def _body_types(op: Operation) -> list[Any]:
    return [t for t in (op.request, op.response, *(op.responses or {}).values()) if t is not None]


def _operation(op: Operation, schema_of: dict[str, Any]) -> dict[str, Any]:
    described: dict[str, Any] = {"operationId": f"{op.handler.__module__.rsplit('.', 1)[-1]}.{op.handler.__name__}",
                                 "summary": op.summary}
    if op.tag:
        described["tags"] = [op.tag]
    notes = [_markdown(inspect.cleandoc(op.handler.__doc__))] if op.handler.__doc__ else []
    if op.auth == "admin":
        notes.append("**Administrators only**: the bearer token must be an administrator's.")
    if notes:
        described["description"] = "\n\n".join(notes)
    if op.auth != "none":
        described["security"] = [{"bearer": []}]
        described["x-pica-auth"] = op.auth
    parameters = [_path_parameter(name) for name in _PARAM.findall(op.path)] + _query_parameters(op.query)
    if parameters:
        described["parameters"] = parameters
    if op.request is not None:
        described["requestBody"] = {"required": True,
                                    "content": {"application/json": {"schema": schema_of[_key(op.request)]}}}
    responses: dict[str, Any] = {str(op.status): _answer(op, op.status, op.response, schema_of)}
    for status, kind in (op.responses or {}).items():
        responses[str(status)] = _answer(op, status, kind, schema_of)
    error = {"content": {"application/json": {"schema": schema_of[_key(Error)]}}}
    responses["4XX"] = {"description": "Refused: `{\"code\", \"message\"}` (codes in protocol section 19)", **error}
    responses["5XX"] = {"description": "Failed; `retryable` says whether sending it again can help", **error}
    described["responses"] = responses
    return described


def _answer(op: Operation, status: int, kind: Any, schema_of: dict[str, Any]) -> dict[str, Any]:
    if op.status == 101:
        return {"description": "Switching Protocols: the connection speaks WebSocket from here on"}
    if kind is None:
        if op.status == 204:
            return {"description": "Done; no body"}
        return {"description": "OK", "content": {op.content_type: {"schema": {"type": "string"}}}}
    return {"description": HTTPStatus(status).phrase,
            "content": {op.content_type if status == op.status else "application/json":
                        {"schema": schema_of[_key(kind)]}}}


def _path_parameter(name: str) -> dict[str, Any]:
    schema = _INT_PARAM if PATH_PARAMETERS.get(name) is int else {"type": "string"}
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _query_parameters(kind: Any) -> list[dict[str, Any]]:
    if kind is None:
        return []
    (ref,), components = msgspec.json.schema_components([kind], ref_template=_REF)
    assert set(components) == {kind.__name__}, "query parameters are scalars or lists of them"
    struct = components[ref["$ref"].rsplit("/", 1)[-1]]
    required = set(struct.get("required", ()))
    docs = _field_docs(kind)
    parameters = []
    for name, schema in struct["properties"].items():
        schema = _not_null(schema)
        parameter = {"name": name, "in": "query", "required": name in required, "schema": schema}
        if schema.get("type") == "array":
            parameter.update(style="form", explode=False)  # one parameter, comma-separated: user_ids=1,2,3
        if name in docs:
            parameter["description"] = _markdown(docs[name])
        parameters.append(parameter)
    return parameters


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is a value or absent: ``int | None`` (None: absent) is an integer there."""
    schema = {key: value for key, value in schema.items() if not (key == "default" and value is None)}
    choices = [choice for choice in schema.pop("anyOf", ()) if choice != {"type": "null"}]
    if len(choices) == 1:
        schema.update(choices[0])
    elif choices:
        schema["anyOf"] = choices
    return schema


class _Cached:
    """The document's bytes, built at the first request: every route is declared by then."""

    def __init__(self) -> None:
        self.body: bytes | None = None


_CACHE_KEY: Final = web.AppKey("pica_openapi", _Cached)


async def openapi_json(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 document of this API (this document)."""
    cached = request.app[_CACHE_KEY]
    if cached.body is None:
        cached.body = msgspec.json.encode(document(request.app)) + b"\n"
    return web.Response(body=cached.body, content_type="application/json")


async def docs_page(request: web.Request) -> web.FileResponse:
    """The API's reference page, rendered in the browser from ``/openapi.json``."""
    return web.FileResponse(DOCS_DIR / "index.html", headers={
        "Content-Type": "text/html; charset=utf-8", "Content-Security-Policy": _DOCS_CSP,
        "X-Frame-Options": "DENY", "Cache-Control": "no-cache"})


async def docs_file(request: web.Request) -> web.FileResponse:
    name = request.match_info["file"]
    if name not in _DOCS_FILES:
        raise NotFound(f"no file {name!r} of the docs page")
    return web.FileResponse(DOCS_DIR / name, headers={"Content-Type": _DOCS_FILES[name] + "; charset=utf-8",
                                                      "Cache-Control": "no-cache"})


def add_routes(app: web.Application) -> None:
    app[_CACHE_KEY] = _Cached()
    route(app, "GET", "/openapi.json", openapi_json, summary="This API's OpenAPI 3.1 document",
          response=dict[str, Any], auth="none", tag="operations")
    app.router.add_get("/docs", docs_page)
    app.router.add_get("/docs/{file}", docs_file)
