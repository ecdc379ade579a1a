"""End-to-end tests of the web chat page (pica/web/static) in headless Chromium, against a real `pica serve` process.

Browser dependencies (no download at test time): Debian's Chromium (`apt-get install -y chromium`, /usr/bin/chromium)
and the Python `playwright` package (its driver ships in the wheel; `playwright install` is never run). Without them
every test here is skipped with a loud reason, and under CI=true a skip fails the run (tests/conftest.py).

Each test starts its own server process (the reconnect story stops and restarts it on the same ports) and its own
browser; each person is a separate browser context, so they share no storage.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pica.client import PicaHttp
from tests.conftest import PASSWORD, ServerProcess, start_server_process
from tests.web.conftest import Person, http_user, screenshot
from tests.web.conftest import expect as _expect

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

pytestmark = pytest.mark.timeout(120)


# ---------------------------------------------------------------------------------------------------------- stories


async def test_direct_chat_typing_receipts_and_presence(browser: Browser, server: ServerProcess) -> None:
    alice = await Person.open(browser, server.url, "alice")
    bob = await Person.open(browser, server.url, "bob")
    await alice.register()
    await bob.register()

    # Alice starts a 1:1 with Bob by username; he is online, so his dot is green once the chat exists.
    await alice.start_chat(bob.name)
    await alice.send("Hi Bob!")
    await _expect(alice.page.get_by_test_id("receipt-label")).to_have_text(re.compile("Delivered|Read"))

    # Bob's list shows the conversation, unread, with the last message; opening it marks it read.
    item = bob.conversation(alice.name)
    await _expect(item.get_by_test_id("unread-badge")).to_have_text("1")
    await _expect(item.get_by_test_id("conv-preview")).to_have_text("Hi Bob!")
    await bob.open_conversation(alice.name)
    await bob.sees("Hi Bob!")
    await _expect(item.get_by_test_id("unread-badge")).to_have_count(0)
    await _expect(alice.page.get_by_test_id("receipt-label")).to_have_text("Read")
    await _expect(alice.own_message("Hi Bob!")).to_have_attribute("data-status", "read")

    # Both ways; user text is text, never markup.
    await bob.send("Hello Alice, good to see you here.")
    await alice.sees("Hello Alice, good to see you here.")
    markup = '<img src=x onerror="window.pwned=1"><b>not bold</b>'
    await bob.send(markup)
    await alice.sees(markup)
    assert await alice.page.locator("#messages img, #messages b, #conversation-list b").count() == 0
    assert await alice.page.evaluate("window.pwned === undefined")
    await _expect(alice.conversation(bob.name).get_by_test_id("presence-dot")).to_have_attribute("data-online", "true")

    # Alice types (without sending): Bob sees it while she types, once, under the messages (not in the header, not
    # in the list as well), and it goes away ~3 s after she stops.
    box = alice.page.get_by_test_id("composer-input")
    await box.press_sequentially("I am writing a long", delay=60)
    typing = bob.page.get_by_test_id("typing-indicator")
    await _expect(typing).to_have_text(f"{alice.name} is typing…")
    await _expect(bob.page.get_by_text(re.compile("typing"))).to_have_count(1)
    await _expect(bob.conversation(alice.name).get_by_test_id("conv-preview")).to_have_text(f"You: {markup}")
    await _expect(bob.page.get_by_test_id("chat-status")).to_have_text("online")
    await _expect(typing).to_be_hidden(timeout=8_000)
    await box.press("Enter")
    await bob.sees("I am writing a long")

    # The other way: Bob's presence goes offline when he closes his page.
    await bob.page.context.close()
    await _expect(alice.conversation(bob.name).get_by_test_id("presence-dot")).to_have_attribute(
        "data-online", "false")
    await _expect(alice.page.get_by_test_id("chat-status")).to_contain_text("last seen")
    alice.assert_no_errors()
    bob.assert_no_errors()


async def test_group_chat_recall_edit_and_reload(browser: Browser, server: ServerProcess) -> None:
    alice = await Person.open(browser, server.url, "alice")
    bob = await Person.open(browser, server.url, "bob")
    await alice.register()
    await bob.register()
    carol, _, carol_token = await http_user(server.url, "carol")
    dave, _, _ = await http_user(server.url, "dave")

    # Alice creates a group with Bob and Carol (Carol uses the HTTP API, not the page).
    page = alice.page
    await page.get_by_test_id("new-group").click()
    await page.get_by_test_id("modal-field-name").fill("Book club")
    await page.get_by_test_id("modal-field-members").fill(f"{bob.name}, {carol}")
    await page.get_by_test_id("modal-submit").click()
    await _expect(page.get_by_test_id("chat-title")).to_have_text("Book club")
    await _expect(page.get_by_test_id("notice")).to_have_text("You created the group “Book club”")
    await _expect(page.get_by_test_id("chat-status")).to_have_text("3 members")

    await alice.send("Welcome to the book club!")
    await bob.open_conversation("Book club")
    await bob.sees("Welcome to the book club!")
    await bob.send("Chapter 3 tonight?")
    await alice.sees("Chapter 3 tonight?")

    # Carol writes over HTTP; both pages get it live and learn her name from GET /v1/users/{id}.
    async with PicaHttp(server.url, carol_token) as http:
        group = (await http.request("GET", "/v1/groups"))["groups"][0]
        await http.request("POST", "/v1/messages", json={
            "group_id": group["group_id"], "client_msg_id": "c1", "body": {"text": "Count me in"}})
    await alice.sees("Count me in")
    await bob.sees("Count me in")
    await _expect(bob.message("Count me in")).to_contain_text(carol)

    # Alice adds Dave by username; everyone sees the notice.
    await page.get_by_test_id("add-member").click()
    await page.get_by_test_id("modal-field-usernames").fill(dave)
    await page.get_by_test_id("modal-submit").click()
    await _expect(page.get_by_test_id("notice").last).to_have_text(f"You added {dave}")
    await _expect(bob.page.get_by_test_id("notice").last).to_contain_text(f"added {dave}")
    await _expect(page.get_by_test_id("chat-status")).to_have_text("4 members")

    # Edit: Bob sees the new text and "(edited)".
    await alice.send("Meet at 7pn")
    await bob.sees("Meet at 7pn")
    await alice.message_action("Meet at 7pn", "edit")
    await page.get_by_test_id("modal-field-text").fill("Meet at 7pm")
    await page.get_by_test_id("modal-submit").click()
    await alice.sees("Meet at 7pm")
    await bob.sees("Meet at 7pm")
    await _expect(bob.message("Meet at 7pm").get_by_test_id("message-edited")).to_have_text("(edited)")
    await _expect(bob.message("Meet at 7pn")).to_have_count(0)

    # Recall: the message turns into "message recalled" for Bob.
    await alice.send("Wrong chat, sorry")
    await bob.sees("Wrong chat, sorry")
    await alice.message_action("Wrong chat, sorry", "recall")
    await page.get_by_test_id("modal-submit").click()
    await _expect(bob.message("Wrong chat, sorry")).to_have_count(0)
    await _expect(bob.page.get_by_test_id("message-gone")).to_have_text("message recalled")
    await _expect(page.get_by_test_id("message-gone")).to_have_text("message recalled")
    await alice.send("See you all there")
    await bob.sees("See you all there")
    toast = page.get_by_test_id("toast")
    if await toast.is_visible():
        await toast.click()  # dismiss "Added …" so that the screenshot shows the chat
    shot = await screenshot(page, "web-chat.png")
    assert shot.stat().st_size > 10_000

    # Both reload: the session survives, and history comes back from the server, edits and recalls applied.
    for person in (alice, bob):
        await person.page.reload()
        await _expect(person.page.get_by_test_id("chat-title")).to_have_text("Book club")  # reopened
        await person.open_conversation("Book club")
        for text in ("Welcome to the book club!", "Chapter 3 tonight?", "Count me in", "Meet at 7pm",
                     "See you all there"):
            await person.sees(text)
        await _expect(person.message("Meet at 7pm").get_by_test_id("message-edited")).to_be_visible()
        await _expect(person.page.get_by_test_id("message-gone")).to_have_text("message recalled")
        await _expect(person.message("Wrong chat, sorry")).to_have_count(0)
        seqs = await person.seqs()
        assert seqs == sorted(set(seqs)), seqs
        await _expect(person.conversation("Book club").get_by_test_id("conv-preview")).to_have_text(
            "You: See you all there" if person is alice else f"{alice.name}: See you all there")

    # Bob leaves (over HTTP, with the page's own token): both pages show the notice; Bob's page closes the group.
    token = await bob.page.evaluate("JSON.parse(localStorage.getItem('pica.session')).token")
    async with PicaHttp(server.url, token) as http:
        await http.request("POST", f"/v1/groups/{group['group_id']}/leave")
    await _expect(page.get_by_test_id("notice").last).to_have_text(f"{bob.name} left the group")
    await _expect(bob.page.get_by_test_id("notice").last).to_have_text("You left the group")
    await _expect(bob.page.get_by_test_id("composer-note")).to_have_text("You are no longer a member of this group.")
    await _expect(bob.conversation("Book club")).to_have_count(0)
    await _expect(page.get_by_test_id("chat-status")).to_have_text("3 members")
    alice.assert_no_errors()
    bob.assert_no_errors()


async def test_history_scroll_back_and_login(browser: Browser, server: ServerProcess) -> None:
    reader, _, _ = await http_user(server.url, "reader")
    async with PicaHttp(server.url) as http:
        writer_id = await http.register(writer := f"writer{uuid.uuid4().hex[:6]}", PASSWORD)
        await http.login(writer, PASSWORD)
        reader_id = (await http.request("GET", "/v1/users", params={"username": reader}))["user_id"]
        for i in range(1, 131):
            await http.send(reader_id, f"m{i}", {"text": f"message {i}"})
    assert writer_id

    person = await Person.open(browser, server.url, "reader")
    person.name = reader
    await person.login()
    item = person.conversation(writer)
    await _expect(item.get_by_test_id("unread-badge")).to_have_text("99+")
    await person.open_conversation(writer)
    await person.sees("message 130")
    await _expect(person.message("message 1")).to_have_count(0)  # only the newest page at first

    timeline = person.page.get_by_test_id("timeline")
    for _ in range(10):
        if await person.message("message 1").count():
            break
        await timeline.evaluate("node => { node.scrollTop = 0; node.dispatchEvent(new Event('scroll')); }")
        await person.page.wait_for_timeout(200)
    await person.sees("message 1")
    await _expect(person.page.get_by_test_id("history-status")).to_have_text("Beginning of the conversation")
    assert await person.seqs() == list(range(1, 131))
    await _expect(item.get_by_test_id("unread-badge")).to_have_count(0)
    person.assert_no_errors()


async def box_of(locator: Any) -> dict[str, float]:
    """The element's box; the page re-renders live (names resolved, presence), so an element may be swapped for a
    moment: ask again until it is there."""
    for _ in range(50):
        box = await locator.bounding_box()
        if box is not None:
            return dict(box)
        await asyncio.sleep(0.05)
    raise AssertionError(f"{locator} has no box")


async def test_phone_sized_screen(browser: Browser, server: ServerProcess) -> None:
    friend, friend_id, friend_token = await http_user(server.url, "friend")
    phone = await Person.open(browser, server.url, "phone", width=390, height=844)
    await phone.register()
    page = phone.page

    async with PicaHttp(server.url, friend_token) as http:
        me = (await http.request("GET", "/v1/users", params={"username": phone.name}))["user_id"]
        await http.send(me, "f1", {"text": "Are you on your phone?"})

    # One pane at a time: the list (fitting the screen), then the conversation with a back button.
    await _expect(page.get_by_test_id("conversation-list")).to_be_visible()
    await _expect(page.get_by_test_id("chat-pane")).to_be_hidden()
    badge = phone.conversation(friend).get_by_test_id("unread-badge")
    await _expect(badge).to_have_text("1")
    for widget in (badge, page.get_by_test_id("logout")):
        box = await box_of(widget)
        assert box["x"] + box["width"] <= 390, box
    await phone.open_conversation(friend)
    await _expect(page.get_by_test_id("conversation-list")).to_be_hidden()
    await _expect(page.get_by_test_id("back-button")).to_be_visible()
    await phone.sees("Are you on your phone?")
    await phone.send("Yes, and it fits the screen.")
    for widget in (page.get_by_test_id("composer-input"), page.get_by_test_id("send-button")):
        box = await box_of(widget)
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390, box

    async with PicaHttp(server.url, friend_token) as http:
        conversation = f"d:{min(me, friend_id)}:{max(me, friend_id)}"
        texts = [m["body"].get("text") for m in (await http.history(conversation))["messages"]]
    assert texts == ["Are you on your phone?", "Yes, and it fits the screen."]
    await screenshot(page, "web-chat-phone.png")

    await page.get_by_test_id("back-button").click()
    await _expect(page.get_by_test_id("conversation-list")).to_be_visible()
    await _expect(page.get_by_test_id("chat-pane")).to_be_hidden()
    await _expect(phone.conversation(friend).get_by_test_id("conv-preview")).to_have_text(
        "You: Yes, and it fits the screen.")
    phone.assert_no_errors()


async def test_reconnecting_banner_and_recovery(
    browser: Browser, server: ServerProcess, server_process_factory: list[ServerProcess]
) -> None:
    alice = await Person.open(browser, server.url, "alice")
    bob = await Person.open(browser, server.url, "bob")
    await alice.register()
    await bob.register()
    await alice.start_chat(bob.name)
    await alice.send("Before the restart")
    await bob.open_conversation(alice.name)
    await bob.sees("Before the restart")

    # The server goes away: both pages say so, and keep what they show.
    assert await asyncio.to_thread(server.terminate) == 0
    for person in (alice, bob):
        banner = person.page.get_by_test_id("conn-banner")
        await _expect(banner).to_be_visible()
        await _expect(banner).to_have_text("Reconnecting…")
    await alice.sees("Before the restart")

    # A message written while offline waits in the outbox ("Sending…")...
    box = alice.page.get_by_test_id("composer-input")
    await box.fill("Written while offline")
    await box.press("Enter")
    await _expect(alice.own_message("Written while offline")).to_have_attribute("data-status", "sending")

    # ...and the same server comes back on the same ports: the pages recover on their own.
    restarted = await asyncio.to_thread(start_server_process, server.data_dir, server.http_port, server.tcp_port)
    server_process_factory.append(restarted)
    for person in (alice, bob):
        await _expect(person.page.get_by_test_id("conn-banner")).to_be_hidden(timeout=30_000)
    await bob.sees("Written while offline")
    await alice.send("After the restart")
    await bob.sees("After the restart")
    await bob.send("Got both")
    await alice.sees("Got both")
    seqs = await bob.seqs()
    assert seqs == [1, 2, 3, 4], seqs
    # Connection errors logged by the browser while the server was down are expected; nothing else.
    for person in (alice, bob):
        unexpected = [e for e in person.errors if "WebSocket" not in e and "Failed to load resource" not in e
                      and "ERR_CONNECTION_REFUSED" not in e]
        assert not unexpected, unexpected


async def test_page_is_served_safely(server: ServerProcess) -> None:
    """The page and its files come with a strict CSP and no-sniff; only the page's own files are served."""
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with session.get(server.url + "/") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/html")
            assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
            assert '<script type="module" src="/static/app.js">' in await resp.text()
        for name, kind in (("app.js", "text/javascript"), ("app.css", "text/css"), ("icon.svg", "image/svg+xml")):
            async with session.get(f"{server.url}/static/{name}") as resp:
                assert resp.status == 200 and resp.headers["Content-Type"].startswith(kind)
                assert resp.headers["X-Content-Type-Options"] == "nosniff"
        for bad in ("/static/..%2f..%2fpyproject.toml", "/static/__init__.py", "/static/missing.js", "/static/.x.js"):
            async with session.get(server.url + bad) as resp:
                assert resp.status == 404, bad
                assert (await resp.json())["code"] == "not_found"


