"""Unit tests of the chat's text rendering and line input (no server; the prompt is driven through a pipe)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from prompt_toolkit.input import PipeInput, create_pipe_input
from prompt_toolkit.output import DummyOutput

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


def test_link_previews() -> None:
    card = {"url": "https://pica.example", "title": "Pica", "site_name": "Pica site", "description": "Chat " * 30,
            "image": "data:image/jpeg;base64,AAAA"}
    shown = content({"text": "see https://pica.example", "link_preview": card})
    assert shown.startswith("see https://pica.example [Pica · Pica site · Chat Chat") and shown.endswith("…]")
    assert content({"text": "see https://pica.example", "link_preview": {"removed": True}}) == (
        "see https://pica.example")
    assert notice("alice", {"preview": {"seq": 3, "url": "https://pica.example", "title": "Pica"}}, name_of) == (
        "* link preview of message #3: [Pica]")
    assert notice("alice", {"preview": {"seq": 3, "removed": True}}, name_of) == (
        "* alice removed the link preview of message #3")


def test_table() -> None:
    assert table(("ID", "NAME"), [(1, "alice"), (10, "bob")]) == "ID  NAME\n1   alice\n10  bob"


@asynccontextmanager
async def prompt(edits: list[str]) -> AsyncIterator[tuple[Terminal, PipeInput]]:
    """A terminal whose keys come from a pipe, as prompt-toolkit reads them from a real one."""
    with create_pipe_input() as keys:
        term = Terminal(edits.append, pt_input=keys, pt_output=DummyOutput())
        term.start()
        term.set_prompt("> ")
        try:
            yield term, keys
        finally:
            await term.stop()


async def next_line(term: Terminal) -> str:
    return await asyncio.wait_for(term.lines.get(), 5)


async def test_line_editing_and_history() -> None:
    edits: list[str] = []
    async with prompt(edits) as (term, keys):
        keys.send_text("helo\x7flo wold\x1b[D\x1b[Dr\r")  # a backspace; two Left arrows, then a key in between
        assert await next_line(term) == "hello world"
        keys.send_text("world\x01hello \r")  # Ctrl-A: to the start of the line
        assert await next_line(term) == "hello world"
        keys.send_text("some words\x17\x17again\x15x\r")  # Ctrl-W twice, Ctrl-U
        assert await next_line(term) == "x"
        keys.send_text("\x1b[A\x1b[A\x1b[A\r")  # Up three times: the line typed three lines ago
        assert await next_line(term) == "hello world"
        keys.send_text("ünï\r")
        assert await next_line(term) == "ünï"
        keys.send_text("abc\x04\x15\x04")  # Ctrl-D on a non-empty line does nothing; on an empty one: end of input
        assert await next_line(term) == EOF
    assert edits[:5] == ["h", "he", "hel", "helo", "hel"]  # every change, with the line so far (the user is typing)


async def test_ctrl_c_interrupts() -> None:
    async with prompt([]) as (term, keys):
        keys.send_text("half a line\x03")
        assert await next_line(term) == INTERRUPT


def test_plain_input_when_not_a_terminal() -> None:
    out = io.StringIO()
    term = Terminal(stdout=out)
    term.interactive = False
    term._feed(b"one\r\ntw")
    term._feed(b"o\nthree")
    term._feed(b"")
    lines = []
    while not term.lines.empty():
        lines.append(term.lines.get_nowait())
    assert lines == ["one", "two", "three", EOF]
    term.print("shown")
    assert out.getvalue() == "shown\n"
