"""The push API a client sees (protocol §23.7): registering push targets for its session, with their checks and the
cap per user; a session's end taking its devices along; notification settings per conversation; privacy mode."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pica.client import PicaHttp
from pica.config import PushConfig
from pica.errors import StartupError
from tests.conftest import PASSWORD, api, api_error, make_config, new_user, running
from tests.push.services import FakeApns, Subscription, vapid_key

APNS_TOKEN = "0123456789abcdef" * 4


def subscription() -> dict[str, object]:
    return Subscription("https://push.example.net/send/abc").json()


async def test_a_device_is_registered_checked_capped_listed_and_removed(tmp_path: Path) -> None:
    push = PushConfig(vapid_private_key=vapid_key(), fcm_service_account_file="", max_devices_per_user=2,
                      max_token_bytes=200)
    async with running(dataclasses.replace(make_config(tmp_path), push=push)) as node:
        alice = await new_user(node.url, "a")
        assert await api_error(node, alice, "POST", "/v1/devices", json={"platform": "fcm", "token": "x"}) == (
            400, "bad_request")  # FCM is not configured on this server
        for bad in ({"platform": "carrier-pigeon", "token": "x"},
                    {"platform": "webpush"},
                    {"platform": "webpush", "subscription": {**subscription(), "endpoint": "ftp://x"}},
                    {"platform": "webpush", "subscription": {**subscription(), "endpoint": "https://x/" + "a" * 200}},
                    {"platform": "webpush", "subscription": {"endpoint": "https://x/y",
                                                             "keys": {"p256dh": "AAAA", "auth": "AAAA"}}},
                    {"platform": "webpush", "token": "x", "surprise": 1}):
            assert await api_error(node, alice, "POST", "/v1/devices", json=bad) == (400, "bad_request"), bad

        first = await api(node, alice, "POST", "/v1/devices", json={"platform": "webpush",
                                                                     "subscription": subscription()})
        again = await api(node, alice, "POST", "/v1/devices", json={"platform": "webpush",
                                                                     "subscription": subscription()})
        other = Subscription("https://push.example.net/send/def").json()
        await api(node, alice, "POST", "/v1/devices", json={"platform": "webpush", "subscription": other})
        listed = (await api(node, alice, "GET", "/v1/devices"))["devices"]
        assert first["device_id"] not in [d["device_id"] for d in listed]  # the same subscription: replaced
        assert listed[0]["device_id"] == again["device_id"] and len(listed) == 2
        third = Subscription("https://push.example.net/send/ghi").json()
        assert await api_error(node, alice, "POST", "/v1/devices", json={"platform": "webpush",
                                                                        "subscription": third}) == (
            409, "too_many_devices")

        await api(node, alice, "DELETE", f"/v1/devices/{again['device_id']}")
        assert await api_error(node, alice, "DELETE", f"/v1/devices/{again['device_id']}") == (404, "not_found")
        assert len((await api(node, alice, "GET", "/v1/devices"))["devices"]) == 1


async def test_logging_out_removes_the_sessions_devices_only(tmp_path: Path) -> None:
    apns = FakeApns(tmp_path)  # for its key file only: nothing is pushed here
    push = PushConfig(apns_key_file=str(apns.key_file), apns_key_id="K", apns_team_id="T", apns_topic="app")
    async with running(dataclasses.replace(make_config(tmp_path), push=push)) as node:
        phone = await new_user(node.url, "a")
        async with PicaHttp(node.url) as http:
            username = (await api(node, phone, "GET", "/v1/me"))["username"]
            laptop = await http.login(username, PASSWORD)
        await api(node, phone, "POST", "/v1/devices", json={"platform": "apns", "token": APNS_TOKEN})
        await api(node, laptop, "POST", "/v1/devices", json={"platform": "apns", "token": "ab" * 32})
        assert await api_error(node, laptop, "POST", "/v1/devices", json={"platform": "apns", "token": "xyz"}) == (
            400, "bad_request")  # not hexadecimal
        seen = (await api(node, laptop, "GET", "/v1/devices"))["devices"]
        assert [d["current"] for d in seen] == [False, True]

        async with PicaHttp(node.url, token=phone.token) as http:
            await http.request("POST", "/v1/auth/logout", json={"refresh_token": phone.refresh_token})
        left = (await api(node, laptop, "GET", "/v1/devices"))["devices"]
        assert [(d["platform"], d["current"]) for d in left] == [("apns", True)]


async def test_notification_settings_are_per_conversation_and_privacy_per_user(tmp_path: Path) -> None:
    async with running(make_config(tmp_path)) as node:  # push off: settings can still be made
        alice, bob, eve = [await new_user(node.url, n) for n in "abe"]
        ack = await api(node, alice, "POST", "/v1/messages",
                        json={"to": bob.user_id, "client_msg_id": "m1", "body": {"text": "hi"}})
        path = f"/v1/conversations/{ack['conversation_id']}/notifications"
        assert await api(node, bob, "GET", path) == {"conversation_id": ack["conversation_id"], "level": "all",
                                                     "mute_until": None}
        assert (await api(node, bob, "PUT", path, json={"level": "none"}))["level"] == "none"
        assert (await api(node, bob, "GET", path))["level"] == "none"
        assert (await api(node, alice, "GET", path))["level"] == "all"  # bob's setting is bob's
        assert await api_error(node, bob, "PUT", path, json={"level": "loud"}) == (400, "bad_request")
        assert await api_error(node, bob, "PUT", path, json={"level": "all", "mute_until": -1}) == (
            400, "bad_request")
        assert await api_error(node, bob, "PUT", path, json={}) == (400, "bad_request")  # the level is required
        assert await api_error(node, eve, "PUT", path, json={"level": "none"}) == (404, "conversation_not_found")
        assert await api_error(node, eve, "GET", path) == (404, "conversation_not_found")

        assert await api(node, bob, "GET", "/v1/me/push") == {"privacy": False}
        await api(node, bob, "PUT", "/v1/me/push", json={"privacy": True})
        assert await api(node, bob, "GET", "/v1/me/push") == {"privacy": True}
        assert await api_error(node, bob, "PUT", "/v1/me/push", json={"privacy": "yes"}) == (400, "bad_request")
        async with PicaHttp(node.url) as http:
            assert await http.request("GET", "/v1/push/config") == {"platforms": [], "vapid_public_key": None}
        assert await api_error(node, bob, "POST", "/v1/devices", json={"platform": "apns", "token": "ab"}) == (
            400, "bad_request")


async def test_a_key_file_that_is_no_key_refuses_the_start(tmp_path: Path) -> None:
    (tmp_path / "AuthKey.p8").write_text("not a key")
    push = PushConfig(apns_key_file=str(tmp_path / "AuthKey.p8"), apns_key_id="K", apns_team_id="T", apns_topic="a")
    with pytest.raises(StartupError, match="push: cannot load the credentials"):
        async with running(dataclasses.replace(make_config(tmp_path), push=push)):
            pass