async def test_client_ordering_rules(browser: Browser, server: ServerProcess) -> None:
    """The page's ordering is the SDK's (pica-client.js, docs/protocol.md 8.6 as in pica/client/cursors.py): dedupe
    by (conversation, seq), gaps are dropped for a sync, a synced page starts a conversation's cursor. The page's
    model (model.js): recall/edit events patch their targets even when the target arrives later; the timeline is the
    newest contiguous block."""
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(server.url)
    result = await page.evaluate("""async () => {
        const { PicaClient } = await import("/static/pica-client.js");
        const { Store, describe } = await import("/static/model.js");
        localStorage.clear();
        const client = new PicaClient({ url: "", token: "t", userId: 7, storage: localStorage });
        const s = new Store({ user_id: 7, username: "me", token: "t" }, client);
        const c = client.cursors;
        const m = (c, seq, body = { text: `m${seq}` }, sender = 8) =>
            ({ conversation_id: c, seq, sender, client_msg_id: `${c}-${seq}`, ts: 1000 * seq, body });
        const verdicts = [
            c.accept(m("d:7:8", 1)), c.accept(m("d:7:8", 1)), c.accept(m("d:7:8", 3)), c.accept(m("d:7:8", 2)),
            c.accept(m("d:7:8", 3)), c.accept(m("g:4", 6)), c.acceptSynced(m("g:4", 6)), c.accept(m("g:4", 7)),
        ];
        // Events: an edit and a recall arrive before their targets are loaded (history comes later).
        const conv = s.conversation("d:7:8");
        s.ingest(m("d:7:8", 10, { edit: { seq: 4, text: "edited" } }));
        s.ingest(m("d:7:8", 11, { recall: { seq: 5 } }));
        s.ingest(m("d:7:8", 12, { edit: { seq: 5, text: "too late" } }));
        s.insert(m("d:7:8", 4));
        s.insert(m("d:7:8", 5));
        s.insert(m("d:7:8", 4, { text: "stale page copy" }));
        // Sending marks read; others' messages count as unread.
        s.ingest(m("d:7:8", 13, { text: "mine" }, 7));
        s.ingest(m("d:7:8", 14));
        return {
            verdicts,
            cursor: c.cursor("d:7:8"),
            group: c.cursor("g:4"),
            four: describe(s, conv.messages.get(4)),
            fourEdited: Boolean(conv.messages.get(4).body.edited),
            five: describe(s, conv.messages.get(5)),
            timeline: s.timeline(conv).map((x) => x.seq),
            unread: s.unread(conv),
        };
    }""")
    await context.close()
    assert result["verdicts"] == ["new", "duplicate", "gap", "new", "new", "gap", "new", "new"]
    assert result["cursor"] == 3 and result["group"] == 7
    assert result["four"] == "edited" and result["fourEdited"]
    assert result["five"] == "message recalled"
    assert result["timeline"] == [10, 11, 12, 13, 14]  # seqs 4-5 sit below a hole (6-9): not shown yet
    assert result["unread"] == 1


