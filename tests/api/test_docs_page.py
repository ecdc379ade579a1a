"""GET /docs renders the OpenAPI document in headless Chromium with the network cut off: nothing but the node's own
origin can be reached (a resolver that resolves nothing, and every request to another origin aborted and recorded),
and the page still shows every operation. Browser needs as in tests/web/test_web_chat.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Final

import pytest

from tests.api.test_openapi import fetch_document
from tests.conftest import Node
from tests.web.conftest import CHROMIUM, CHROMIUM_ARGS, WAIT_MS, require_browser

if TYPE_CHECKING:
    from playwright.async_api import Browser

pytestmark = pytest.mark.timeout(120)

NO_NETWORK: Final = ["--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    require_browser()
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS + NO_NETWORK,
                                                    timeout=30_000)
        try:
            yield chromium
        finally:
            await chromium.close()


async def test_the_docs_page_shows_every_operation_without_the_network(node: Node, browser: Browser) -> None:
    from playwright.async_api import Route, expect

    document = await fetch_document(node)
    operations = [(method.upper(), path, op) for path, methods in document["paths"].items()
                  for method, op in methods.items()]
    context = await browser.new_context()
    context.set_default_timeout(WAIT_MS)
    elsewhere: list[str] = []

    async def only_the_node(route: Route) -> None:
        if route.request.url.startswith(node.url + "/"):
            await route.continue_()
        else:
            elsewhere.append(route.request.url)
            await route.abort()

    await context.route("**/*", only_the_node)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: errors.append(m.text) if m.type in ("error", "warning") else None)

    await page.goto(node.url + "/docs")
    cards = page.locator("section.tag:not(#schemas) article.op")
    await expect(cards).to_have_count(len(operations))
    await expect(page.locator("#title")).to_have_text("Pica HTTP API")
    for method, path, op in operations:
        card = page.locator(f'[id="op-{op["operationId"]}"]')
        await expect(card.locator(".method")).to_have_text(method)
        await expect(card.locator(".path")).to_have_text(path)
    send = page.locator('[id="op-messages.send_message"]')
    await expect(send).to_contain_text("client_msg_id")  # the request body's fields, in the operation itself
    await expect(page.locator('[id="schema-Send"]')).to_contain_text("client_msg_id")
    await expect(send.locator(".auth")).to_have_text("bearer token")

    await page.locator("#filter").fill("presence")
    await expect(page.locator("section.tag:not(#schemas) article.op:visible")).to_have_count(1)

    assert elsewhere == [], "the page asked for something outside the node"
    assert errors == [], errors
    await context.close()


async def test_the_docs_page_is_locked_down_like_the_chat_page(node: Node) -> None:
    """Its own scripts and styles only, never framed; its files by name only."""
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with session.get(node.url + "/docs") as resp:
            headers: Any = resp.headers
            assert resp.status == 200 and '<script type="module" src="/docs/docs.js">' in await resp.text()
        assert "script-src 'self'" in headers["Content-Security-Policy"]
        assert "'unsafe-inline'" not in headers["Content-Security-Policy"]
        assert headers["X-Frame-Options"] == "DENY"
        for name, kind in [("docs.js", "text/javascript"), ("docs.css", "text/css")]:
            async with session.get(f"{node.url}/docs/{name}") as resp:
                assert (resp.status, resp.content_type) == (200, kind)
        for bad in ("index.html", "..%2fopenapi.py", "docs.JS", "missing.js"):
            async with session.get(f"{node.url}/docs/{bad}") as resp:
                assert (resp.status, (await resp.json())["code"]) == (404, "not_found"), bad
