"""The example bots of examples/, run as the programs they are against a real node: the echo bot over a socket (the
SDK, WebSocket and TCP) and the webhook bot (an aiohttp server verifying the signature, answering over HTTP)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from pica.client import PicaConnection, PicaHttp
from pica.protocol import frames as f
from tests.bots.test_bots import config, send
from tests.conftest import new_user, running
from tests.webhooks.receiver import SECRET

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@contextlib.asynccontextmanager
async def program(script: str, *args: str, env: dict[str, str], ready: str) -> AsyncIterator[None]:
    """An example running as a subprocess, from the line it prints once it is ready until the end of the block."""
    proc = await asyncio.create_subprocess_exec(sys.executable, str(EXAMPLES / script), *args,
                                                env={**os.environ, **env}, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(30):
            while not any(ready in line for line in lines):
                line = (await proc.stdout.readline()).decode()
                assert line, f"{script} exited: {''.join(lines)}"
                lines.append(line)
        yield
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("transport", ["ws", "tcp"])
async def test_the_echo_bot_answers_in_1to1_and_in_a_group(tmp_path: Path, transport: str) -> None:
    async with running(config(tmp_path)) as node:
        assert node.server.services is not None
        bot = await node.server.services.accounts.bots.create("echo")
        alice = await new_user(node.url, "alice")
        async with PicaHttp(node.url, token=alice.token) as http:
            group = await http.request("POST", "/v1/groups", json={"name": "desk", "members": [bot.user_id]})
        conn = await PicaConnection.open(node.url, alice.token)
        args = ["--url", node.url, "--transport", transport, "--tcp-port", str(node.tcp_port)]
        async with program("echo_bot.py", *args, env={"PICA_BOT_KEY": bot.key}, ready="connected"):
            await send(node, alice.token, "hello", "a-1", to=bot.user_id)
            await send(node, alice.token, "hello all", "a-2", group_id=group["group_id"])
            answers = [await answer_from(conn, bot.user_id) for _ in range(2)]
        await conn.close()
    assert sorted((m.conversation_id[0], m.body["text"]) for m in answers) == [("d", "echo: hello"),
                                                                               ("g", "echo: hello all")]


async def answer_from(conn: PicaConnection, sender: int) -> f.Msg:
    while True:
        message = await conn.next_message(timeout=20)
        if message.sender == sender:
            return message


async def test_the_webhook_bot_verifies_and_answers_over_http(tmp_path: Path) -> None:
    port = free_port()
    async with running(config(tmp_path)) as node:
        assert node.server.services is not None and node.server.side_work is not None
        bot = await node.server.services.accounts.bots.create("shouter", f"http://127.0.0.1:{port}/", SECRET)
        await node.server.side_work.endpoints.refresh()
        alice = await new_user(node.url, "alice")
        conn = await PicaConnection.open(node.url, alice.token)
        env = {"PICA_BOT_KEY": bot.key, "PICA_WEBHOOK_SECRET": SECRET}
        async with program("webhook_bot.py", "--url", node.url, "--port", str(port), env=env, ready="Running on"):
            await send(node, alice.token, "hello", "a-1", to=bot.user_id)
            answer = await answer_from(conn, bot.user_id)
            # A request not signed with the secret is refused.
            async with aiohttp.ClientSession() as session, session.post(
                    f"http://127.0.0.1:{port}/", data=b'{"type":"message.created","data":{}}',
                    headers={"webhook-id": "msg_x", "webhook-timestamp": "1", "webhook-signature": "v1,AAAA"}) as r:
                assert r.status == 401
        await conn.close()
    assert answer.body == {"text": "HELLO!"} and answer.client_msg_id.startswith("re-msg_")
