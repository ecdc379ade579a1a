"""Bots end to end on a real node: an operator makes a bot with ``pica bot create``, the bot uses its API key on
HTTP, WebSocket and TCP like a user's token, and loses it when the key is rotated or the bot deleted; a bot cannot
log in with a password; a bot with a webhook gets its messages as signed deliveries, retried; a bot's rate limits
are a multiple of a user's."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pica.client import PicaConnection, PicaHttp, PicaHttpError, ServerClosed
from pica.config import BotsConfig, Config, ConfigError, MqttConfig, load_config
from pica.protocol import frames as f
from pica.protocol.close_codes import CloseCode
from tests.api.test_sessions import closed_with
from tests.conftest import TEST_AUTH, Node, make_config, new_user, running
from tests.mqtt.paho_client import Paho
from tests.webhooks.receiver import SECRET, Receiver, verify
from tests.webhooks.test_webhooks import FAST_JOBS, receiver

__all__ = ["receiver"]



def config(tmp_path: Path, **changes: Any) -> Config:
    auth = dataclasses.replace(TEST_AUTH, revocation_poll=0.2)  # a rotated key's sockets close within 0.2 s
    return dataclasses.replace(make_config(tmp_path), **{"jobs": FAST_JOBS, "auth": auth, **changes})


def pica(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pica", *args], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ))


async def pica_bot(node: Node, *args: str) -> str:
    """``pica bot ...`` on the node's data directory, beside the running server, as an operator types it."""
    done = await asyncio.to_thread(pica, "bot", *args, "--data-dir", str(node.server.config.data_dir))
    assert done.returncode == 0, done.stderr
    return done.stdout


def field(output: str, name: str) -> str:
    found = re.search(rf"^{name}: (\S+)$", output, re.MULTILINE)
    assert found is not None, output
    return found.group(1)


async def refused(node: Node, token: str, method: str = "GET", path: str = "/v1/me", **kwargs: Any) -> tuple[int, str]:
    async with PicaHttp(node.url, token=token) as http:
        with pytest.raises(PicaHttpError) as failed:
            await http.request(method, path, **kwargs)
    return failed.value.status, failed.value.code


async def send(node: Node, token: str, text: str, cmid: str, *, to: int | None = None,
               group_id: int | None = None) -> Any:
    target = {"to": to} if to is not None else {"group_id": group_id}
    async with PicaHttp(node.url, token=token) as http:
        return await http.request("POST", "/v1/messages", json={**target, "client_msg_id": cmid,
                                                                "body": {"text": text}})


async def test_a_bot_key_works_on_http_websocket_and_tcp(tmp_path: Path) -> None:
    async with running(config(tmp_path)) as node:
        made = await pica_bot(node, "create", "helper")
        key = field(made, "key")
        assert key.startswith("pica_bot_") and "created bot helper" in made
        alice = await new_user(node.url, "alice")

        async with PicaHttp(node.url, token=key) as http:
            me = await http.request("GET", "/v1/me")
            assert me["username"] == "helper"
            bot_id = int(me["user_id"])
            await http.send(alice.user_id, "hello-1", {"text": "hello, I am a bot"})
        ws = await PicaConnection.open(node.url, key)
        tcp = await PicaConnection.open(node.url, key, transport="tcp", tcp_port=node.tcp_port)
        await send(node, alice.token, "hi bot", "a-1", to=bot_id)
        for conn in (ws, tcp):
            got = await conn.next_event(f.Msg)
            assert (got.sender, got.body) == (alice.user_id, {"text": "hi bot"})
        sent = await tcp.send(alice.user_id, {"text": "answered over TCP"})
        assert sent.seq == 3
        async with PicaHttp(node.url, token=alice.token) as http:
            history = await http.history(sent.conversation_id)
        assert [m["body"]["text"] for m in history["messages"]] == ["hello, I am a bot", "hi bot",
                                                                    "answered over TCP"]
        listed = await pica_bot(node, "list")
        assert "helper" in listed and "(socket)" in listed
        await ws.close()
        await tcp.close()


