"""``pica chat`` in real pseudo-terminals against a real server process."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pexpect

from pica.client import PicaHttp
from tests.cli.conftest import TIMEOUT, Chat, pica, register
from tests.conftest import PASSWORD, ServerProcess


def open_conversation(child: Chat, target: str) -> None:
    child.sendline(f"/open {target}")
    child.expect_exact(f"── {target} ──")


def test_two_chats_message_typing_receipts_presence(server: ServerProcess, chat: Callable[..., Chat]) -> None:
    register(server.url, "alice", "bob")
    alice = chat(server.url, "alice", prompted=True)  # asked for with getpass
    bob = chat(server.url, "bob", "--transport", "tcp", "--tcp-port", str(server.tcp_port))
    alice.expect_exact("no conversations yet")
    open_conversation(alice, "bob")
    alice.expect_exact("(no messages yet)")
    open_conversation(bob, "alice")
    bob.expect_exact("(no messages yet)")

    alice.sendline("hello bob")
    alice.expect_exact("✓ sent #1")
    bob.expect(r"\d\d:\d\d \[alice\] alice: hello bob")  # a live line has its time, as history lines do
    alice.expect_exact("✓✓ read up to #1")  # bob has the conversation open: his chat marks it read

    # Typing: announced while the line is being typed, before Enter. The server passes one notice a second per
    # conversation, and alice's first key (before the conversation existed) used this second's.
    time.sleep(1.1)
    alice.send("are you th")
    bob.expect_exact("… alice is typing")
    alice.send("ere?\r")
    alice.expect_exact("✓ sent #2")
    bob.expect_exact("[alice] alice: are you there?")

    alice.expect_exact("✓✓ read up to #2")
    bob.sendline("/read")
    bob.expect_exact("marked read up to #2")
    bob.sendline("yes! ünïcödé ✓")
    alice.expect_exact("[bob] bob: yes! ünïcödé ✓")

    alice.sendline("/who")
    alice.expect_exact("● bob online")
    alice.sendline("/list")
    alice.expect(r"1\s+bob\s+0\s+\d\d:\d\d bob: yes!")  # bob's reply came into the open conversation: read

    bob.sendcontrol("d")  # end of input: leave with status 0
    bob.expect(pexpect.EOF)
    bob.close()
    assert bob.exitstatus == 0
    alice.expect_exact("○ bob offline")
    alice.sendline("/quit")
    alice.expect(pexpect.EOF)
    alice.close()
    assert alice.exitstatus == 0


def test_more_pages_back_through_history(server: ServerProcess, chat: Callable[..., Chat]) -> None:
    ids = register(server.url, "carol", "dave")

    async def send_many() -> None:
        async with PicaHttp(server.url) as http:
            await http.login("carol", PASSWORD)
            for n in range(1, 31):
                await http.send(ids["dave"], uuid.uuid4().hex, {"text": f"message {n}"})

    asyncio.run(send_many())
    dave = chat(server.url, "dave", "--transport", "ws-msgpack")
    dave.expect(r"1\s+carol\s+30\s+")  # the start-up list, with the unread count
    dave.sendline("/open 1")
    dave.expect_exact("── carol ──")
    dave.expect_exact("#30 ")
    dave.expect_exact("(older messages: /more)")
    assert "#10 " not in (dave.before or "")
    dave.sendline("/more")
    dave.expect_exact("── older messages of [carol] ──")
    dave.expect(r"#1 \d\d:\d\d carol: message 1\r?\n")
    dave.expect_exact("#10 ")
    dave.expect_exact("(beginning of the conversation)")
    dave.sendline("/more")
    dave.expect_exact("(no older messages)")
    dave.sendline("/quit")
    dave.expect(pexpect.EOF)


def test_server_restart_reconnects_and_delivers(server: ServerProcess, chat: Callable[..., Chat],
                                                restart: Callable[[ServerProcess], ServerProcess]) -> None:
    register(server.url, "erin", "frank")
    erin = chat(server.url, "erin")
    frank = chat(server.url, "frank", "--transport", "tcp", "--tcp-port", str(server.tcp_port))
    open_conversation(erin, "frank")
    open_conversation(frank, "erin")
    erin.sendline("before")
    frank.expect_exact("[erin] erin: before")

    server = restart(server)  # kill -9; up again on the same ports
    erin.expect_exact("… reconnecting")
    frank.expect_exact("… reconnecting")
    erin.expect_exact("… connected")
    frank.expect_exact("… connected")
    erin.sendline("after the restart")
    erin.expect_exact("✓ sent #2")
    frank.expect_exact("[erin] erin: after the restart")
    frank.sendline("welcome back")
    erin.expect_exact("[frank] frank: welcome back")

    # A line typed while the server is down is kept and sent once the connection is back.
    server.kill9()
    erin.expect_exact("… reconnecting")
    erin.sendline("typed while down")
    erin.expect_exact("it will be sent after the reconnection")
    restart(server)
    erin.expect_exact("… connected")
    erin.expect_exact("✓ sent #4")
    frank.expect_exact("[erin] erin: typed while down")


def test_groups_in_chat(server: ServerProcess, chat: Callable[..., Chat]) -> None:
    register(server.url, "gina", "hank", "ivan")
    gina = chat(server.url, "gina")
    hank = chat(server.url, "hank")
    # hank shares no conversation or contact with ivan: the chat asks the server for the name (GET /v1/users/{id}).
    open_conversation(gina, "hank")
    gina.sendline("hi hank")
    hank.expect_exact("[gina] gina: hi hank")
    gina.sendline("/group book club hank")
    gina.expect(r"created group #(\d+) book club \(2 members\)")
    assert isinstance(gina.match, re.Match)
    group_id = gina.match.group(1)
    gina.expect_exact(f"[#{group_id} book club]>")
    hank.expect_exact(f'[#{group_id} book club] * gina created the group "book club" with gina, hank')
    gina.sendline("/add ivan")
    gina.expect_exact("now 3 members")
    hank.expect_exact(f"[#{group_id} book club] * gina added ivan\r\n")
    hank.sendline(f"/open #{group_id}")
    hank.expect_exact(f"── #{group_id} book club ──")
    hank.sendline("chapter 3 tonight?")
    hank.expect_exact("✓ sent #3")
    gina.expect_exact(f"[#{group_id} book club] hank: chapter 3 tonight?")
    gina.sendline("/add nobody_here")
    gina.expect_exact("! no user named 'nobody_here'")
    gina.sendline("/open #999")
    gina.expect_exact("! no group #999 among yours")
    gina.sendline("/frobnicate")
    gina.expect_exact("! unknown command /frobnicate")
    gina.sendline("/open two names")
    gina.expect_exact("! usage: /open NAME")
    gina.sendline("/help")
    gina.expect_exact("/quit                 leave (also Ctrl-D)")
    gina.sendline("//slash at the start")
    gina.expect_exact("✓ sent #4")
    hank.expect_exact(f"[#{group_id} book club] gina: /slash at the start")

    # Ivan shares no conversation with gina or hank: his chat asks the server for their names before it shows a
    # notice, in the list, in history and live alike.
    hank.sendline("/quit")
    hank.expect(pexpect.EOF)
    ivan = chat(server.url, "ivan")
    ivan.expect(rf"1\s+#{group_id} book club\s+\d+\s+\d\d:\d\d gina: /slash at the start")
    ivan.sendline(f"/open #{group_id}")
    ivan.expect_exact("* gina added ivan")
    ivan.expect_exact("hank: chapter 3 tonight?")
    gina.sendline("/group reading circle hank,ivan")
    ivan.expect_exact('* gina created the group "reading circle" with gina, hank, ivan')


def test_piped_input_and_failures(server: ServerProcess) -> None:
    register(server.url, "jack", "kate")
    done = pica("chat", "--url", server.url, "--username", "jack", stdin="/open kate\nhi from a script\n",
                env={"PICA_PASSWORD": PASSWORD})
    assert done.returncode == 0, done.stderr
    assert "✓ sent #1" in done.stdout
    assert "\x1b" not in done.stdout  # no prompt redrawing when stdout is not a terminal

    wrong = pica("chat", "--url", server.url, "--username", "jack", env={"PICA_PASSWORD": "not the password"})
    assert wrong.returncode == 1
    assert "pica: login failed" in wrong.stderr and "invalid_credentials" in wrong.stderr

    down = pica("chat", "--url", "http://127.0.0.1:9", "--username", "jack", env={"PICA_PASSWORD": PASSWORD})
    assert down.returncode == 1
    assert "pica: cannot reach" in down.stderr

    usage = pica("chat", "--url", server.url)
    assert usage.returncode == 2


def test_dispatch_finds_the_server_through_a_seed(server: ServerProcess) -> None:
    """A cluster client's first URL may point at a dead node: with --dispatch it asks a seed where to connect."""
    register(server.url, "lena", "mike")
    for transport in ("ws", "tcp"):
        done = pica("chat", "--url", "http://127.0.0.1:9", "--seeds", server.url, "--dispatch", "--username", "lena",
                    "--transport", transport, "--tcp-port", "9", stdin=f"/open mike\nhello over {transport}\n",
                    env={"PICA_PASSWORD": PASSWORD})
        assert done.returncode == 0, done.stderr
        assert "✓ sent #" in done.stdout


