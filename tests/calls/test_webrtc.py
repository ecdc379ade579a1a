"""Two real WebRTC peers (aiortc) set up a call with nothing but Pica's signalling, through the Python SDK: once
directly, once relayed by a real coturn that the test starts, with the credentials of ``GET /v1/turn`` and
relay-only ICE.

coturn: Debian's ``coturn`` package (``apt-get install -y coturn``, which .ci/run does). Without ``turnserver`` the
relay test is skipped with a loud reason, and under CI=true a skip fails the run (tests/conftest.py). The coturn is
ready once it answers a STUN Binding request, and it dies with the process that started it, however that ends
(a failure, a timeout, kill -9 of a pytest-xdist worker).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamTrack, VideoStreamTrack
from av import VideoFrame

from pica.client import CallEvent, Login, MessageEvent, PicaClient
from pica.config import TurnConfig
from pica.protocol import frames as f
from tests.conftest import Node, make_config, new_user, running

WAIT = 30.0  # ICE, DTLS and SCTP on two shared cores: seconds, not milliseconds
TURN_SECRET = "pica-test-secret"

pytestmark = pytest.mark.timeout(120)


class Peer:
    """One person: a PicaClient for the signalling and an RTCPeerConnection for the call."""

    def __init__(self, client: PicaClient, login: Login, config: RTCConfiguration | None) -> None:
        self.client = client
        self.login = login
        self.pc = RTCPeerConnection(config)
        self.messages: asyncio.Queue[str] = asyncio.Queue()
        self.tracks: asyncio.Queue[MediaStreamTrack] = asyncio.Queue()
        self.pc.on("track", self.tracks.put_nowait)
        self.channel: asyncio.Future[RTCDataChannel] = asyncio.get_running_loop().create_future()
        self.pc.on("datachannel", self._channel_opened)

    def open_channel(self) -> None:
        """The caller's data channel, made before the offer so that the offer negotiates it."""
        channel = self.pc.createDataChannel("chat")
        channel.on("open", lambda: self._channel_opened(channel))

    def _channel_opened(self, channel: RTCDataChannel) -> None:
        channel.on("message", self.messages.put_nowait)
        if not self.channel.done():
            self.channel.set_result(channel)

    async def call_event(self, kind: type[Any]) -> Any:
        async with asyncio.timeout(WAIT):
            while True:
                event = await self.client.next_event(CallEvent)
                if isinstance(event.frame, kind):
                    return event.frame


@contextlib.asynccontextmanager
async def peers(node: Node, ice: dict[str, Any] | None = None, *, relay: bool = False) -> AsyncIterator[
        tuple[Peer, Peer]]:
    made: list[Peer] = []
    async with contextlib.AsyncExitStack() as stack:
        async with asyncio.timeout(WAIT):
            for prefix in ("alice", "bob"):
                login = await new_user(node.url, prefix)
                client = await stack.enter_async_context(PicaClient(node.url, token=login.token))
                config = None
                if ice is not None:
                    turn = await client.turn()  # each peer asks for its own credentials
                    config = RTCConfiguration(
                        iceServers=[RTCIceServer(urls=turn["urls"], username=turn["username"],
                                                 credential=turn["credential"])],
                        iceTransportPolicy=RTCIceTransportPolicy.RELAY if relay else RTCIceTransportPolicy.ALL)
                made.append(Peer(client, login, config))
        try:
            yield made[0], made[1]
        finally:
            async with asyncio.timeout(WAIT):  # the stack's exit then closes the clients, each within its own
                await asyncio.gather(*(peer.pc.close() for peer in made))


async def place_call(alice: Peer, bob: Peer, media: Literal["audio", "video"]) -> str:
    """Alice offers, Bob's device rings and answers: the whole negotiation goes through Pica. aiortc does not
    trickle: its descriptions carry their candidates, gathered before setLocalDescription returns."""
    async with asyncio.timeout(2 * WAIT):
        return await _place_call(alice, bob, media)


async def _place_call(alice: Peer, bob: Peer, media: Literal["audio", "video"]) -> str:
    await alice.pc.setLocalDescription(await alice.pc.createOffer())
    placed = await alice.client.call(bob.login.user_id, alice.pc.localDescription.sdp, media=media)

    incoming: f.CallIncoming = await bob.call_event(f.CallIncoming)
    assert (incoming.caller, incoming.media) == (alice.login.user_id, media)
    await bob.client.ringing(incoming.call_id)
    assert (await alice.call_event(f.CallRinging)).call_id == placed.call_id
    await bob.pc.setRemoteDescription(RTCSessionDescription(sdp=incoming.sdp, type="offer"))
    await bob.pc.setLocalDescription(await bob.pc.createAnswer())
    await bob.client.accept_call(incoming.call_id, bob.pc.localDescription.sdp)

    accepted: f.CallAccepted = await alice.call_event(f.CallAccepted)
    await alice.pc.setRemoteDescription(RTCSessionDescription(sdp=accepted.sdp, type="answer"))
    return placed.call_id


