"""Line input for ``pica chat``: output lines appear above a prompt that stays at the bottom, as the user types.

On a terminal the prompt is prompt-toolkit's (line editing with the usual Emacs keys and arrows, Up/Down through the
lines typed before, kept in memory only: messages are private and never written to a history file). Lines printed
while the user is half-way through a line go above the prompt (prompt-toolkit's ``patch_stdout``), and every change
to the line is reported (``on_edit``), which is how the chat tells its peer that the user is typing before Enter.
When stdin or stdout is not a terminal (a pipe, a file), lines are read and printed as they are, without prompt,
editing or escape sequences.

Keys on a terminal: Enter submits; Ctrl-D on an empty line is end of input; Ctrl-C interrupts; the rest is
prompt-toolkit's (Ctrl-A/E, Ctrl-W, Ctrl-U, Alt-B/F, Ctrl-R to search the history, ...).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import sys
import threading
from collections.abc import Callable
from typing import Final, TextIO

from prompt_toolkit import PromptSession
from prompt_toolkit.buffer import Buffer
from prompt_toolkit.history import InMemoryHistory
from prompt_toolkit.input import Input
from prompt_toolkit.output import Output
from prompt_toolkit.output.vt100 import Vt100_Output
from prompt_toolkit.patch_stdout import patch_stdout

EOF: Final = "\x04"
INTERRUPT: Final = "\x03"
"""Markers put on the line queue instead of a line: end of input, and Ctrl-C."""


class Terminal:
    """``lines`` receives each line the user submits (then EOF or INTERRUPT); ``print`` shows a line above the
    prompt. ``pt_input`` / ``pt_output``: prompt-toolkit's input and output to use instead of the process's terminal
    (tests drive the prompt through a pipe)."""

    def __init__(self, on_edit: Callable[[str], None] | None = None, *, stdin_fd: int = 0,
                 stdout: TextIO | None = None, pt_input: Input | None = None, pt_output: Output | None = None) -> None:
        self.lines: asyncio.Queue[str] = asyncio.Queue()
        self._on_edit = on_edit
        self._fd = stdin_fd
        self._out = stdout or sys.stdout
        self._pt_input = pt_input
        self._pt_output = pt_output
        self.interactive = pt_input is not None or (os.isatty(stdin_fd) and self._out.isatty())
        self._prompt = ""
        self._session: PromptSession[str] | None = None
        self._prompting: asyncio.Task[None] | None = None
        self._patched = contextlib.ExitStack()
        self._buffer = ""  # a piped line not complete yet
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._eof = False

    # ------------------------------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if not self.interactive:
            # A thread, not loop.connect_read_pipe: that would make stdin non-blocking, a mode the shell that
            # started us shares and would find still set after we exit.
            threading.Thread(target=self._read_stdin, name="pica-stdin", daemon=True).start()
            return
        output = self._pt_output
        if output is None:
            output = Vt100_Output.from_pty(self._out)
            # No cursor-position requests: the prompt needs no space reserved below it, and a terminal (or a
            # pseudo-terminal under test) that does not answer them would get a warning printed after 2 s.
            output.enable_cpr = False
        self._session = PromptSession(history=InMemoryHistory(), input=self._pt_input, output=output)
        self._session.default_buffer.on_text_changed += self._edited
        if self._pt_output is None:
            # Everything written to stdout or stderr from now on (ours, logging's) goes above the prompt.
            self._patched.enter_context(patch_stdout(raw=True))
        self._prompting = asyncio.ensure_future(self._prompt_lines(self._session))

    async def stop(self) -> None:
        """End the prompt (the terminal gets its mode back) and flush what was printed above it."""
        task, self._prompting = self._prompting, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._patched.close()

    async def _prompt_lines(self, session: PromptSession[str]) -> None:
        while True:
            try:
                line = await session.prompt_async(lambda: self._prompt)
            except EOFError:  # Ctrl-D on an empty line
                self.lines.put_nowait(EOF)
                return
            except KeyboardInterrupt:
                self.lines.put_nowait(INTERRUPT)
                return
            self.lines.put_nowait(line)

    def _edited(self, buffer: Buffer) -> None:
        if buffer.text and self._on_edit is not None:
            self._on_edit(buffer.text)

    def _read_stdin(self) -> None:
        loop = self._loop
        assert loop is not None
        while True:
            try:
                data = os.read(self._fd, 4096)
            except OSError:
                data = b""
            try:
                loop.call_soon_threadsafe(self._feed, data)
            except RuntimeError:  # the loop is closed: we are exiting
                return
            if not data:
                return

    # ------------------------------------------------------------------------------------------ output

    def set_prompt(self, prompt: str) -> None:
        self._prompt = prompt
        if self._session is not None and self._session.app.is_running:
            self._session.app.invalidate()

    def print(self, text: str) -> None:
        """A line (or several) above the input line."""
        self._write(sys.stdout if self._session is not None and self._pt_output is None else self._out, text + "\n")

    def error(self, text: str) -> None:
        """A line on stderr (for scripts that read stdout); on a terminal, above the input line all the same."""
        self._write(sys.stderr, text + "\n")

    @staticmethod
    def _write(stream: TextIO, text: str) -> None:
        with contextlib.suppress(OSError, ValueError):  # the terminal went away: nothing left to show
            stream.write(text)
            stream.flush()

    # ------------------------------------------------------------------------------------------ piped input

    def _feed(self, data: bytes) -> None:
        if self._eof:
            return
        if not data:
            self._eof = True
            if self._buffer:
                self.lines.put_nowait(self._buffer)  # a last line without a newline
            self.lines.put_nowait(EOF)
            return
        self._buffer += self._decoder.decode(data)
        *complete, self._buffer = self._buffer.split("\n")
        for line in complete:
            self.lines.put_nowait(line.rstrip("\r"))
