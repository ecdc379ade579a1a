"""Line input for a plain terminal, without curses: output lines appear above a prompt that is redrawn under them.

On a terminal, input is read in non-canonical mode (the kernel neither echoes nor buffers lines), so this module
echoes and edits the line itself. That is what lets a chat print incoming messages while the user is half-way
through a line without garbling it, and what tells it that the user is typing (``on_edit``) before Enter. When stdin
or stdout is not a terminal (a pipe, a file), lines are read and printed as they are, without prompt or echo.

Keys: Enter submits; Backspace, Ctrl-U (clear), Ctrl-W (word), Ctrl-L (redraw); Ctrl-D on an empty line is end of
input, Ctrl-C interrupts; escape sequences (arrow keys and the like) are ignored.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import shutil
import sys
import threading
from collections.abc import Callable
from typing import Any, Final, TextIO

EOF: Final = "\x04"
INTERRUPT: Final = "\x03"
"""Markers put on the line queue instead of a line: end of input, and Ctrl-C."""

class Terminal:
    def __init__(self, on_edit: Callable[[str], None] | None = None, *, stdin_fd: int = 0,
                 stdout: TextIO | None = None) -> None:
        self.lines: asyncio.Queue[str] = asyncio.Queue()
        self._on_edit = on_edit
        self._fd = stdin_fd
        self._out = stdout or sys.stdout
        self.interactive = os.isatty(stdin_fd) and self._out.isatty()
        self._prompt = ""
        self._buffer = ""
        self._escape = ""  # an escape sequence being skipped
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._saved_mode: list[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._eof = False

    # ------------------------------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self.interactive:
            self._enter_raw_mode()
        # A thread, not loop.connect_read_pipe: that would make the terminal non-blocking, a mode the shell that
        # started us shares and would find still set after we exit.
        threading.Thread(target=self._read_stdin, name="pica-stdin", daemon=True).start()
        self._redraw()

    def stop(self) -> None:
        if self.interactive:
            self._write(self._erase_input())  # leave no prompt behind for the shell
        self._restore_mode()

    def _enter_raw_mode(self) -> None:
        import termios

        try:
            mode = termios.tcgetattr(self._fd)
        except termios.error:
            self.interactive = False
            return
        self._saved_mode = mode
        raw = list(mode)
        # lflag: no line buffering, no echo, no signals (Ctrl-C and Ctrl-D come to us as bytes); input and output
        # translation stay on, so Enter reads as "\n" and "\n" prints as CR LF.
        raw[3] = int(mode[3]) & ~(termios.ICANON | termios.ECHO | termios.ISIG | termios.IEXTEN)
        cc = list(mode[6])
        cc[termios.VMIN], cc[termios.VTIME] = 1, 0
        raw[6] = cc
        termios.tcsetattr(self._fd, termios.TCSADRAIN, raw)

    def _restore_mode(self) -> None:
        if self._saved_mode is None:
            return
        import termios

        with contextlib.suppress(termios.error):
            termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved_mode)
        self._saved_mode = None

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
        self._redraw()

    def print(self, text: str) -> None:
        """A line (or several) above the input line."""
        if not self.interactive:
            self._write(text + "\n")
            return
        self._write(self._erase_input() + text + "\n" + self._prompt + self._buffer)

    def error(self, text: str) -> None:
        """A line on stderr (for scripts that read stdout), above the input line all the same."""
        if self.interactive:
            self._write(self._erase_input())
        with contextlib.suppress(OSError, ValueError):
            print(text, file=sys.stderr, flush=True)
        self._redraw()

    def _redraw(self) -> None:
        if self.interactive:
            self._write(self._erase_input() + self._prompt + self._buffer)

    def _erase_input(self) -> str:
        """Back to the start of the input line, which wraps over several rows when it is long, and clear it."""
        width = max(1, shutil.get_terminal_size().columns)
        rows = (len(self._prompt) + len(self._buffer)) // width
        return (f"\x1b[{rows}A" if rows else "") + "\r\x1b[J"

    def _write(self, text: str) -> None:
        with contextlib.suppress(OSError, ValueError):  # the terminal went away: nothing left to show
            self._out.write(text)
            self._out.flush()

    # ------------------------------------------------------------------------------------------ input

    def _feed(self, data: bytes) -> None:
        if self._eof:
            return
        if not data:
            self._eof = True
            if self._buffer and not self.interactive:
                self.lines.put_nowait(self._buffer)  # a last line without a newline
            self.lines.put_nowait(EOF)
            return
        text = self._decoder.decode(data)
        if not self.interactive:
            self._buffer += text
            *complete, self._buffer = self._buffer.split("\n")
            for line in complete:
                self.lines.put_nowait(line.rstrip("\r"))
            return
        for ch in text:
            # Told per key, with the line as it is then: a chunk can hold a whole line and its Enter.
            if self._key(ch) and self._on_edit is not None:
                self._on_edit(self._buffer)
            if self._eof:
                break

    def _key(self, ch: str) -> bool:
        """Apply one key; True when it added text to the line (the user is typing)."""
        if self._escape:
            # CSI / SS3 sequences end with a byte in @..~; a lone ESC followed by a plain key drops that key.
            self._escape += ch
            if (len(self._escape) > 2 and "@" <= ch <= "~") or (len(self._escape) == 2 and ch not in "[O"):
                self._escape = ""
            return False
        if ch in "\r\n":
            line, self._buffer = self._buffer, ""
            self._write("\n")
            self.lines.put_nowait(line)
            self._redraw()
        elif ch in "\x7f\x08":
            self._buffer = self._buffer[:-1]
            self._redraw()
        elif ch == "\x15":
            self._buffer = ""
            self._redraw()
        elif ch == "\x17":
            kept = self._buffer.rstrip()
            self._buffer = kept[: kept.rfind(" ") + 1]
            self._redraw()
        elif ch == "\x0c":
            self._write("\x1b[H\x1b[2J")
            self._redraw()
        elif ch == EOF:
            if not self._buffer:
                self._eof = True
                self.lines.put_nowait(EOF)
        elif ch == INTERRUPT:
            self._buffer = ""
            self.lines.put_nowait(INTERRUPT)
        elif ch == "\x1b":
            self._escape = ch
        elif ch == "\t":
            self._buffer += " "
            self._write(" ")
            return True
        elif ch >= " ":
            self._buffer += ch
            self._write(ch)
            return True
        return False
