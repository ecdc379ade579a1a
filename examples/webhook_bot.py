"""A bot that receives its messages as webhooks and answers through the HTTP API (docs/bots.md).

    pica bot create shouter --webhook http://127.0.0.1:8090/     # prints the key and the webhook secret once
    PICA_BOT_KEY=pica_bot_... PICA_WEBHOOK_SECRET=whsec_... \\
        python examples/webhook_bot.py [--port 8090] [--url http://127.0.0.1:8080]

Each delivery is checked the Standard Webhooks way (https://www.standardwebhooks.com/): the HMAC-SHA256 of
``<webhook-id>.<webhook-timestamp>.<body>`` under the secret, compared in constant time, and a timestamp more than
five minutes away refused (a replayed request). Pica retries a delivery that did not get a 2xx, with the same
``webhook-id``, so the answer is sent with a ``client_msg_id`` made from it: however often the same delivery comes,
the server stores one answer. Only aiohttp and the standard library: no Pica code runs in the bot.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import time
from typing import Any

import aiohttp
from aiohttp import web

TOLERANCE = 300
"""Seconds a delivery's timestamp may be away from this machine's clock."""


def verified(secret: str, headers: Any, body: bytes) -> bool:
    msg_id = headers.get("webhook-id", "")
    stamp = headers.get("webhook-timestamp", "")
    if not msg_id or not stamp.isdigit() or abs(time.time() - int(stamp)) > TOLERANCE:
        return False
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = base64.b64encode(hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest())
    for signature in headers.get("webhook-signature", "").split():  # several during a secret's rotation
        version, _, value = signature.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected):
            return True
    return False


def reply_to(text: str) -> str:
    return text.upper() + "!"


def make_app(url: str, key: str, secret: str) -> web.Application:
    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        if not verified(secret, request.headers, body):
            return web.Response(status=401, text="bad signature")
        event = json.loads(body)
        data = event["data"]
        text = data.get("body", {}).get("text")
        if event["type"] != "message.created" or not isinstance(text, str):
            return web.Response(status=204)  # nothing to answer: a file, custom data, a notice
        target = {"group_id": data["group_id"]} if "group_id" in data else {"to": data["sender"]}
        answer = {**target, "client_msg_id": "re-" + request.headers["webhook-id"], "body": {"text": reply_to(text)}}
        async with request.app["http"].post(f"{url}/v1/messages", json=answer,
                                            headers={"Authorization": f"Bearer {key}"}) as sent:
            # Not stored (the server down, a rate limit): answer 503, and Pica delivers the message again later.
            return web.Response(status=204 if sent.status == 200 else 503)

    async def client(app: web.Application) -> Any:
        app["http"] = aiohttp.ClientSession()
        yield
        await app["http"].close()

    app = web.Application()
    app.router.add_post("/", hook)
    app.cleanup_ctx.append(client)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="A Pica bot answering its webhook deliveries in capitals.")
    parser.add_argument("--url", default=os.environ.get("PICA_URL", "http://127.0.0.1:8080"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    args = parser.parse_args()
    key, secret = os.environ.get("PICA_BOT_KEY", ""), os.environ.get("PICA_WEBHOOK_SECRET", "")
    if not key or not secret:
        parser.error("set PICA_BOT_KEY and PICA_WEBHOOK_SECRET (pica bot create NAME --webhook URL prints both)")
    web.run_app(make_app(args.url.rstrip("/"), key, secret), host=args.host, port=args.port,
                print=lambda line: print(line, flush=True))


if __name__ == "__main__":
    main()
