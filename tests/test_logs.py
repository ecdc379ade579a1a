"""What reaches logs and the console: store and Redis URLs never show their password; a line a client can make the
node write repeats at most a few times per window, then is counted; a client's bad input is never a traceback."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
from collections.abc import Iterator

import aiohttp
import pytest

from pica.logs import RepeatFilter, configure, redact_url
from pica.protocol.framing import frame_bytes
from tests.conftest import Node, new_user


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://pica:s3cret@db.internal:5432/pica", "postgresql://pica:***@db.internal:5432/pica"),
        ("redis://:s3cret@redis.internal:6379/0", "redis://:***@redis.internal:6379/0"),
        ("postgresql://postgres@127.0.0.1:5432/test", "postgresql://postgres@127.0.0.1:5432/test"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ],
)
def test_passwords_are_masked(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert "s3cret" not in redact_url(url)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Lines(logging.Handler):
    """What a handler with the filter lets out: (logger, level, message, suppressed count or None)."""

    def __init__(self, repeat: RepeatFilter) -> None:
        super().__init__()
        self.addFilter(repeat)
        self.seen: list[tuple[str, str, str, int | None]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append((record.name, record.levelname, record.getMessage(), getattr(record, "suppressed", None)))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@contextlib.contextmanager
def listening(repeat: RepeatFilter, *names: str) -> Iterator[Lines]:
    lines = Lines(repeat)
    loggers = [logging.getLogger(name) for name in names]
    for logger in loggers:
        logger.addHandler(lines)
        logger.propagate = False
        logger.setLevel(logging.DEBUG)
    try:
        yield lines
    finally:
        for logger in loggers:
            logger.removeHandler(lines)
            logger.propagate = True
            logger.setLevel(logging.NOTSET)


def test_a_repeated_line_passes_five_times_per_window_then_is_counted_once_the_window_is_over(clock: FakeClock) -> None:
    with listening(RepeatFilter(clock=clock), "t.gateway", "t.other") as lines:
        gateway = logging.getLogger("t.gateway")
        for i in range(12):  # a client hammering a refused request: the arguments differ, the template does not
            gateway.info("refused frame from %s", f"10.0.0.{i}")
        assert [message for _, _, message, _ in lines.seen] == [f"refused frame from 10.0.0.{i}" for i in range(5)]

        clock.now += 9.9  # still the same window: nothing yet
        logging.getLogger("t.other").info("something else")
        assert lines.seen[-1][2] == "something else"

        clock.now += 0.1  # the window is over: the next line of any kind brings the count first
        logging.getLogger("t.other").info("and more")
        assert lines.seen[-2:] == [("t.gateway", "INFO", "suppressed 7 similar messages", 7),
                                   ("t.other", "INFO", "and more", None)]

        gateway.info("refused frame from %s", "10.0.0.99")  # a new window for it
        assert lines.seen[-1] == ("t.gateway", "INFO", "refused frame from 10.0.0.99", None)


def test_the_next_line_of_the_same_key_ends_its_window_and_nothing_is_counted_when_nothing_was_dropped(
    clock: FakeClock,
) -> None:
    with listening(RepeatFilter(clock=clock), "t.gateway") as lines:
        gateway = logging.getLogger("t.gateway")
        for _ in range(6):
            gateway.warning("slow consumer")
        gateway.info("quiet line")
        clock.now += 10
        gateway.warning("slow consumer")
        gateway.info("quiet line")  # its window ended with nothing dropped: no summary for it
        assert lines.seen == [("t.gateway", "WARNING", "slow consumer", None)] * 5 + [
            ("t.gateway", "INFO", "quiet line", None),
            ("t.gateway", "WARNING", "suppressed 1 similar messages", 1),
            ("t.gateway", "WARNING", "slow consumer", None),
            ("t.gateway", "INFO", "quiet line", None),
        ]


def test_the_same_template_at_another_level_or_logger_is_counted_apart(clock: FakeClock) -> None:
    with listening(RepeatFilter(clock=clock), "t.a", "t.b") as lines:
        for _ in range(6):
            logging.getLogger("t.a").info("x")
            logging.getLogger("t.a").warning("x")
            logging.getLogger("t.b").info("x")
        assert len(lines.seen) == 15


def test_memory_is_bounded_and_an_evicted_key_still_reports_what_it_dropped(clock: FakeClock) -> None:
    repeat = RepeatFilter(clock=clock, max_keys=3)
    with listening(repeat, "t.flood") as lines:
        flood = logging.getLogger("t.flood")
        for _ in range(7):
            flood.info("first template")
        for n in range(1000):  # a thousand distinct templates (a library logging preformatted text)
            flood.info(f"template {n}")
            assert repeat.keys <= 3
        assert ("t.flood", "INFO", "suppressed 2 similar messages", 2) in lines.seen
        assert len(lines.seen) == 5 + 1 + 1000


def test_configure_installs_the_limit(restore_logging: None) -> None:
    stream = io.StringIO()
    with contextlib.redirect_stderr(stream):
        configure("INFO", "json")
    for _ in range(8):
        logging.getLogger("t.configured").info("same line %d", 1)
    assert [json.loads(line)["msg"] for line in stream.getvalue().splitlines()] == ["same line 1"] * 5


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """configure() takes over the root logger; give the rest of the test run its own back."""
    root, access = logging.getLogger(), logging.getLogger("aiohttp.access")
    handlers, level, access_level = root.handlers[:], root.level, access.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        access.setLevel(access_level)


BAD_HTTP = {
    "an over-long header line": b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n",
    "a NUL in the URL": b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
    "a negative length": b"POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    "garbage as a second request": b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGARBAGE\r\n\r\n",
    "not HTTP at all": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
}


async def send_raw(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    try:
        async with asyncio.timeout(5):
            return await reader.read(1 << 16)  # the first answer is enough
    finally:
        writer.close()


async def test_a_clients_bad_input_is_one_line_never_a_traceback(node: Node, restore_logging: None) -> None:
    stream = io.StringIO()
    with contextlib.redirect_stderr(stream):
        configure("DEBUG", "json")
    alice = await new_user(node.url)

    for request in BAD_HTTP.values():  # refused by aiohttp's parser, before any handler runs
        assert (await send_raw(node.server.http_port, request)).startswith(b"HTTP/1.")
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{node.url}/v1/auth/login", data=b'{"username": [') as resp:
            assert resp.status == 400
        async with session.ws_connect(f"{node.url}/v1/ws", headers={"Authorization": f"Bearer {alice.token}"}) as ws:
            assert (await ws.receive_json())["t"] == "ready"
            answers = []
            for frame in ['{"t": "send", "to": "me", "body": 1}', "[1, 2]", '{"t": "sync", "cursors": {"g:-1": 1}}',
                          '{"t": "history", "conversation_id": "g:99999999999999999999999"}', "\u00ff" * 3]:
                await ws.send_str(frame)
                answers.append((await ws.receive_json())["t"])
            assert answers == ["error", "error", "synced", "error", "error"]
    for garbage in (b"\xc1\xc1", b"\x81\xa1t\xa4auth"):  # TCP: not MessagePack; an auth frame without a token
        assert await send_raw(node.tcp_port, frame_bytes(garbage))

    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert not [line for line in lines if "exc" in line or "Traceback" in line["msg"]]
    refused = [line for line in lines if line["msg"] == "refused a malformed HTTP request"]
    assert {line["error"] for line in refused} >= {"LineTooLong", "InvalidURLError", "BadHttpMethod"}
    assert {line["level"] for line in refused} <= {"info", "debug"}
