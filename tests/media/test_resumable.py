"""Resumable uploads (tus 1.0.0): a phone on a bad network finishes its upload, and a kill -9 loses no acked byte."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import sqlite3
from pathlib import Path

import aiohttp
import pytest

from pica.client import Login, PicaHttp
from tests.conftest import PASSWORD, Node, ServerProcess, new_user, start_server_process

TUS = {"Tus-Resumable": "1.0.0"}


def headers(who: Login, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {who.token}", **TUS, **extra}


async def create(url: str, who: Login, length: int) -> str:
    async with aiohttp.ClientSession() as session, session.post(
            url + "/v1/uploads", headers=headers(who, **{"Upload-Length": str(length),
                                                        "Upload-Metadata": "filename dmlkZW8ubXA0"})) as resp:
        assert resp.status == 201, await resp.text()
        assert resp.headers["Tus-Resumable"] == "1.0.0"
        return resp.headers["Location"]


async def offset_of(url: str, who: Login, location: str) -> int:
    async with aiohttp.ClientSession() as session, session.head(url + location, headers=headers(who)) as resp:
        assert resp.status == 200
        return int(resp.headers["Upload-Offset"])


def patching(who: Login, offset: int) -> dict[str, str]:
    return headers(who, **{"Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"})


async def patch(url: str, who: Login, location: str, offset: int, data: object) -> aiohttp.ClientResponse:
    async with aiohttp.ClientSession() as session, session.patch(url + location, data=data,
                                                                 headers=patching(who, offset)) as resp:
        await resp.read()
        return resp


async def test_an_interrupted_upload_resumes_where_the_server_is(node: Node) -> None:
    alice = await new_user(node.url, "alice")
    data = os.urandom(3 * 1024 * 1024 + 17)
    location = await create(node.url, alice, len(data))
    assert (await patch(node.url, alice, location, 0, data[:1_000_000])).status == 204
    assert await offset_of(node.url, alice, location) == 1_000_000
    conflict = await patch(node.url, alice, location, 0, data[:10])  # a client that lost count is told to resume
    assert conflict.status == 409

    async def breaks_off():  # the network drops in the middle of the second part
        yield data[1_000_000:1_500_000]
        raise ConnectionResetError("the train went into a tunnel")

    with pytest.raises(aiohttp.ClientError):
        await patch(node.url, alice, location, 1_000_000, breaks_off())
    # What a client does: ask where the server is and send the rest from there (409 while the server is still
    # finishing the broken request).
    for _ in range(100):
        resumed = await offset_of(node.url, alice, location)
        assert 1_000_000 <= resumed <= 1_500_000
        async with aiohttp.ClientSession() as session, session.patch(
                node.url + location, data=data[resumed:],
                headers=patching(alice, resumed)) as resp:
            if resp.status == 200:
                info = await resp.json()
                break
            assert resp.status == 409
        await asyncio.sleep(0.1)
    assert info["sha256"] == hashlib.sha256(data).hexdigest() and info["name"] == "video.mp4"
    async with PicaHttp(node.url, token=alice.token) as http:
        assert await http.download(info["file_id"]) == data
    async with aiohttp.ClientSession() as session, session.head(node.url + location, headers=headers(alice)) as resp:
        assert resp.status == 404  # finished: the upload is gone, the file stays


async def test_the_sdk_resumes_by_itself(node: Node, tmp_path: Path) -> None:
    alice = await new_user(node.url, "alice")
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(2_500_000))
    seen: list[tuple[int, int]] = []
    async with PicaHttp(node.url, token=alice.token) as http:
        info = await http.upload_resumable(source, part_bytes=1_000_000, progress=lambda a, b: seen.append((a, b)))
        assert await http.download(info["file_id"]) == source.read_bytes()
    assert seen[-1] == (2_500_000, 2_500_000)


async def test_tus_discovery_and_refusals(node: Node) -> None:
    alice, bob = await new_user(node.url, "alice"), await new_user(node.url, "bob")
    async with aiohttp.ClientSession() as session:
        async with session.options(node.url + "/v1/uploads") as resp:
            assert resp.status == 204 and resp.headers["Tus-Extension"] == "creation,termination"
        async with session.post(node.url + "/v1/uploads", headers={"Authorization": f"Bearer {alice.token}",
                                                                   "Upload-Length": "10"}) as resp:
            assert resp.status == 412  # no Tus-Resumable
    location = await create(node.url, alice, 10)
    async with aiohttp.ClientSession() as session:
        async with session.head(node.url + location, headers=headers(bob)) as resp:
            assert resp.status == 404  # another user's upload does not exist for bob
        async with session.patch(node.url + location, data=b"x" * 10,
                                 headers=headers(alice, **{"Upload-Offset": "0"})) as resp:
            assert resp.status == 415  # not application/offset+octet-stream
        async with session.delete(node.url + location, headers=headers(alice)) as resp:
            assert resp.status == 204
        async with session.head(node.url + location, headers=headers(alice)) as resp:
            assert resp.status == 404


@pytest.mark.slow
async def test_kill_9_during_uploads_leaves_no_half_file_and_keeps_the_synced_part(
        tmp_path: Path, server_process_factory: list[ServerProcess]) -> None:
    data_dir = tmp_path / "data"
    server = start_server_process(data_dir)
    server_process_factory.append(server)
    url = f"http://127.0.0.1:{server.http_port}"
    async with PicaHttp(url) as http:
        await http.register("alice", PASSWORD)
        alice = await http.login("alice", PASSWORD)
    location = await create(url, alice, 2_000_000)
    assert (await patch(url, alice, location, 0, b"a" * 1_200_000)).status == 204
    arrived = asyncio.Event()

    async def slow_upload():
        yield b"b" * 500_000
        arrived.set()
        await asyncio.sleep(60)  # the process dies meanwhile
        yield b"never"

    async def plain_upload() -> None:
        async with aiohttp.ClientSession() as session, session.post(
                url + "/v1/files", data=slow_upload(), headers={"Authorization": f"Bearer {alice.token}"}):
            pass

    task = asyncio.get_running_loop().create_task(plain_upload())
    await asyncio.wait_for(arrived.wait(), 10)
    await asyncio.sleep(0.3)
    os.kill(server.proc.pid, signal.SIGKILL)
    server.proc.wait(10)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    with sqlite3.connect(data_dir / "pica.db") as db:
        assert db.execute("SELECT count(*) FROM files").fetchone() == (0,)  # the half upload has no id to send

    restarted = start_server_process(data_dir)
    server_process_factory.append(restarted)
    url = f"http://127.0.0.1:{restarted.http_port}"
    assert list((data_dir / "media-spool").iterdir()) == []  # the half was deleted at start
    assert await offset_of(url, alice, location) == 1_200_000  # the synced part of the resumable one is there
    async with aiohttp.ClientSession() as session, session.patch(
            url + location, data=b"c" * 800_000,
            headers=patching(alice, 1_200_000)) as resp:
        info = await resp.json()
    assert info["sha256"] == hashlib.sha256(b"a" * 1_200_000 + b"c" * 800_000).hexdigest()