async def say(speaker: Peer, listener: Peer, text: str) -> None:
    """A data channel message that crossed the peer connection."""
    (await speaker.channel).send(text)
    assert await listener.messages.get() == text


async def test_two_aiortc_peers_talk_through_pica_signalling(tmp_path: Path) -> None:
    async with running(make_config(tmp_path)) as node, peers(node) as (alice, bob):
        alice.open_channel()
        alice.pc.addTrack(VideoStreamTrack())  # aiortc's synthetic camera

        call_id = await place_call(alice, bob, "video")

        async with asyncio.timeout(WAIT):
            await say(alice, bob, "hello over WebRTC")
            await say(bob, alice, "hello back")
            # Media too: Bob decodes a frame of Alice's camera.
            track = await bob.tracks.get()
            frame = await track.recv()
            assert isinstance(frame, VideoFrame) and frame.width > 0

        await alice.client.hang_up(call_id)
        assert (await bob.call_event(f.CallEnded)).reason == "hung_up"
        record = await next_record(bob.client)
        assert (record["call_id"], record["outcome"], record["media"]) == (call_id, "answered", "video")
        assert record["duration_ms"] > 0


async def next_record(client: PicaClient) -> dict[str, Any]:
    event = await client.next_event(MessageEvent, WAIT)
    record: dict[str, Any] = event.message.body["call"]
    return record


# ---------------------------------------------------------------------------------------------------------- coturn


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the process that started it dies, even by SIGKILL or os._exit (a
    test timeout's last resort, tests/timeouts.py), where no teardown runs. Linux's prctl(PR_SET_PDEATHSIG)."""
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def _answers_stun(port: int, seconds: float) -> bool:
    """Whether a STUN server on 127.0.0.1:port answers a Binding request within ``seconds`` (RFC 8489: type 0x0001,
    no attributes, the magic cookie, a random transaction id; the answer echoes the id)."""
    transaction = random.randbytes(12)
    request = b"\x00\x01\x00\x00\x21\x12\xa4\x42" + transaction
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(seconds)
        s.sendto(request, ("127.0.0.1", port))
        try:
            while True:
                answer = s.recv(2048)
                if answer[8:20] == transaction:
                    return True
        except (TimeoutError, ConnectionRefusedError):  # nothing there yet (ICMP port unreachable)
            return False


@pytest.fixture
def coturn(tmp_path: Path) -> Iterator[str]:
    """A coturn on 127.0.0.1 in the shared-secret mode Pica's credentials are made for; yields its turn: URL."""
    binary = shutil.which("turnserver") or ("/usr/bin/turnserver" if os.path.exists("/usr/bin/turnserver") else None)
    if binary is None:
        pytest.skip("CALL RELAY TEST NEEDS coturn's turnserver (apt-get install -y coturn), which is not installed")
    port = _free_udp_port()
    low = random.randrange(50_000, 64_000, 100)
    log = tmp_path / "turnserver.log"
    proc = subprocess.Popen(
        [binary, "-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", f"--listening-port={port}",
         f"--min-port={low}", f"--max-port={low + 99}", "--use-auth-secret", f"--static-auth-secret={TURN_SECRET}",
         "--realm=pica.test", "--no-tls", "--no-dtls", "--no-tcp", "--allow-loopback-peers", "--no-cli",
         "--fingerprint", f"--pidfile={tmp_path / 'turnserver.pid'}", f"--log-file={log}", "--simple-log"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        preexec_fn=_die_with_parent if sys.platform == "linux" else None)
    try:
        # Ready once it answers STUN: its log names the listener before the socket is open.
        deadline = time.monotonic() + WAIT
        while not _answers_stun(port, 0.2):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"turnserver on UDP {port} exited ({proc.poll()}) or did not answer STUN within {WAIT} s: "
                            f"{log.read_text(errors='replace')[-2000:] if log.exists() else 'no log'}")
        yield f"turn:127.0.0.1:{port}?transport=udp"
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def test_a_call_relayed_by_coturn_with_pica_credentials(tmp_path: Path, coturn: str) -> None:
    turn = TurnConfig(urls=(coturn,), secret=TURN_SECRET, ttl=600)
    config = dataclasses.replace(make_config(tmp_path), turn=turn)
    async with running(config) as node, peers(node, ice={}, relay=True) as (alice, bob):
        alice.open_channel()
        call_id = await place_call(alice, bob, "audio")
        # Relay-only: every candidate either side offered is a relayed address of the coturn.
        for peer in (alice, bob):
            lines = [line for line in peer.pc.localDescription.sdp.splitlines() if line.startswith("a=candidate")]
            assert lines and all(" typ relay" in line for line in lines), lines

        async with asyncio.timeout(WAIT):
            await say(alice, bob, "relayed hello")

        await bob.client.hang_up(call_id)
        assert (await alice.call_event(f.CallEnded)).reason == "hung_up"