def test_banned_user_is_cut_off(server: ServerProcess, chat: Callable[..., Chat]) -> None:
    register(server.url, "lena", "mike")
    lena = chat(server.url, "lena")
    banned = pica("user", "ban", "lena", data_dir=server.data_dir)
    assert banned.returncode == 0, banned.stderr
    # The server's ban sweep closes her connection (4501); logging in again is refused: the chat gives up.
    lena.expect_exact("pica: disconnected:", timeout=TIMEOUT)
    lena.expect_exact("banned")
    lena.expect(pexpect.EOF)
    lena.close()
    assert lena.exitstatus == 1


def test_unread_counts_what_is_new_to_read(server: ServerProcess, chat: Callable[..., Chat]) -> None:
    """The terminal's unread rules: an edit or a recall is no new message, a recalled message is nothing to read, and
    the open conversation is read as it arrives; the list shows the last message still there to see."""
    ids = register(server.url, "olga", "pete", "quinn")

    async def olga_writes() -> None:
        async with PicaHttp(server.url) as http:
            await http.login("olga", PASSWORD)
            for text in ("one", "two", "three"):
                await http.send(ids["pete"], f"o-{text}", {"text": text})
            conversation = f"d:{ids['olga']}:{ids['pete']}"
            await http.request("POST", f"/v1/conversations/{conversation}/messages/2/edit", json={
                "client_msg_id": "o-edit", "text": "two, edited"})
            await http.request("POST", f"/v1/conversations/{conversation}/messages/3/recall", json={
                "client_msg_id": "o-recall"})

    asyncio.run(olga_writes())  # seqs 1-3, the edit #4 and the recall #5
    pete = chat(server.url, "pete")
    pete.expect(r"1\s+olga\s+2\s+\d\d:\d\d olga: two, edited \(edited\)\r?\n")
    open_conversation(pete, "olga")
    pete.expect_exact("* olga recalled message #3")
    olga = chat(server.url, "olga")
    open_conversation(olga, "pete")
    olga.sendline("four")
    pete.expect(r"\d\d:\d\d \[olga\] olga: four")
    olga.expect_exact("✓✓ read up to #6")  # pete's chat marked it read: it was on his screen
    pete.sendline("/list")
    pete.expect(r"1\s+olga\s+0\s+\d\d:\d\d olga: four\r?\n")

    # Olga edits while pete looks at another conversation: still nothing new for him to read there.
    open_conversation(pete, "quinn")
    olga.sendline("five")
    pete.expect_exact("[olga] olga: five")
    time.sleep(0.5)
    olga.sendline("/quit")
    olga.expect(pexpect.EOF)

    async def olga_edits() -> None:
        async with PicaHttp(server.url) as http:
            await http.login("olga", PASSWORD)
            await http.request("POST", f"/v1/conversations/d:{ids['olga']}:{ids['pete']}/messages/7/edit", json={
                "client_msg_id": "o-edit-2", "text": "five, edited"})

    asyncio.run(olga_edits())
    pete.expect_exact("* olga edited message #7: five, edited")
    pete.sendline("/list")
    pete.expect(r"olga\s+1\s+\d\d:\d\d olga: five, edited \(edited\)\r?\n")  # "five", not its edit


