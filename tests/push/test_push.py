"""Push notifications end to end: a real node (SQLite, its writer process), users over HTTP and WebSocket, and local
push services speaking APNs (HTTP/2 over TLS), FCM HTTP v1 (OAuth token endpoint + messages:send) and Web Push
(VAPID, RFC 8291 encryption, which the test decrypts with the subscription's keys)."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from pica.client import Login, PicaHttp
from pica.config import Config, JobsConfig, PushConfig
from tests.conftest import Node, api, connect, make_config, new_user, running, uploaded
from tests.push.services import FakeApns, FakeFcm, FakeWebPush, Got, vapid_key, wait_for

FAST_JOBS = JobsConfig(poll_interval=0.1, backoff_base=0.05, backoff_max=0.2, max_attempts=5, webhook_timeout=2.0,
                       lease=5.0, endpoint_refresh=0.2)
DELAY = 0.2


def config(tmp_path: Path, **push: Any) -> Config:
    settings = {"delay": DELAY, "timeout": 2.0, "webpush_allow_private": True, **push}
    return dataclasses.replace(make_config(tmp_path), jobs=FAST_JOBS, push=PushConfig(**settings))


async def send(node: Node, who: Login, to: int, body: dict[str, Any], cmid: str | None = None) -> Any:
    return await api(node, who, "POST", "/v1/messages",
                     json={"to": to, "client_msg_id": cmid or uuid.uuid4().hex, "body": body})


async def name_of(node: Node, who: Login) -> str:
    return str((await api(node, who, "GET", "/v1/me"))["username"])


async def quiet(seconds: float = DELAY * 5) -> None:
    """Long enough for a push job due after DELAY to have run (the worker polls every 0.1 s)."""
    await asyncio.sleep(seconds)


# ================================================================================================== Web Push


@pytest.fixture
async def webpush() -> AsyncIterator[FakeWebPush]:
    service = FakeWebPush()
    await service.start()
    yield service
    await service.stop()


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 0, 0)).save(out, "PNG")
    return out.getvalue()


async def test_an_offline_recipient_gets_encrypted_web_pushes_collapsed_per_conversation_with_a_badge(
        tmp_path: Path, webpush: FakeWebPush) -> None:
    async with running(config(tmp_path, vapid_private_key=vapid_key())) as node:
        alice, bob = await new_user(node.url, "a"), await new_user(node.url, "b")
        alice_name = await name_of(node, alice)
        async with PicaHttp(node.url) as anonymous:
            settings = await anonymous.request("GET", "/v1/push/config")
        assert settings["platforms"] == ["webpush"]
        subscription = webpush.subscribe()
        device = await api(node, bob, "POST", "/v1/devices",
                           json={"platform": "webpush", "subscription": subscription.json()})
        assert device["platform"] == "webpush" and device["current"] is True

        first = await send(node, alice, bob.user_id, {"text": "are you there?"})
        await wait_for(lambda: len(webpush.received) == 1)
        image = await uploaded(node, alice, png(), "1.png")
        await send(node, alice, bob.user_id, {"image": {"id": image}})
        await wait_for(lambda: len(webpush.received) == 2)

    pushes = [subscription.decrypt(got.body) for got in webpush.received]
    assert [(p["title"], p["body"], p["badge"]) for p in pushes] == [
        (alice_name, "are you there?", 1), (alice_name, "[image]", 2)]
    assert pushes[0]["conversation_id"] == first["conversation_id"] and pushes[0]["seq"] == first["seq"]
    assert len({p["push_id"] for p in pushes}) == 2
    topics = {got.headers["Topic"] for got in webpush.received}
    assert len(topics) == 1 and len(topics.pop()) <= 32  # one conversation: the second replaces the first
    # The push service was authorized with the key browsers subscribe with.
    assert all(f"k={settings['vapid_public_key']}" in got.headers["Authorization"] for got in webpush.received)


async def test_a_recipient_who_acknowledged_delivery_in_time_gets_no_push(tmp_path: Path,
                                                                          webpush: FakeWebPush) -> None:
    async with running(config(tmp_path, vapid_private_key=vapid_key())) as node:
        alice, bob = await new_user(node.url, "a"), await new_user(node.url, "b")
        await api(node, bob, "POST", "/v1/devices",
                  json={"platform": "webpush", "subscription": webpush.subscribe().json()})
        online = await connect(node.url, bob)
        try:
            ack = await send(node, alice, bob.user_id, {"text": "live"})
            await online.ack_received(ack["conversation_id"], ack["seq"])
            await quiet()
            assert webpush.received == []
            await send(node, alice, bob.user_id, {"text": "received but never acknowledged"})
            await wait_for(lambda: len(webpush.received) == 1)
        finally:
            await online.close()


async def test_mute_mention_only_and_privacy_mode_are_honoured(tmp_path: Path, webpush: FakeWebPush) -> None:
    async with running(config(tmp_path, vapid_private_key=vapid_key())) as node:
        alice, bob = await new_user(node.url, "a"), await new_user(node.url, "b")
        alice_name = await name_of(node, alice)
        subscription = webpush.subscribe()
        await api(node, bob, "POST", "/v1/devices", json={"platform": "webpush", "subscription": subscription.json()})
        hello = await send(node, alice, bob.user_id, {"text": "hello"})
        await wait_for(lambda: len(webpush.received) == 1)
        path = f"/v1/conversations/{hello['conversation_id']}/notifications"

        await api(node, bob, "PUT", path, json={"level": "mentions"})
        await send(node, alice, bob.user_id, {"text": "not for you"})
        await send(node, alice, bob.user_id, {"text": "look @bob", "mentions": [bob.user_id]})
        await wait_for(lambda: len(webpush.received) == 2)
        await quiet()

        hour_later = int(time.time() * 1000) + 3_600_000
        assert await api(node, bob, "PUT", path, json={"level": "all", "mute_until": hour_later}) == {
            "conversation_id": hello["conversation_id"], "level": "all", "mute_until": hour_later}
        await send(node, alice, bob.user_id, {"text": "muted"})
        await quiet()
        assert len(webpush.received) == 2

        await api(node, bob, "PUT", path, json={"level": "all", "mute_until": None})
        assert await api(node, bob, "PUT", "/v1/me/push", json={"privacy": True}) == {"privacy": True}
        await send(node, alice, bob.user_id, {"text": "the secret plan"})
        await wait_for(lambda: len(webpush.received) == 3)

    texts = [subscription.decrypt(got.body) for got in webpush.received]
    assert [t["body"] for t in texts[:2]] == ["hello", "look @bob"]
    assert texts[2]["title"] == "New message" and texts[2]["body"] == ""
    assert alice_name not in str(texts[2]) and "secret" not in str(texts[2])


async def test_429_and_5xx_are_retried_with_the_same_push_id_and_410_removes_the_device(
        tmp_path: Path, webpush: FakeWebPush) -> None:
    webpush.answer = lambda n, got: {1: 429, 2: 503}.get(n, 201)
    async with running(config(tmp_path, vapid_private_key=vapid_key())) as node:
        alice, bob = await new_user(node.url, "a"), await new_user(node.url, "b")
        subscription = webpush.subscribe()
        await api(node, bob, "POST", "/v1/devices", json={"platform": "webpush", "subscription": subscription.json()})
        await send(node, alice, bob.user_id, {"text": "third time lucky"})
        await wait_for(lambda: len(webpush.received) == 3)
        await quiet()
        assert len(webpush.received) == 3
        assert len({subscription.decrypt(got.body)["push_id"] for got in webpush.received}) == 1

        webpush.answer = lambda n, got: 410
        await send(node, alice, bob.user_id, {"text": "anyone?"})
        await wait_for(lambda: len(webpush.received) == 4)
        await wait_for_devices(node, bob, 0)
        await send(node, alice, bob.user_id, {"text": "nobody left to push to"})
        await quiet()
        assert len(webpush.received) == 4


async def wait_for_devices(node: Node, who: Login, count: int) -> None:
    deadline = time.monotonic() + 5
    while len((await api(node, who, "GET", "/v1/devices"))["devices"]) != count:
        assert time.monotonic() < deadline, "the device list did not change"
        await asyncio.sleep(0.05)


async def test_a_group_push_names_the_group_and_skips_the_sender(tmp_path: Path, webpush: FakeWebPush) -> None:
    async with running(config(tmp_path, vapid_private_key=vapid_key())) as node:
        alice, bob = await new_user(node.url, "a"), await new_user(node.url, "b")
        alice_name = await name_of(node, alice)
        await api(node, alice, "POST", "/v1/devices", json={"platform": "webpush",
                                                           "subscription": webpush.subscribe().json()})
        bobs = webpush.subscribe()
        await api(node, bob, "POST", "/v1/devices", json={"platform": "webpush", "subscription": bobs.json()})
        group = await api(node, alice, "POST", "/v1/groups", json={"name": "team", "members": [bob.user_id]})
        await api(node, alice, "POST", "/v1/messages", json={"group_id": group["group_id"], "client_msg_id": "g1",
                                                             "body": {"text": "stand-up now"}})
        await wait_for(lambda: len(webpush.received) == 1)
        await quiet()
    assert [got.path for got in webpush.received] == [bobs.endpoint.removeprefix(webpush.url)]
    push = bobs.decrypt(webpush.received[0].body)
    assert (push["title"], push["body"]) == (f"{alice_name} in team", "stand-up now")


# ======================================================================================================= FCM


async def test_fcm_v1_with_a_service_account_token_reused_and_unregistered_removing_the_device(
        tmp_path: Path) -> None:
    fcm = FakeFcm(tmp_path, answer=lambda n, got: {2: 503}.get(n, 200))
    await fcm.start()
    try:
        async with running(config(tmp_path, fcm_service_account_file=str(fcm.account_file),
                                  fcm_url=fcm.url)) as node:
            alice, bob = await new_user(node.url, "a"), await new_user(node.url, "b")
            alice_name = await name_of(node, alice)
            await api(node, bob, "POST", "/v1/devices", json={"platform": "fcm", "token": "fcm-token:APA91b_x"})
            ack = await send(node, alice, bob.user_id, {"text": "one"})
            await wait_for(lambda: len(fcm.received) == 1)
            await send(node, alice, bob.user_id, {"text": "two"})  # the first attempt gets 503: retried
            await wait_for(lambda: len(fcm.received) == 3)
            fcm.answer = lambda n, got: (404, "UNREGISTERED")
            await send(node, alice, bob.user_id, {"text": "three"})
            await wait_for(lambda: len(fcm.received) == 4)
            await wait_for_devices(node, bob, 0)
    finally:
        await fcm.stop()
    assert fcm.token_requests == 1  # one access token for every push
    message = fcm.received[0].json["message"]
    assert message["token"] == "fcm-token:APA91b_x"
    assert message["notification"] == {"title": alice_name, "body": "one"}
    assert message["data"]["conversation_id"] == ack["conversation_id"] and message["data"]["seq"] == str(ack["seq"])
    assert message["android"]["collapse_key"] == ack["conversation_id"]
    assert message["apns"]["payload"]["aps"]["badge"] == 1
    retried = [got.json["message"]["data"]["push_id"] for got in fcm.received[1:3]]
    assert retried[0] == retried[1]


# ====================================================================================================== APNs


async def test_apns_over_http2_with_a_provider_token_and_bad_tokens_removed(tmp_path: Path) -> None:
    def answer(n: int, got: Got) -> Any:
        if "dead" in got.path:
            return 410, "Unregistered"
        if "bad" in got.path:
            return 400, "BadDeviceToken"
        return 429 if n == 1 else 200

    apns = FakeApns(tmp_path, answer)
    await apns.start()
    good, gone, bad = "ab" * 32, "dead" * 16, "bad0" * 16
    try:
        async with running(config(tmp_path, apns_key_file=str(apns.key_file), apns_key_id=apns.key_id,
                                  apns_team_id=apns.team_id, apns_topic=apns.topic, apns_url=apns.url,
                                  apns_ca_file=str(apns.ca_file))) as node:
            alice, bob = await new_user(node.url, "a"), await new_user(node.url, "b")
            alice_name = await name_of(node, alice)
            for token in (good, gone, bad):
                await api(node, bob, "POST", "/v1/devices", json={"platform": "apns", "token": token})
            ack = await send(node, alice, bob.user_id, {"text": "over h2"})
            await wait_for_devices(node, bob, 1)
            await wait_for(lambda: sum(good in got.path for got in apns.received) == 2)
    finally:
        await apns.stop()
    first, retried = [got for got in apns.received if good in got.path]
    assert first.path == f"/3/device/{good}" and first.headers[":method"] == "POST"
    assert first.headers["apns-id"] == retried.headers["apns-id"] == first.json["pica"]["push_id"]
    uuid.UUID(first.headers["apns-id"])
    assert first.headers["apns-collapse-id"] == ack["conversation_id"]
    assert first.headers["apns-push-type"] == "alert"
    assert first.json["aps"]["alert"] == {"title": alice_name, "body": "over h2"}
    assert first.json["aps"]["badge"] == 1


async def test_a_push_runs_when_it_comes_due_not_at_the_workers_next_poll(tmp_path: Path,
                                                                           webpush: FakeWebPush) -> None:
    slow_polling = dataclasses.replace(FAST_JOBS, poll_interval=60.0)  # only a wake-up can run the job in time
    settings = dataclasses.replace(config(tmp_path, vapid_private_key=vapid_key()), jobs=slow_polling)
    async with running(settings) as node:
        alice, bob = await new_user(node.url, "a"), await new_user(node.url, "b")
        await api(node, bob, "POST", "/v1/devices", json={"platform": "webpush",
                                                         "subscription": webpush.subscribe().json()})
        await send(node, alice, bob.user_id, {"text": "due in 0.2 s"})
        await wait_for(lambda: len(webpush.received) == 1, timeout=20)
