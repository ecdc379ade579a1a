"""The chat page's Web Push in headless Chromium against a `pica serve` process with Web Push on: signing in
registers the service worker (pica/web/static/sw.js) under /static/, and the worker, handed a push as the browser
hands it one, shows the notification of docs/push.md. Chromium's own push service (which a real subscription goes to)
is out of reach from this machine, so the page's subscribe → POST /v1/devices step is left to the API tests
(tests/push/test_devices_api.py) and the encrypted delivery to the local Web Push service (tests/push/test_push.py).
Browser dependencies as in tests/web/test_web_chat.py."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from tests.conftest import PASSWORD, ServerProcess, start_server_process
from tests.push.services import vapid_key
from tests.web.conftest import CHROMIUM, CHROMIUM_ARGS, WAIT_MS, require_browser
from tests.web.conftest import expect as _expect

pytestmark = pytest.mark.timeout(120)


async def test_signing_in_registers_the_service_worker_which_shows_a_push(
        tmp_path: Path, server_process_factory: list[ServerProcess]) -> None:
    require_browser()
    from playwright.async_api import async_playwright

    config = tmp_path / "pica.toml"
    config.write_text(f'[push]\nvapid_private_key = "{vapid_key()}"\n')
    server = await asyncio.to_thread(start_server_process, tmp_path / "data", extra=["--config", str(config)])
    server_process_factory.append(server)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=30_000)
        try:
            context = await browser.new_context()
            context.set_default_timeout(WAIT_MS)
            page = await context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(server.url)
            name = f"w{uuid.uuid4().hex[:8]}"
            await page.get_by_test_id("auth-toggle").click()
            await page.get_by_test_id("auth-username").fill(name)
            await page.get_by_test_id("auth-password").fill(PASSWORD)
            await page.get_by_test_id("auth-submit").click()
            await _expect(page.get_by_test_id("me-name")).to_have_text(name)

            scope = await page.evaluate("""async () => {
                for (let i = 0; i < 200; i++) {  // registered by push.js once signed in; activated soon after
                    const registration = await navigator.serviceWorker.getRegistration("/static/");
                    if (registration && registration.active) return registration.scope;
                    await new Promise((done) => setTimeout(done, 50));
                }
                return null;
            }""")
            assert scope == f"{server.url}/static/"

            # The worker's push handler, handed a push the way the browser hands it one (DevTools'
            # ServiceWorker.deliverPushMessage: a real one would come through Chromium's push service).
            await context.grant_permissions(["notifications"], origin=server.url)
            cdp = await context.new_cdp_session(page)
            registrations: list[str] = []
            cdp.on("ServiceWorker.workerRegistrationUpdated",
                   lambda event: registrations.extend(r["registrationId"] for r in event["registrations"]
                                                      if r["scopeURL"] == scope and not r["isDeleted"]))
            await cdp.send("ServiceWorker.enable")
            await _expect(page.get_by_test_id("me-name")).to_have_text(name)  # events delivered meanwhile
            assert registrations
            push = ('{"push_id": "p-1", "conversation_id": "d:1:2", "seq": 3, "title": "alice", "body": "hi",'
                    ' "badge": 1, "tag": "d:1:2"}')
            for _ in range(2):  # the same push twice (a retry): one notification
                await cdp.send("ServiceWorker.deliverPushMessage",
                               {"origin": server.url, "registrationId": registrations[0], "data": push})
            shown = await page.evaluate("""async () => {
                const registration = await navigator.serviceWorker.getRegistration("/static/");
                for (let i = 0; i < 100; i++) {
                    const shown = await registration.getNotifications({tag: "d:1:2"});
                    if (shown.length) return shown.map((n) => [n.title, n.body, n.data.push_id]);
                    await new Promise((done) => setTimeout(done, 50));
                }
                return [];
            }""")
            assert shown == [["alice", "hi", "p-1"]]
            assert errors == []
        finally:
            await browser.close()
