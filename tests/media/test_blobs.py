"""The blob storage contract, run against the directory and against S3 (moto's server, speaking S3's HTTP API on a
local port), and a node whose files live in S3."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiobotocore.session import get_session
from moto.server import ThreadedMotoServer

from pica.client import PicaHttp
from pica.config import MediaConfig
from pica.media.blobs import Blobs, DirectoryBlobs
from pica.media.s3 import PART, S3Blobs
from tests.conftest import api, make_config, new_user, running


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


async def new_bucket(endpoint: str) -> str:
    name = f"pica-{uuid.uuid4().hex[:12]}"
    async with get_session().create_client("s3", endpoint_url=endpoint, region_name="us-east-1") as client:
        await client.create_bucket(Bucket=name)
    return name


@pytest.fixture(params=["directory", "s3"])
async def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Blobs]:
    if request.param == "directory":
        store: Blobs = DirectoryBlobs(tmp_path / "files")
    else:
        endpoint = request.getfixturevalue("s3_endpoint")
        s3 = S3Blobs(f"s3://{await new_bucket(endpoint)}/media", endpoint, "us-east-1")
        await s3.start()
        store = s3
    try:
        yield store
    finally:
        await store.close()


def spool(tmp_path: Path, data: bytes) -> tuple[Path, str]:
    path = tmp_path / uuid.uuid4().hex
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


async def read_all(blobs: Blobs, key: str, start: int, end: int) -> bytes:
    return b"".join([chunk async for chunk in blobs.read(key, start, end)])


async def test_put_read_ranges_and_delete(blobs: Blobs, tmp_path: Path) -> None:
    data = os.urandom(300_000)
    path, key = spool(tmp_path, data)
    assert await blobs.size(key) is None
    await blobs.put(key, path, len(data))
    assert await blobs.size(key) == len(data)
    assert await read_all(blobs, key, 0, len(data)) == data
    assert await read_all(blobs, key, 1000, 1010) == data[1000:1010]
    again, _ = spool(tmp_path, data)
    await blobs.put(key, again, len(data))  # the same content again: harmless
    assert await read_all(blobs, key, 0, len(data)) == data
    await blobs.delete(key)
    assert await blobs.size(key) is None
    await blobs.delete(key)  # deleting what is gone is fine


async def test_a_blob_larger_than_one_part(blobs: Blobs, tmp_path: Path) -> None:
    data = os.urandom(PART + 123_457)  # S3: a multipart upload of two parts
    path, key = spool(tmp_path, data)
    await blobs.put(key, path, len(data))
    assert hashlib.sha256(await read_all(blobs, key, 0, len(data))).hexdigest() == key
    assert await read_all(blobs, key, PART - 5, PART + 5) == data[PART - 5:PART + 5]


async def test_a_node_with_its_files_in_s3(tmp_path: Path, s3_endpoint: str) -> None:
    bucket = await new_bucket(s3_endpoint)
    config = dataclasses.replace(make_config(tmp_path),
                                 media=MediaConfig(storage=f"s3://{bucket}/pica", s3_endpoint=s3_endpoint))
    async with running(config) as node:
        alice, bob = await new_user(node.url, "alice"), await new_user(node.url, "bob")
        data = os.urandom(50_000)
        async with PicaHttp(node.url, token=alice.token) as http:
            info = await http.upload(data, filename="notes.bin")
        await api(node, alice, "POST", "/v1/messages", json={
            "to": bob.user_id, "client_msg_id": "s3", "body": {"file": {"id": info["file_id"]}}})
        async with PicaHttp(node.url, token=bob.token) as http:
            assert await http.download(info["file_id"]) == data
    async with get_session().create_client("s3", endpoint_url=s3_endpoint, region_name="us-east-1") as client:
        listed = await client.list_objects_v2(Bucket=bucket)
    assert [o["Key"] for o in listed["Contents"]] == [f"pica/{info['sha256']}"]
