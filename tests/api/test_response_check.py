"""Under the test suite every HTTP answer is checked against its route's declaration (pica/api/checks.py, turned on
by tests/conftest.py's running()): an answer that is not what the OpenAPI document says fails loudly. Shown here on
throwaway routes declared wrongly, beside ones declared right."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import aiohttp
import msgspec
import pytest
from aiohttp import web

from pica.api.bodies import Ok
from pica.api.checks import ResponseCheck
from pica.api.http import build_app
from pica.api.spec import route
from tests.conftest import Node


class Greeting(msgspec.Struct):
    text: str
    count: int


def answering(body: object, status: int = 200) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response(body, status=status)
    return handler


@asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_an_answer_that_is_not_what_its_route_declares_fails_loudly(
        node: Node, caplog: pytest.LogCaptureFixture) -> None:
    """Each throwaway route declares ``Greeting`` (or ``Ok``) and answers something else; one answers right."""
    assert node.server.services is not None
    check = ResponseCheck()
    app = build_app(node.server.services, check)
    wrong = {
        "/t/wrong-type": answering({"text": "hi", "count": "two"}),
        "/t/missing-field": answering({"text": "hi"}),
        "/t/undeclared-field": answering({"text": "hi", "count": 2, "extra": True}),
        "/t/other-status": answering({"text": "hi", "count": 2}, status=201),
        "/t/not-json": answering("hi"),
    }
    for path, handler in wrong.items():
        route(app, "GET", path, handler, summary="wrongly declared", response=Greeting, auth="none")
    route(app, "GET", "/t/right", answering({"text": "hi", "count": 2}), summary="right", response=Greeting,
          auth="none")
    route(app, "POST", "/t/no-body-declared", answering({"ok": True}), summary="wrong", status=204, auth="none")
    route(app, "POST", "/t/ok", answering({"ok": True}), summary="right", response=Ok, auth="none")
    check.watch(app)

    with caplog.at_level(logging.ERROR, logger="pica.api.checks"):
        async with serving(app) as url, aiohttp.ClientSession() as session:
            answers = {}
            for path in [*wrong, "/t/right"]:
                async with session.get(url + path) as resp:
                    answers[path] = (resp.status, await resp.json())
            for path in ("/t/no-body-declared", "/t/ok"):
                async with session.post(url + path) as resp:
                    answers[path] = (resp.status, await resp.json())

    refused = {path for path, (status, body) in answers.items() if status == 500 and body["code"] == "internal"}
    assert refused == {*wrong, "/t/no-body-declared"}
    assert answers["/t/right"] == (200, {"text": "hi", "count": 2})
    assert answers["/t/ok"] == (200, {"ok": True})
    assert len(check.mismatches) == 6
    assert "Expected `int`, got `str` - at `$.count`" in next(m for m in check.mismatches if "wrong-type" in m)
    assert "status 201, declared 200" in next(m for m in check.mismatches if "other-status" in m)
    assert sum("does not match its route's declaration" in r.message for r in caplog.records) == 6