def test_line_editing_and_history_on_a_terminal(server: ServerProcess, chat: Callable[..., Chat]) -> None:
    register(server.url, "rosa", "sam")
    rosa = chat(server.url, "rosa")
    sam = chat(server.url, "sam")
    open_conversation(rosa, "sam")
    open_conversation(sam, "rosa")
    rosa.send("see you at noon\r")
    sam.expect_exact("[rosa] rosa: see you at noon")
    rosa.send("yes at non")
    rosa.send("\x1b[D\x1b[D")  # Left twice, then the missing letter in the middle of the line
    rosa.send("o\x01I said \r")  # and Ctrl-A to its start
    sam.expect_exact("[rosa] rosa: I said yes at noon")
    rosa.send("\x1b[A\x1b[A\r")  # Up twice: the line before last, again
    rosa.expect_exact("✓ sent #3")
    sam.expect_exact("[rosa] rosa: see you at noon")

    # A message arriving while a line is half typed goes above it; the line is kept.
    rosa.send("half a li")
    sam.sendline("interrupting")
    rosa.expect_exact("[sam] sam: interrupting")
    rosa.send("ne\r")
    sam.expect_exact("[rosa] rosa: half a line")
    rosa.sendcontrol("d")
    rosa.expect(pexpect.EOF)
    rosa.close()
    assert rosa.exitstatus == 0


