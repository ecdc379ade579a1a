"""slixmpp (a standard XMPP client library, not ours) driven by the tests: log in over STARTTLS, and collect what
arrives (messages, receipts, corrections, chat states, presences) on queues."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import slixmpp
from slixmpp.stanza import Message, Presence

TIMEOUT = 10.0


class Slix(slixmpp.ClientXMPP):
    def __init__(self, jid: str, password: str, trust: ssl.SSLContext | None, plugins: tuple[str, ...] = (),
                 mechanism: str = "PLAIN") -> None:
        super().__init__(jid, password, sasl_mech=mechanism)
        if trust is not None:
            self.ssl_context = trust
        else:  # the loopback node without TLS (xmpp.plain_without_tls)
            self.plugin["feature_mechanisms"].unencrypted_plain = True
        self.enable_direct_tls = False
        for plugin in ("xep_0030", "xep_0184", "xep_0199", "xep_0308", "xep_0085", "xep_0333", "xep_0359",
                       *plugins):
            self.register_plugin(plugin)
        self.plugin["xep_0184"].auto_ack = False
        self.plugin["xep_0184"].auto_request = True
        self.messages: asyncio.Queue[Message] = asyncio.Queue()
        self.receipts: asyncio.Queue[str] = asyncio.Queue()
        self.presences: asyncio.Queue[Presence] = asyncio.Queue()
        self.started = asyncio.Event()
        self.failed = asyncio.Event()
        self.add_event_handler("session_start", self._start)
        self.add_event_handler("failed_auth", lambda _: self.failed.set())
        self.add_event_handler("message", lambda m: self.messages.put_nowait(m))
        self.add_event_handler("receipt_received", lambda m: self.receipts.put_nowait(m["receipt"]))
        self.add_event_handler("presence_available", lambda p: self.presences.put_nowait(p))

    async def _start(self, _: Any) -> None:
        self.send_presence()
        await self.get_roster()
        self.started.set()

    async def login(self, port: int) -> None:
        self.connect("127.0.0.1", port)
        await asyncio.wait([asyncio.ensure_future(self.started.wait()),
                                      asyncio.ensure_future(self.failed.wait())], timeout=TIMEOUT,
                                     return_when=asyncio.FIRST_COMPLETED)
        assert self.started.is_set(), "no session started"

    def say(self, to: str, body: str) -> None:
        self.send_message(mto=slixmpp.JID(to), mbody=body, mtype="chat")

    async def next_message(self, with_body: bool = True) -> Message:
        while True:
            message = await asyncio.wait_for(self.messages.get(), TIMEOUT)
            if not with_body or message["body"]:
                return message

    async def bye(self) -> None:
        self.disconnect()
        await asyncio.sleep(0)
