"""Unit tests of the chat's text rendering and line editor (no server, no terminal)."""

from __future__ import annotations

import io

from pica.cli.render import content, notice, table
from pica.cli.terminal import EOF, INTERRUPT, Terminal

NAMES = {1: "alice", 2: "bob"}


def name_of(user_id: int) -> str:
    return NAMES.get(user_id, f"user#{user_id}")


def test_message_bodies() -> None:
    assert content({"text": "two\nlines"}) == "two ⏎ lines"
    assert content({"text": "fixed", "edited": 1}) == "fixed (edited)"
    assert content({"recalled": True}) == "(recalled)"
    assert content({"deleted": True}) == "(deleted)"
    assert content({"file": {"id": "f", "name": "a.pdf", "mime": "application/pdf", "size": 2048},
                    "text": "see"}) == "[file a.pdf (2.0 KB)] see"
    assert content({"custom": {"lat": 1.5}, "type": "location"}) == '[custom location] {"lat": 1.5}'


def test_notices() -> None:
    assert notice("alice", {"text": "hi"}, name_of) is None
    assert notice("alice", {"recall": {"seq": 4}}, name_of) == "* alice recalled message #4"
    assert notice("alice", {"edit": {"seq": 4, "text": "new"}}, name_of) == "* alice edited message #4: new"
    assert notice("alice", {"edit": {"seq": 4, "recalled": True}}, name_of) == (
        "* alice edited message #4 (recalled since)")
    removal = {"system": {"event": "removed_from_group", "by": 1, "name": "club", "group_id": 4, "seq": 9}}
    assert notice("bob", removal, name_of) == '* alice removed you from the group "club"'
    created = {"system": {"event": "created", "by": 1, "name": "club", "user_ids": [1, 2, 3]}}
    assert notice("alice", created, name_of) == '* alice created the group "club" with alice, bob, user#3'
    assert notice("x", {"system": {"event": "members_added", "by": 2, "count": 500}}, name_of) == (
        "* bob added 500 users")
    assert notice("x", {"system": {"event": "owner_changed", "by": 1, "user_id": 2}}, name_of) == (
        "* alice handed ownership to bob")
    assert notice("x", {"system": {"event": "brand_new", "by": 1}}, name_of) == (
        '* brand_new ({"event": "brand_new", "by": 1})')


def test_table() -> None:
    assert table(("ID", "NAME"), [(1, "alice"), (10, "bob")]) == "ID  NAME\n1   alice\n10  bob"


def editor() -> tuple[Terminal, io.StringIO, list[str]]:
    out = io.StringIO()
    edits: list[str] = []
    term = Terminal(edits.append, stdout=out)
    term.interactive = True  # as on a terminal: keys one by one, echo and redraw by us
    return term, out, edits


def lines(term: Terminal) -> list[str]:
    found = []
    while not term.lines.empty():
        found.append(term.lines.get_nowait())
    return found


def test_line_editing_keys() -> None:
    term, out, edits = editor()
    term.set_prompt("> ")
    term._feed(b"helo\x7flo w\x1b[Dorld\r")  # a backspace, an arrow key (ignored)
    assert lines(term) == ["hello world"]
    assert edits[-1] == "hello world"
    term._feed(b"some words\x17\x17again\x15x\n")  # Ctrl-W twice, Ctrl-U
    assert lines(term) == ["x"]
    term._feed("ünï".encode()[:3])  # a character split across reads
    term._feed("ünï".encode()[3:] + b"\r")
    assert lines(term) == ["ünï"]
    term._feed(b"abc\x04\x03")  # Ctrl-D on a non-empty line does nothing; Ctrl-C interrupts
    assert lines(term) == [INTERRUPT]
    term._feed(b"\x04")
    assert lines(term) == [EOF]
    assert "> hello world" in out.getvalue()


def test_typing_is_reported_per_key_with_the_line_so_far() -> None:
    term, _, edits = editor()
    term._feed(b"/more\rhi\r")
    assert edits == ["/", "/m", "/mo", "/mor", "/more", "h", "hi"]


def test_output_goes_above_the_input_line() -> None:
    term, out, _ = editor()
    term.set_prompt("[bob]> ")
    term._feed(b"half a li")
    out.truncate(0)
    out.seek(0)
    term.print("[bob] bob: hi")
    assert out.getvalue() == "\r\x1b[J[bob] bob: hi\n[bob]> half a li"


def test_plain_input_when_not_a_terminal() -> None:
    out = io.StringIO()
    term = Terminal(stdout=out)
    term.interactive = False
    term._feed(b"one\r\ntw")
    term._feed(b"o\nthree")
    term._feed(b"")
    assert lines(term) == ["one", "two", "three", EOF]
    term.print("shown")
    assert out.getvalue() == "shown\n"