def test_send_and_save_a_file(server: ServerProcess, chat: Callable[..., Chat], tmp_path: Path) -> None:
    register(server.url, "alice", "bob")
    report = tmp_path / "report.txt"
    report.write_bytes(b"quarterly figures\n" * 100)
    alice = chat(server.url, "alice")
    bob = chat(server.url, "bob")
    open_conversation(alice, "bob")
    open_conversation(bob, "alice")
    alice.sendline(f"/send {report} the figures")
    alice.expect_exact("✓ sent #1")
    bob.expect_exact("[file report.txt (1.8 KB)] the figures")
    saved = tmp_path / "copy.txt"
    bob.sendline(f"/save 1 {saved}")
    bob.expect_exact(f"saved {saved} (1800 bytes)")
    assert saved.read_bytes() == report.read_bytes()
    bob.sendline(f"/save 1 {saved}")
    bob.expect_exact("exists already")  # never overwritten
    alice.sendline("/send /no/such/file")
    alice.expect_exact("! usage: /send PATH [caption]")
    for person in (alice, bob):
        person.sendline("/quit")
        person.expect(pexpect.EOF)


def test_forward_pin_draft_and_list_settings(server: ServerProcess, chat: Callable[..., Chat]) -> None:
    register(server.url, "kate", "liam", "mona")
    kate = chat(server.url, "kate")
    liam = chat(server.url, "liam")
    kate_laptop = chat(server.url, "kate", "--transport", "tcp", "--tcp-port", str(server.tcp_port))
    open_conversation(liam, "kate")
    liam.sendline("the door code is 4711")
    liam.expect_exact("✓ sent #1")
    open_conversation(kate, "liam")
    kate.expect_exact("#1")

    # Forwarded to mona: her line names kate, who sent the copy, and liam, who wrote it.
    kate.sendline("/forward 1 mona")
    kate.expect_exact("forwarded 1 of 1 copies")
    mona = chat(server.url, "mona")
    mona.expect(r"1\s+kate\s+1\s+\d\d:\d\d kate ↪ liam: the door code is 4711")

    # A pin: both see the notice live, and /pins lists it.
    kate.sendline("/pin 1")
    liam.expect_exact("* kate pinned message #1")
    liam.sendline("/pins")
    liam.expect(r"📌 #1 liam: the door code is 4711 \(pinned by kate \d\d:\d\d\)")
    kate.sendline("/pin 1")
    kate.expect_exact("(message #1 was pinned already)")

    # A draft and the list settings follow kate to her laptop, and /list shows their marks.
    kate.sendline("/draft thanks, see you at")
    kate.expect_exact("draft saved: thanks, see you at")
    kate_laptop.expect_exact("✎ [liam] draft: thanks, see you at")
    kate.sendline("/top")
    kate.expect_exact("pinned: yes")
    kate.sendline("/mute 2")
    kate.expect_exact("muted until")
    kate_laptop.sendline("/list")
    kate_laptop.expect(r"1\s+liam ↑✎⊘\s+")
    kate.sendline("/forward x mona")
    kate.expect_exact("! usage: /forward N[,M...] USER|#GROUP_ID[,...]")


def test_react_reply_and_thread_in_chat(server: ServerProcess, chat: Callable[..., Chat]) -> None:
    register(server.url, "lena", "mike")
    lena = chat(server.url, "lena")
    mike = chat(server.url, "mike")
    lena.sendline("/group launch mike")
    lena.expect(r"created group #(\d+) launch")
    assert isinstance(lena.match, re.Match)
    group = f"#{lena.match.group(1)} launch"
    mike.expect_exact(f'[{group}] * lena created the group "launch"')
    mike.sendline(f"/open {group.split()[0]}")
    mike.expect_exact(f"── {group} ──")
    lena.sendline("ship on friday?")
    lena.expect_exact("✓ sent #2")
    mike.expect_exact(f"[{group}] lena: ship on friday?")

    mike.sendline("/react 2 👍")
    lena.expect_exact(f"[{group}] * mike reacted 👍 to message #2")
    mike.sendline("/reply 2 yes, after the review")
    mike.expect_exact("✓ sent #4")
    lena.expect_exact(f"[{group}] mike: [↪ #2 lena: ship on friday?] yes, after the review")
    mike.sendline("/thread 2 checklist is in the doc")
    mike.expect_exact("✓ sent #5")
    lena.expect_exact(f"[{group}] mike: [thread #2] checklist is in the doc")
    lena.sendline("/thread 2")
    lena.expect_exact(f"── thread #2 of [{group}] ──")
    lena.expect_exact("#5")
    lena.sendline(f"/open {group.split()[0]}")
    lena.expect_exact("lena: ship on friday? [1 in thread: /thread N] [👍 1]")
    lena.sendline("/react 9 👍")
    lena.expect_exact("(message_not_found)")
    lena.sendline("/reply x")
    lena.expect_exact("! usage: /reply N TEXT")
    mike.sendline("/unreact 2 👍")
    lena.expect_exact(f"[{group}] * mike took back 👍 on message #2")
    for person in (lena, mike):
        person.sendline("/quit")
        person.expect(pexpect.EOF)
