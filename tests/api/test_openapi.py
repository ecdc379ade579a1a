"""The OpenAPI document (GET /openapi.json) is valid OpenAPI 3.1, names every route of the API and only those, and
gives a client the shapes of bodies and parameters. That the routes answer what it says is checked on every answer
of the suite (tests/api/test_response_check.py); the streamed export, which that check cannot see, is checked here."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import msgspec
from aiohttp import web
from openapi_spec_validator import validate

from pica.api.http import build_app
from pica.api.me import Export
from pica.api.openapi import NOT_API
from tests.api.test_http import raw
from tests.conftest import Node, api, new_user


async def fetch_document(node: Node) -> dict[str, Any]:
    status, document = await raw(node, "GET", "/openapi.json")
    assert status == 200
    assert isinstance(document, dict)
    return document


def routes_of(app: web.Application) -> set[tuple[str, str]]:
    """Every route, but the HEAD aiohttp adds beside each GET (a HEAD declared on its own, as tus's, counts)."""
    routes = {(r.method, r.resource.canonical) for r in app.router.routes() if r.resource is not None}
    return {(method, path) for method, path in routes if method != "HEAD" or ("GET", path) not in routes}


async def test_the_document_is_valid_openapi_3_1(node: Node) -> None:
    document = await fetch_document(node)
    validate(document)  # raises with the first problem, if any
    assert document["openapi"] == "3.1.0"
    assert document["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
        "description": "An access token from login or refresh."}


async def test_every_route_is_in_the_document_and_every_documented_path_exists(node: Node) -> None:
    document = await fetch_document(node)
    documented = {(method.upper(), path) for path, methods in document["paths"].items() for method in methods}
    assert node.server.services is not None
    served = routes_of(build_app(node.server.services)) - NOT_API
    assert documented == served
    assert routes_of(build_app(node.server.services)) >= NOT_API, "a page listed as not API no longer exists"


async def test_a_client_reads_the_shapes_of_bodies_and_the_rules_of_access_from_it(node: Node) -> None:
    document = await fetch_document(node)
    paths, schemas = document["paths"], document["components"]["schemas"]
    send = paths["/v1/messages"]["post"]
    assert send["security"] == [{"bearer": []}]
    assert send["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Send"}
    assert set(schemas["Send"]["required"]) == {"client_msg_id", "body"}
    assert schemas["Send"]["properties"]["to"] == {"type": "integer", "minimum": 1, "maximum": 2**53 - 1,
                                                   "description": "1 to 2^53 - 1"}
    assert send["responses"]["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Ack"}
    assert send["responses"]["4XX"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    assert set(schemas["Error"]["required"]) == {"code", "message"}

    register = paths["/v1/auth/register"]["post"]
    assert "security" not in register and "201" in register["responses"]
    assert "content" not in paths["/v1/auth/logout"]["post"]["responses"]["204"]

    history = paths["/v1/conversations/{conversation_id}/messages"]["get"]["parameters"]
    assert [(p["name"], p["in"], p["required"], p["schema"].get("type")) for p in history] == [
        ("conversation_id", "path", True, "string"), ("after_seq", "query", False, "integer"),
        ("before_seq", "query", False, "integer"), ("limit", "query", False, "integer")]
    presence = paths["/v1/presence"]["get"]["parameters"]
    assert presence[0]["schema"]["maxItems"] == 500 and presence[0]["explode"] is False
    member = paths["/v1/groups/{group_id}/members/{user_id}"]["delete"]["parameters"]
    assert [p["schema"]["minimum"] for p in member] == [1, 1]


async def test_the_document_is_built_once(node: Node) -> None:
    async with aiohttp.ClientSession() as session:
        bodies = []
        for _ in range(2):
            async with session.get(node.url + "/openapi.json") as resp:
                bodies.append(await resp.read())
    assert bodies[0] == bodies[1] and json.loads(bodies[0])["paths"]


async def test_the_streamed_export_is_what_the_document_says(node: Node) -> None:
    """The response check cannot see a streamed answer; the export's declared type must decode one whole."""
    alice, bob = await new_user(node.url, "alice"), await new_user(node.url, "bob")
    await api(node, alice, "POST", "/v1/messages", json={"to": bob.user_id, "client_msg_id": "x1",
                                                         "body": {"text": "hello"}})
    await api(node, alice, "POST", "/v1/groups", json={"name": "team", "members": [bob.user_id]})
    await api(node, alice, "PUT", f"/v1/blocks/{bob.user_id}")
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {alice.token}"}) as session, \
            session.get(node.url + "/v1/me/export") as resp:
        export = msgspec.json.decode(await resp.read(), type=Export, strict=True)
    assert [m.body for m in export.messages if m.client_msg_id == "x1"] == [{"text": "hello"}]
    assert export.blocked == [bob.user_id] and [g.name for g in export.groups] == ["team"]