async def test_a_rotated_key_is_refused_and_its_sockets_closed(tmp_path: Path) -> None:
    async with running(config(tmp_path)) as node:
        old = field(await pica_bot(node, "create", "helper"), "key")
        ws = await PicaConnection.open(node.url, old)
        tcp = await PicaConnection.open(node.url, old, transport="tcp", tcp_port=node.tcp_port)

        new = re.findall(r"pica_bot_\S+", await pica_bot(node, "key", "helper"))[0]
        assert new != old
        assert await refused(node, old) == (401, "invalid_token")
        assert await closed_with(ws) == CloseCode.SESSION_ENDED
        assert await closed_with(tcp) == CloseCode.SESSION_ENDED
        with pytest.raises(ServerClosed) as at_connect:
            await PicaConnection.open(node.url, old)
        assert at_connect.value.code == CloseCode.AUTH_FAILED
        async with PicaHttp(node.url, token=new) as http:
            assert (await http.request("GET", "/v1/me"))["username"] == "helper"
        again = await PicaConnection.open(node.url, new)
        await again.ping()
        await again.close()


async def test_a_deleted_bots_key_is_refused(tmp_path: Path) -> None:
    async with running(config(tmp_path)) as node:
        key = field(await pica_bot(node, "create", "helper"), "key")
        ws = await PicaConnection.open(node.url, key)
        assert "deleted bot helper" in await pica_bot(node, "delete", "helper")
        assert await refused(node, key) == (401, "invalid_token")
        assert await closed_with(ws) == CloseCode.SESSION_ENDED
        assert "no bots" in await pica_bot(node, "list")
        gone = await asyncio.to_thread(pica, "bot", "key", "helper", "--data-dir", str(node.server.config.data_dir))
        assert gone.returncode == 1 and "no bot named 'helper'" in gone.stderr


async def test_a_bot_cannot_log_in_with_a_password_nor_refresh(tmp_path: Path) -> None:
    async with running(config(tmp_path)) as node:
        assert node.server.services is not None
        made = await node.server.services.accounts.bots.create("helper")
        async with PicaHttp(node.url) as http:
            for password in ("!bot", made.key, "correct horse battery"):
                with pytest.raises(PicaHttpError) as failed:
                    await http.login("helper", password)
                assert (failed.value.status, failed.value.code) == (401, "invalid_credentials")
        # A key is no refresh token, and a bot has none.
        assert await refused(node, "", "POST", "/v1/auth/refresh", json={"refresh_token": made.key}) == (
            401, "invalid_token")
        # A key that looks like one but is not a current key, and a key that is not even ASCII.
        assert await refused(node, "pica_bot_" + "A" * 43) == (401, "invalid_token")
        assert await refused(node, "pica_bot_" + "é" * 10) == (401, "invalid_token")


