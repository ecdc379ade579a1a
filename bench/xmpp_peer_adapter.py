"""peer-bench's XMPP adapter (``../shared/peer-bench/xmpp.py``) pointed at Pica's XMPP gateway: the same stanzas;
the accounts are made over Pica's HTTP API (Pica has no XEP-0077 in-band registration) and named ``u00``, ``u07``,
``u123`` (Pica's names have at least 3 characters). ``PICA_URL``: the node's HTTP address. Run with peer-bench's
folder and this one on ``PYTHONPATH`` (BENCHMARKS.md, "XMPP")."""

import asyncio
import json
import os
import urllib.error
import urllib.request

import xmpp  # peer-bench's adapter


class Adapter(xmpp.Adapter):
    name = "xmpp_peer_adapter"

    def user(self, i: int) -> bytes:
        return b"u%02d" % i

    async def register(self, i: int) -> None:
        url = os.environ.get("PICA_URL", "http://127.0.0.1:18090") + "/v1/auth/register"
        body = json.dumps({"username": self.user(i).decode(), "password": self.password.decode()}).encode()

        def post() -> None:
            request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
            try:
                urllib.request.urlopen(request, timeout=30).read()
            except urllib.error.HTTPError as exc:
                if exc.code != 409:  # taken: registered by an earlier run
                    raise

        await asyncio.to_thread(post)
