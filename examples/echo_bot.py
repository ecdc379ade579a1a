"""A bot that answers every text message it is sent, in 1:1 conversations and in the groups it belongs to, over a
socket with the Python SDK (docs/bots.md).

    pica bot create echo                       # prints the bot's key once
    PICA_BOT_KEY=pica_bot_... python examples/echo_bot.py [--url http://127.0.0.1:8080] [--transport ws|tcp]

The SDK keeps the socket up (reconnecting with backoff, catching up by sync) and ``--cursors`` keeps its place
across restarts, so a message sent while the bot was down is answered when it comes back. A rotated or deleted key
ends it (the server closes the socket with 4506; the SDK gives up, having no password to log in with).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os

from pica.client import MessageEvent, PicaClient
from pica.client.connection import Transport
from pica.protocol.frames import Msg


def reply_to(text: str) -> str:
    return f"echo: {text}"


async def answer(bot: PicaClient, message: Msg) -> None:
    text = message.body.get("text")
    if message.sender == bot.user_id or not isinstance(text, str):
        return  # not our own words, nor files, notices or custom data
    if message.conversation_id.startswith("g:"):
        await bot.send(group_id=int(message.conversation_id[2:]), text=reply_to(text))
    else:
        await bot.send(to=message.sender, text=reply_to(text))
    await bot.mark_read(message.conversation_id, message.seq)


async def run(url: str, key: str, transport: Transport, tcp_port: int | None, cursors: str | None) -> None:
    async with PicaClient(url, token=key, transport=transport, tcp_port=tcp_port, cursor_file=cursors) as bot:
        print(f"echo bot #{bot.user_id} connected to {url}", flush=True)
        async for event in bot:  # every message once, in order per conversation, across reconnections
            if isinstance(event, MessageEvent):
                await answer(bot, event.message)


def main() -> None:
    parser = argparse.ArgumentParser(description="A Pica bot that echoes every text message it receives.")
    parser.add_argument("--url", default=os.environ.get("PICA_URL", "http://127.0.0.1:8080"))
    parser.add_argument("--transport", choices=["ws", "ws-msgpack", "tcp"], default="ws")
    parser.add_argument("--tcp-port", type=int, help="the server's TCP port (with --transport tcp)")
    parser.add_argument("--cursors", help="a file keeping the bot's place across restarts")
    args = parser.parse_args()
    key = os.environ.get("PICA_BOT_KEY", "")
    if not key:
        parser.error("set PICA_BOT_KEY to the bot's key (pica bot create NAME prints it)")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(args.url, key, args.transport, args.tcp_port, args.cursors))


if __name__ == "__main__":
    main()
