"""A webhook receiver for the tests: a real aiohttp server on 127.0.0.1 that records every request, answers what the
test scripted, and verifies signatures with the Standard Webhooks algorithm, written here from the specification
(not with Pica's own signing code)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def verify(secret: str, headers: dict[str, str], body: bytes, tolerance: float = 300.0) -> None:
    """Standard Webhooks verification: ``signed = id + "." + timestamp + "." + body``; the key is the base64 after
    ``whsec_``; ``webhook-signature`` is a space-separated list of ``v1,<base64 HMAC-SHA256>``; one must match, in
    constant time; a timestamp older or newer than the tolerance is refused (replay)."""
    msg_id, stamp = headers["webhook-id"], headers["webhook-timestamp"]
    if abs(time.time() - int(stamp)) > tolerance:
        raise ValueError("timestamp outside the tolerance")
    key = base64.b64decode(secret.split("_", 1)[1])
    expected = base64.b64encode(hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest())
    for candidate in headers["webhook-signature"].split(" "):
        version, _, sig = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(sig.encode(), expected):
            return
    raise ValueError("no matching signature")


def write_config(path: Path, url: str, events: str = '["message.created"]', **jobs: float) -> Path:
    """A node's TOML file: one ``[[webhooks]]`` endpoint (as an operator writes it) and some ``[jobs]`` settings."""
    settings = "\n".join(f"{key} = {value}" for key, value in jobs.items())
    path.write_text(f'[jobs]\n{settings}\n\n[[webhooks]]\nurl = "{url}"\nsecret = "{SECRET}"\nevents = {events}\n')
    return path


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """``answer(request number, received)`` gives the status (and may sleep); default 200."""

    secret: str = SECRET
    answer: Callable[[int, Received], Any] | None = None
    received: list[Received] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self, port: int = 0) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        got = Received({k.lower(): v for k, v in request.headers.items()}, await request.read(), time.monotonic())
        self.received.append(got)
        self._arrived.set()
        status = 200
        if self.answer is not None:
            result = self.answer(len(self.received), got)
            status = await result if asyncio.iscoroutine(result) else result
        return web.Response(status=status, text="ok")

    def unique(self) -> dict[str, Received]:
        """The deliveries de-duplicated by webhook-id, as a receiver following the specification keeps them."""
        return {r.id: r for r in self.received}

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out; received {len(self.received)} requests")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), min(remaining, 0.2))