async def test_idle_page_keeps_its_connection(
    browser: Browser, tmp_path: Path, server_process_factory: list[ServerProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a 1 s heartbeat and a 4 s idle timeout, an idle page stays connected: it pings when it has been silent
    for a heartbeat and answers the server's pings (section 16), so the server never closes it with 4001 and the
    page never reconnects. (The idle timeout leaves room for a loaded CI machine delaying the page's timers.)"""
    monkeypatch.setenv("PICA_LIMITS_HEARTBEAT_INTERVAL", "1")
    monkeypatch.setenv("PICA_LIMITS_IDLE_TIMEOUT", "4")
    server = await asyncio.to_thread(start_server_process, tmp_path / "data")
    server_process_factory.append(server)
    person = await Person.open(browser, server.url, "idle")
    sockets: list[Any] = []
    sent: list[tuple[float, str]] = []
    loop = asyncio.get_running_loop()

    def watch(ws: Any) -> None:
        sockets.append(ws)
        ws.on("framesent", lambda payload: sent.append((loop.time(), str(payload))))

    person.page.on("websocket", watch)
    await person.register()
    await _expect(person.page.get_by_test_id("conn-banner")).to_be_hidden()
    start = loop.time()
    await person.page.wait_for_timeout(8_000)  # twice the idle timeout
    assert len(sockets) == 1, "the page reconnected: the server closed an idle connection"
    beats = [t for t, payload in sent if t >= start and ('"t":"ping"' in payload or '"t":"pong"' in payload)]
    assert len(beats) >= 4, sent
    gaps = [b - a for a, b in zip([start, *beats], [*beats, loop.time()], strict=True)]
    assert max(gaps) < 4, gaps
    await _expect(person.page.get_by_test_id("conn-banner")).to_be_hidden()
    person.assert_no_errors()


class PushTamperer:
    """A WebSocket route between the page and the real server that forwards every frame, except that it holds the
    push whose text is ``hold`` until the next push has gone by (a swap, as two nodes can cause) and drops the pushes
    whose text is in ``drop`` (a loss). It notes the pushes the server sent and when the page asked for a sync."""

    def __init__(self, hold: str | None = None, drop: tuple[str, ...] = ()) -> None:
        self.hold, self.drop = hold, drop
        self.pushes: list[str] = []
        self.syncs: list[int] = []
        """For each sync the page sent: how many pushes had come from the server by then."""
        self._held: str | bytes | None = None

    async def install(self, page: Page) -> None:
        await page.route_web_socket(re.compile(r"/v1/ws"), self._route)

    def _route(self, ws: Any) -> None:
        upstream = ws.connect_to_server()

        def to_server(message: str | bytes) -> None:
            if isinstance(message, str) and json.loads(message).get("t") == "sync":
                self.syncs.append(len(self.pushes))
            upstream.send(message)

        def to_page(message: str | bytes) -> None:
            frame = json.loads(message) if isinstance(message, str) else {}
            text = frame.get("body", {}).get("text") if frame.get("t") == "msg" else None
            if text is not None:
                self.pushes.append(text)
            if text is not None and text == self.hold:
                self._held = message
                return
            if text in self.drop:
                return
            ws.send(message)
            if text is not None and self._held is not None:
                ws.send(self._held)
                self._held = None

        ws.on_message(to_server)
        upstream.on_message(to_page)


async def test_a_push_ahead_of_its_turn_waits_for_the_late_one(browser: Browser, server: ServerProcess) -> None:
    """In a cluster, pushes committed on different nodes can swap places (protocol 8.5). The page holds the early one
    and shows both in order without a sync; a push that never comes is fetched by a sync after the short wait."""
    bob = await Person.open(browser, server.url, "bob")
    wire = PushTamperer(hold="one", drop=("three",))
    await wire.install(bob.page)
    await bob.register()
    bob_id = await bob.page.evaluate("JSON.parse(localStorage.getItem('pica.session')).user_id")
    alice_name, _, alice_token = await http_user(server.url, "alice")

    async with PicaHttp(server.url, token=alice_token) as http:
        async def say(text: str) -> None:
            await http.request("POST", "/v1/messages", json={"to": bob_id, "client_msg_id": uuid.uuid4().hex,
                                                             "body": {"text": text}})

        await say("hello")  # seq 1: the page learns the conversation
        await bob.open_conversation(alice_name)
        await bob.sees("hello")
        syncs_before = len(wire.syncs)

        await say("one")  # held by the route until "two" has gone by
        await say("two")
        await bob.sees("two")
        await bob.sees("one")
        assert await bob.seqs() == [1, 2, 3]
        await asyncio.sleep(0.5)  # longer than the page's wait: had it not closed the gap, it would have synced
        assert len(wire.syncs) == syncs_before, "the swapped pushes needed no sync"

        await say("three")  # lost on the way
        await say("four")
        await bob.sees("four")
        await bob.sees("three")  # by the sync that follows the wait
        assert await bob.seqs() == [1, 2, 3, 4, 5]
        assert len(wire.syncs) == syncs_before + 1
    bob.assert_no_errors()


async def test_a_held_push_no_sync_can_place_is_dropped_after_one_sync(browser: Browser, server: ServerProcess) -> None:
    """Bob is removed from a group just after a message whose push is lost: the notice of his removal (pushed once,
    never synced) waits for it, one sync finds nothing he may still see, and the page stops waiting instead of
    syncing every 0.2 s."""
    bob = await Person.open(browser, server.url, "bob")
    wire = PushTamperer(drop=("last words",))
    await wire.install(bob.page)
    await bob.register()
    bob_id = await bob.page.evaluate("JSON.parse(localStorage.getItem('pica.session')).user_id")
    _, _, alice_token = await http_user(server.url, "alice")

    async with PicaHttp(server.url, token=alice_token) as http:
        group = await http.request("POST", "/v1/groups", json={"name": "short stay", "members": [bob_id]})
        gid = int(group["group_id"])

        async def say(text: str) -> None:
            await http.request("POST", "/v1/messages", json={"group_id": gid, "client_msg_id": uuid.uuid4().hex,
                                                             "body": {"text": text}})

        await say("welcome")
        await bob.open_conversation("short stay")
        await bob.sees("welcome")
        await say("last words")  # lost on the way to Bob
        syncs_before = len(wire.syncs)
        await http.request("DELETE", f"/v1/groups/{gid}/members/{bob_id}")
        await asyncio.sleep(1.5)  # seven times the page's wait
    assert len(wire.syncs) == syncs_before + 1, wire.syncs
    bob.assert_no_errors()


async def test_a_short_access_token_is_renewed_and_signing_out_ends_the_session(
    browser: Browser, tmp_path: Path, server_process_factory: list[ServerProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With 2 s access tokens the page goes on working long after: its socket lasts as long as its session, and
    it renews the token with the refresh token when the server says it expired (HTTP 401 token_expired; close 4502
    on the reconnect after a reload). Signing out ends the session on the server, as alice's other device sees."""
    monkeypatch.setenv("PICA_AUTH_TOKEN_TTL", "2")
    server = await asyncio.to_thread(start_server_process, tmp_path / "data")
    server_process_factory.append(server)
    bob_name, _, _ = await http_user(server.url, "bob")
    alice = await Person.open(browser, server.url, "alice")
    await alice.register()
    await alice.page.wait_for_timeout(3_000)  # the first access token has expired
    await alice.start_chat(bob_name)  # looks bob up over HTTP: refused as expired, renewed, asked again
    await alice.send("after the token expired")
    await alice.page.reload()  # a new socket, authenticated with the expired token: 4502, renewed, back
    await alice.open_conversation(bob_name)
    await alice.sees("after the token expired")
    await _expect(alice.page.get_by_test_id("conn-banner")).to_be_hidden()
    stored = json.loads(await alice.page.evaluate("localStorage.getItem('pica.session')"))
    assert stored["refresh_token"].startswith("r1.")

    async with PicaHttp(server.url) as laptop:  # alice's other device watches her session list
        await laptop.login(alice.name, PASSWORD)
        assert stored["session_id"] in {s["session_id"] for s in await laptop.sessions()}
        await alice.page.get_by_test_id("logout").click()
        await _expect(alice.page.get_by_test_id("auth-submit")).to_be_visible()
        for _ in range(50):  # the page does not wait for its logout request: give it a moment
            if stored["session_id"] not in {s["session_id"] for s in await laptop.sessions()}:
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("the page's session is still live after signing out")
    # Chromium logs every 401 answer as a console error: those are the expired tokens the page then renewed.
    assert [e for e in alice.errors if "status of 401" not in e] == []


async def test_the_page_follows_the_servers_limits(browser: Browser, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   server_process_factory: list[ServerProcess]) -> None:
    """A server with a 60 s recall window and pages of 20: the page lists every conversation (walking the list to an
    empty page, however many pages that takes: 21 here) and stops offering "Recall" once 60 s have passed, not 120."""
    monkeypatch.setenv("PICA_LIMITS_RECALL_WINDOW", "60")
    monkeypatch.setenv("PICA_LIMITS_HISTORY_PAGE_SIZE", "20")
    server = await asyncio.to_thread(start_server_process, tmp_path / "data")
    server_process_factory.append(server)
    name, _, token = await http_user(server.url, "alice")
    async with PicaHttp(server.url, token) as http:
        for i in range(410):  # 20 full pages and a bit, newest last
            await http.request("POST", "/v1/groups", json={"name": f"club {i:03}", "members": []})

    alice = await Person.open(browser, server.url, "alice")
    alice.name = name
    await alice.login()
    await _expect(alice.page.get_by_test_id("conversation-item")).to_have_count(410)
    await _expect(alice.conversation("club 000")).to_have_count(1)

    await alice.open_conversation("club 409")
    await alice.send("still mine to take back")
    bubble = alice.own_message("still mine to take back")

    async def offered() -> list[str]:
        await bubble.hover()
        await bubble.get_by_test_id("message-menu").click()
        items = await alice.page.locator('[role="menuitem"]').evaluate_all("nodes => nodes.map(n => n.dataset.testid)")
        await alice.page.keyboard.press("Escape")
        return [str(item) for item in items]

    assert "menu-recall" in await offered()
    # 90 s later on the page's clock: past this server's window, within the protocol's default of 120 s.
    await alice.page.evaluate("() => { const real = Date.now; Date.now = () => real() + 90_000; }")
    # The window comes in the socket's `ready`, which on a loaded machine can land after the send went out: give
    # it a few seconds rather than read the menu once.
    for _ in range(50):
        if "menu-recall" not in await offered():
            break
        await asyncio.sleep(0.2)
    else:
        raise AssertionError("Recall still offered 90 s on, past the server's 60 s window")
    alice.assert_no_errors()