async def test_a_webhook_bot_gets_its_messages_signed_and_retried(tmp_path: Path, receiver: Receiver) -> None:
    receiver.answer = lambda n, got: 500 if n == 1 else 200  # the bot's server fails once
    async with running(config(tmp_path)) as node:
        made = await pica_bot(node, "create", "hooked", "--webhook", receiver.url, "--secret", SECRET)
        assert field(made, "secret") == SECRET and field(made, "webhook") == receiver.url
        key = field(made, "key")
        assert node.server.side_work is not None
        await node.server.side_work.endpoints.refresh()  # as every node does within jobs.endpoint_refresh
        alice, bob = await new_user(node.url, "alice"), await new_user(node.url, "bob")
        async with PicaHttp(node.url, token=key) as http:
            bot_id = int((await http.request("GET", "/v1/me"))["user_id"])
            group = await http.request("POST", "/v1/groups", json={"name": "desk", "members": [alice.user_id]})
        async with PicaHttp(node.url, token=alice.token) as http:
            other = await http.request("POST", "/v1/groups", json={"name": "people", "members": [bob.user_id]})

        direct = await send(node, alice.token, "hi bot", "a-1", to=bot_id)
        await send(node, alice.token, "hi bob", "a-2", to=bob.user_id)  # not the bot's conversation
        await send(node, bob.token, "no bot here", "b-1", group_id=other["group_id"])
        in_group = await send(node, alice.token, "hello desk", "a-3", group_id=group["group_id"])
        await send(node, key, "my own words", "bot-1", group_id=group["group_id"])  # not sent back to the bot
        await receiver.wait_for(lambda: len(receiver.unique()) == 2 and len(receiver.received) == 3)
        await asyncio.sleep(0.5)  # nothing more arrives
        assert (await node.server.store.job_stats()).queued == 0

    first, retried = receiver.received[0], next(r for r in receiver.received[1:] if r.id == receiver.received[0].id)
    assert first.body == retried.body
    for got in receiver.received:
        verify(SECRET, got.headers, got.body)
    deliveries = sorted((r.json for r in receiver.unique().values()), key=lambda p: p["data"]["ts"])
    assert [p["type"] for p in deliveries] == ["message.created", "message.created"]
    assert deliveries[0]["data"] == {"conversation_id": direct["conversation_id"], "seq": direct["seq"],
                                     "sender": alice.user_id, "to": bot_id, "client_msg_id": "a-1",
                                     "ts": direct["ts"], "body": {"text": "hi bot"}}
    assert deliveries[1]["data"]["group_id"] == group["group_id"]
    assert deliveries[1]["data"]["seq"] == in_group["seq"] and deliveries[1]["data"]["body"] == {"text": "hello desk"}
    assert json.loads(receiver.received[0].body)["data"]["client_msg_id"] == "a-1"


async def test_a_bot_sends_as_many_times_more_as_its_multiplier(tmp_path: Path) -> None:
    rates = dataclasses.replace(make_config(tmp_path).rates, sends_per_user="2/min")
    async with running(config(tmp_path, rates=rates, bots=BotsConfig(rate_multiplier=3.0))) as node:
        assert node.server.services is not None
        made = await node.server.services.accounts.bots.create("busy")
        alice = await new_user(node.url, "alice")
        for i in range(6):  # 3 times a user's bucket
            await send(node, made.key, f"n{i}", f"bot-{i}", to=alice.user_id)
        assert await refused(node, made.key, "POST", "/v1/messages", json={
            "to": alice.user_id, "client_msg_id": "bot-6", "body": {"text": "one too many"}}) == (429, "rate_limited")
        for i in range(2):
            await send(node, alice.token, f"n{i}", f"alice-{i}", to=made.user_id)
        assert await refused(node, alice.token, "POST", "/v1/messages", json={
            "to": made.user_id, "client_msg_id": "alice-2", "body": {"text": "one too many"}}) == (
            429, "rate_limited")


def test_the_multiplier_must_be_positive() -> None:
    with pytest.raises(ConfigError, match=r"bots\.rate_multiplier"):
        load_config(env={"PICA_BOTS_RATE_MULTIPLIER": "0"})
    assert load_config(env={"PICA_BOTS_RATE_MULTIPLIER": "2.5"}).bots.rate_multiplier == 2.5


async def test_a_bot_key_is_an_mqtt_password(tmp_path: Path) -> None:
    async with running(config(tmp_path, mqtt=MqttConfig(port=0))) as node:
        assert node.server.services is not None
        made = await node.server.services.accounts.bots.create("sensor")
        alice = await new_user(node.url, "alice")
        client = Paho(node.server.mqtt_port, "sensor", made.key)
        assert await asyncio.to_thread(client.connect) == 0
        try:
            await asyncio.to_thread(client.send, f"send/u/{alice.user_id}", {"text": "21.5 °C"})
        finally:
            await asyncio.to_thread(client.close)
        async with PicaHttp(node.url, token=alice.token) as http:
            [conversation] = (await http.request("GET", "/v1/conversations"))["conversations"]
        assert conversation["last_message"]["body"] == {"text": "21.5 °C"}
        assert conversation["last_message"]["sender"] == made.user_id
        wrong_name = Paho(node.server.mqtt_port, "alice", made.key)  # the key is the bot's, not alice's
        assert await asyncio.to_thread(wrong_name.connect) != 0
        await asyncio.to_thread(wrong_name.close)
