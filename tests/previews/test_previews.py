"""Link previews end to end: a real node (SQLite), users over WebSocket, TCP and HTTP, and a local web site with
Open Graph tags. The preview comes off the send path, reaches both of the recipient's devices (live, and by sync
after a reconnect), is fetched once per URL (the cache), and its author, and only they, can remove it."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from pathlib import Path
from typing import Any

import pytest

from pica.client.connection import PicaConnection, RequestFailed
from pica.config import Config, JobsConfig, PreviewsConfig
from pica.protocol import frames as f
from tests.conftest import Node, api, api_error, connect, make_config, new_user, running
from tests.previews.pages import Site

WAIT = 10.0
FAST_JOBS = JobsConfig(poll_interval=0.1, backoff_base=0.05, backoff_max=0.2, max_attempts=3, lease=10.0)


def config(tmp_path: Path, site: Site, **previews: Any) -> Config:
    settings = {"allowed_networks": ("127.0.0.0/8",), "allowed_ports": (site.port,), **previews}
    return dataclasses.replace(make_config(tmp_path), jobs=FAST_JOBS, previews=PreviewsConfig(**settings))


async def next_in(conn: PicaConnection, conversation_id: str) -> f.Msg:
    while (msg := await conn.next_message(WAIT)).conversation_id != conversation_id:
        pass
    return msg


async def history(node: Node, who: Any, conversation_id: str) -> dict[int, dict[str, Any]]:
    page = await api(node, who, "GET", f"/v1/conversations/{conversation_id}/messages")
    return {m["seq"]: m["body"] for m in page["messages"]}


async def test_a_link_gets_a_preview_on_every_device_live_and_by_sync(tmp_path: Path, site: Site) -> None:
    async with running(config(tmp_path, site)) as node:
        alice, bob = await new_user(node.url, "a"), await new_user(node.url, "b")
        a = await connect(node.url, alice, "tcp", node.tcp_port)
        phone = await connect(node.url, bob, "ws", device="phone")
        laptop = await connect(node.url, bob, "ws", device="laptop")
        await laptop.sync_all()
        await laptop.close()  # offline while the preview comes
        async with a, phone:
            text = f"our site: {site.url('/page')} (have a look)"
            sent = await a.send(bob.user_id, {"text": text})
            cid = sent.conversation_id
            assert (await next_in(phone, cid)).body == {"text": text}  # the message itself, at once
            event = await next_in(phone, cid)
            assert (event.seq, event.sender) == (2, alice.user_id)
            card = event.body["preview"]
            assert card.pop("image").startswith("data:image/jpeg;base64,")
            assert card == {"seq": 1, "url": site.url("/page"), "title": "Pica & friends", "site_name": "Pica",
                            "description": "A chat server that keeps every message."}
            assert (await next_in(a, cid)).seq == 2  # the author's devices learn it too

            laptop = await connect(node.url, bob, "ws", device="laptop")
            async with laptop:
                synced = {m.seq: m.body for m in await laptop.sync_all() if m.conversation_id == cid}
            assert synced[1]["link_preview"]["title"] == "Pica & friends"
            assert synced[2]["preview"]["seq"] == 1
            last = {c["conversation_id"]: c["last_message"] for c in
                    (await api(node, bob, "GET", "/v1/conversations"))["conversations"]}
            assert last[cid]["seq"] == 1  # the list shows the message, not its preview event

            # The same link again: the cached preview, no second fetch.
            again = await a.send(bob.user_id, {"text": f"again {site.url('/page')}"})
            assert (await next_in(phone, cid)).seq == again.seq
            assert (await next_in(phone, cid)).body["preview"]["title"] == "Pica & friends"
            assert site.hits["page"] == 1 and site.hits["cat.png"] == 1


async def test_the_author_removes_a_preview_and_no_one_else_can(tmp_path: Path, site: Site) -> None:
    async with running(config(tmp_path, site)) as node:
        alice, bob = await new_user(node.url, "a"), await new_user(node.url, "b")
        a = await connect(node.url, alice, "ws")
        b = await connect(node.url, bob, "tcp", node.tcp_port)
        async with a, b:
            cid = (await a.send(bob.user_id, {"text": site.url("/page")})).conversation_id
            await next_in(b, cid)
            assert "preview" in (await next_in(b, cid)).body
            with pytest.raises(RequestFailed) as failed:
                await b.request(f.Unpreview(conversation_id=cid, seq=1, client_msg_id=uuid.uuid4().hex))
            assert failed.value.code == "forbidden"
            removed = await a.request(f.Unpreview(conversation_id=cid, seq=1, client_msg_id=uuid.uuid4().hex))
            assert isinstance(removed, f.Sent) and removed.seq == 3
            assert (await next_in(b, cid)).body == {"preview": {"seq": 1, "removed": True}}
            bodies = await history(node, bob, cid)
            assert bodies[1] == {"text": site.url("/page"), "link_preview": {"removed": True}}

            # Over HTTP, and before the preview came: it never comes.
            second = await a.send(bob.user_id, {"text": site.url("/plain")})
            ack = await api(node, alice, "POST", f"/v1/conversations/{cid}/messages/{second.seq}/unpreview",
                            json={"client_msg_id": "u-http"})
            bodies = await history(node, bob, cid)
            assert bodies[second.seq]["link_preview"] == {"removed": True}
            assert bodies[ack["seq"]] == {"preview": {"seq": second.seq, "removed": True}}
            assert await api_error(node, alice, "POST", f"/v1/conversations/{cid}/messages/{second.seq}/unpreview",
                                   json={"client_msg_id": "u-http-2"}) == (400, "bad_request")
            # A stranger's conversation is not found; a body cannot forge a preview.
            carol = await new_user(node.url, "c")
            assert await api_error(node, carol, "POST", f"/v1/conversations/{cid}/messages/1/unpreview",
                                   json={"client_msg_id": "u-c"}) == (404, "conversation_not_found")
            for forged in ({"text": "x", "link_preview": {"title": "fake"}}, {"preview": {"seq": 1, "title": "f"}}):
                with pytest.raises(RequestFailed):
                    await a.send(bob.user_id, forged)


async def test_a_refused_link_gets_no_preview_and_previews_can_be_off(tmp_path: Path, site: Site) -> None:
    # The default rules: the local site is loopback, so it is refused and never asked.
    strict = dataclasses.replace(config(tmp_path / "strict", site), previews=PreviewsConfig(
        allowed_ports=(site.port,)))
    async with running(strict) as node:
        alice, bob = await new_user(node.url, "a"), await new_user(node.url, "b")
        async with await connect(node.url, alice, "ws") as a:
            sent = await a.send(bob.user_id, {"text": site.url("/page")})
            marker = await a.send(bob.user_id, {"text": "no link"})
            await asyncio.sleep(1.0)  # jobs poll every 0.1 s: the preview job has run by now
            bodies = await history(node, bob, sent.conversation_id)
            assert sorted(bodies) == [sent.seq, marker.seq] and "link_preview" not in bodies[sent.seq]
    off = dataclasses.replace(config(tmp_path / "off", site), previews=PreviewsConfig(enabled=False))
    async with running(off) as node:
        alice, bob = await new_user(node.url, "a"), await new_user(node.url, "b")
        async with await connect(node.url, alice, "ws") as a:
            await a.send(bob.user_id, {"text": site.url("/page")})
            await asyncio.sleep(0.5)
            assert (await node.server.store.job_stats()).queued == 0
    assert site.hits["page"] == 0
