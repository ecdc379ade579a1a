"""kill -9 of a node after its messages were acked and before their push jobs ran: after a restart each message is
pushed, and the receiving app, de-duplicating by the push id as docs/push.md tells it to, shows each exactly once.
A second kill lands while pushes are in flight (the push service holds its answers): they are sent again after the
restart with the same ids, and the app still shows each once."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from pica.client import PicaConnection, PicaHttp
from tests.conftest import ServerProcess, new_user, start_server_process
from tests.push.services import FakeWebPush, Got, Subscription, vapid_key, wait_for

MESSAGES = 5


def write_config(path: Path, delay: float) -> Path:
    path.write_text(
        "[jobs]\npoll_interval = 0.2\nlease = 3.0\nwebhook_timeout = 1.0\nbackoff_base = 0.1\nbackoff_max = 0.5\n\n"
        f'[push]\ndelay = {delay}\ntimeout = 1.0\nvapid_private_key = "{vapid_key()}"\nwebpush_allow_private = true\n')
    return path


def shown(subscription: Subscription, received: list[Got]) -> dict[str, str]:
    """What the app shows: one notification per push id (the service worker drops a repeat)."""
    by_id: dict[str, str] = {}
    for got in received:
        push = subscription.decrypt(got.body)
        by_id.setdefault(push["push_id"], push["body"])
    return by_id


@dataclass
class Story:
    config: Path
    data: Path
    server: ServerProcess
    subscription: Subscription
    sender: PicaConnection
    recipient: int

    def restart(self, factory: list[ServerProcess]) -> None:
        factory.append(start_server_process(self.data, extra=["--config", str(self.config)]))


async def bob_offline_with_a_device(tmp_path: Path, service: FakeWebPush, delay: float,
                                    factory: list[ServerProcess]) -> Story:
    """A node, alice connected over TCP, bob signed in elsewhere with one Web Push subscription and no socket."""
    config = write_config(tmp_path / "pica.toml", delay)
    data = tmp_path / "data"
    server = start_server_process(data, extra=["--config", str(config)])
    factory.append(server)
    alice, bob = await new_user(server.url, "a"), await new_user(server.url, "b")
    subscription = service.subscribe()
    async with PicaHttp(server.url, token=bob.token) as http:
        await http.request("POST", "/v1/devices", json={"platform": "webpush", "subscription": subscription.json()})
    conn = await PicaConnection.open(server.url, alice.token, transport="tcp", tcp_port=server.tcp_port)
    return Story(config, data, server, subscription, conn, bob.user_id)


async def send_all(story: Story) -> None:
    await asyncio.gather(*(story.sender.send(story.recipient, {"text": f"n{i}"}, client_msg_id=f"m{i}")
                           for i in range(MESSAGES)))


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_kill_9_after_the_ack_and_before_the_push_job_ran_pushes_each_message_once(
        tmp_path: Path, server_process_factory: list[ServerProcess]) -> None:
    service = FakeWebPush()
    await service.start()
    try:
        story = await bob_offline_with_a_device(tmp_path, service, 2.0, server_process_factory)
        subscription = story.subscription
        started = time.monotonic()
        await send_all(story)
        story.server.kill9()
        assert time.monotonic() - started < 2.0, "the jobs may have run before the kill: the story is void"
        await story.sender.close()
        assert service.received == []

        story.restart(server_process_factory)
        await wait_for(lambda: len(shown(subscription, service.received)) == MESSAGES, timeout=30)
        await asyncio.sleep(1.0)  # nothing more arrives
    finally:
        await service.stop()
    assert sorted(shown(subscription, service.received).values()) == [f"n{i}" for i in range(MESSAGES)]
    assert len(service.received) == MESSAGES  # none was in flight at the kill: none was sent twice


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_kill_9_with_pushes_in_flight_sends_them_again_with_the_same_ids(
        tmp_path: Path, server_process_factory: list[ServerProcess]) -> None:
    released = asyncio.Event()

    async def hold(n: int, got: Got) -> int:
        await released.wait()  # the node dies while these wait: none of them is answered
        return 201

    service = FakeWebPush(answer=hold)
    await service.start()
    try:
        story = await bob_offline_with_a_device(tmp_path, service, 0.2, server_process_factory)
        subscription = story.subscription
        await send_all(story)
        await wait_for(lambda: len(service.received) >= 1)  # a push is in flight
        story.server.kill9()
        await story.sender.close()
        in_flight = len(service.received)
        released.set()

        story.restart(server_process_factory)
        # Every message shown, and those in flight at the kill sent again (after their leases ran out): on a fast
        # machine all of them were in flight, so the first condition alone holds before any re-send.
        await wait_for(lambda: len(shown(subscription, service.received)) == MESSAGES
                       and len(service.received) >= MESSAGES + in_flight, timeout=30)
        await asyncio.sleep(1.0)  # and nothing more comes
    finally:
        released.set()
        await service.stop()
    assert sorted(shown(subscription, service.received).values()) == [f"n{i}" for i in range(MESSAGES)]
    # Those in flight at the kill were never answered: sent again after the restart, under the same push ids.
    assert in_flight >= 1 and len(service.received) == MESSAGES + in_flight
