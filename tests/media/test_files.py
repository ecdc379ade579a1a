"""Files, as people use them: upload, send, download, over real sockets against a real node and its SQLite file."""

from __future__ import annotations

import dataclasses
import hashlib
import io
from pathlib import Path

import aiohttp
import pytest
from multidict import CIMultiDict
from PIL import Image

from pica.client import Login, PicaHttp, PicaHttpError
from pica.config import MediaConfig
from tests.conftest import Node, api, api_error, make_config, new_user, running


def png(width: int = 640, height: int = 480, color: tuple[int, int, int] = (30, 120, 200)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, "PNG")
    return out.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def upload(node: Node, who: Login, data: bytes, filename: str | None = "cat.png") -> dict:
    async with PicaHttp(node.url, token=who.token) as http:
        return await http.upload(data, filename=filename)


async def download(node: Node, who: Login, file_id: str, **kwargs: object) -> bytes:
    async with PicaHttp(node.url, token=who.token) as http:
        return await http.download(file_id, **kwargs)  # type: ignore[arg-type]


async def get(node: Node, who: Login, path: str, **headers: str) -> tuple[int, CIMultiDict[str], bytes]:
    sent = {name.replace("_", "-"): value for name, value in headers.items()}
    async with aiohttp.ClientSession() as session, session.get(
            node.url + path, headers={"Authorization": f"Bearer {who.token}", **sent}) as resp:
        return resp.status, resp.headers.copy(), await resp.read()


async def test_an_image_sent_to_bob_is_what_bob_downloads(node: Node) -> None:
    alice, bob = await new_user(node.url, "alice"), await new_user(node.url, "bob")
    data = png()
    info = await upload(node, alice, data)
    assert (info["size"], info["content_type"], info["sha256"], info["name"]) == (len(data), "image/png", sha(data),
                                                                                  "cat.png")
    assert (info["width"], info["height"]) == (640, 480)
    # The client names the file; everything else in the stored body is what the server found.
    ack = await api(node, alice, "POST", "/v1/messages", json={
        "to": bob.user_id, "client_msg_id": "pic-1",
        "body": {"image": {"id": info["file_id"], "size": 1, "mime": "text/html"}, "text": "my cat"}})
    page = await api(node, bob, "GET", f"/v1/conversations/{ack['conversation_id']}/messages")
    image = page["messages"][-1]["body"]["image"]
    assert image["id"] == info["file_id"]
    assert (image["mime"], image["size"], image["name"], image["width"], image["height"]) == (
        "image/png", len(data), "cat.png", 640, 480)
    assert image["thumbnails"] == [96, 320, 800]
    assert sha(await download(node, bob, info["file_id"])) == sha(data)
    thumb = await download(node, bob, info["file_id"], thumbnail=320)
    assert Image.open(io.BytesIO(thumb)).size == (320, 240)


async def test_outsiders_get_404_whether_or_not_the_file_exists(node: Node) -> None:
    alice, bob, mallory = [await new_user(node.url, p) for p in ("alice", "bob", "mallory")]
    info = await upload(node, alice, b"secret plans\n", "plans.txt")
    await api(node, alice, "POST", "/v1/messages", json={
        "to": bob.user_id, "client_msg_id": "f1", "body": {"file": {"id": info["file_id"]}}})
    for file_id in (info["file_id"], "no-such-file"):
        status, _, body = await get(node, mallory, f"/v1/files/{file_id}")
        assert status == 404 and b'"file_not_found"' in body
    # nor can mallory send it on: a send names only files its sender may read
    assert await api_error(node, mallory, "POST", "/v1/messages", json={
        "to": bob.user_id, "client_msg_id": "steal", "body": {"file": {"id": info["file_id"]}}}) == (
        404, "file_not_found")
    # bob may forward it: no bytes are copied, and carol can then read it
    carol = await new_user(node.url, "carol")
    await api(node, bob, "POST", "/v1/messages", json={
        "to": carol.user_id, "client_msg_id": "fwd", "body": {"file": {"id": info["file_id"]}}})
    assert await download(node, carol, info["file_id"]) == b"secret plans\n"


async def test_a_recall_and_a_removal_take_access_away(node: Node) -> None:
    alice, bob, carol = [await new_user(node.url, p) for p in ("alice", "bob", "carol")]
    one = await upload(node, alice, b"for bob only\n", "a.txt")
    ack = await api(node, alice, "POST", "/v1/messages", json={
        "to": bob.user_id, "client_msg_id": "a", "body": {"file": {"id": one["file_id"]}}})
    assert await download(node, bob, one["file_id"]) == b"for bob only\n"
    await api(node, alice, "POST", f"/v1/conversations/{ack['conversation_id']}/messages/{ack['seq']}/recall",
              json={"client_msg_id": "recall-a"})
    assert (await get(node, bob, f"/v1/files/{one['file_id']}"))[0] == 404
    assert await download(node, alice, one["file_id"]) == b"for bob only\n"  # the uploader keeps it

    group = await api(node, alice, "POST", "/v1/groups", json={"name": "team", "members": [bob.user_id,
                                                                                          carol.user_id]})
    two = await upload(node, alice, png(), "team.png")
    await api(node, alice, "POST", "/v1/messages", json={
        "group_id": group["group_id"], "client_msg_id": "g", "body": {"image": {"id": two["file_id"]}}})
    assert (await get(node, carol, f"/v1/files/{two['file_id']}"))[0] == 200
    await api(node, alice, "DELETE", f"/v1/groups/{group['group_id']}/members/{carol.user_id}")
    assert (await get(node, carol, f"/v1/files/{two['file_id']}"))[0] == 404
    assert (await get(node, bob, f"/v1/files/{two['file_id']}"))[0] == 200


async def test_ranges(node: Node) -> None:
    alice = await new_user(node.url, "alice")
    data = bytes(range(256)) * 40
    info = await upload(node, alice, data, "bytes.bin")
    path = f"/v1/files/{info['file_id']}"
    status, headers, body = await get(node, alice, path, Range="bytes=100-199")
    assert (status, body, headers["Content-Range"]) == (206, data[100:200], f"bytes 100-199/{len(data)}")
    status, _, body = await get(node, alice, path, Range="bytes=-10")
    assert (status, body) == (206, data[-10:])
    status, _, body = await get(node, alice, path, Range="bytes=10000-")
    assert (status, body) == (206, data[10000:])
    status, headers, _ = await get(node, alice, path, Range=f"bytes={len(data)}-")
    assert (status, headers["Content-Range"]) == (416, f"bytes */{len(data)}")
    status, headers, body = await get(node, alice, path)
    assert (status, body, headers["Accept-Ranges"]) == (200, data, "bytes")
    assert headers["Cache-Control"].startswith("private") and headers["X-Content-Type-Options"] == "nosniff"
    assert (await get(node, alice, path, If_None_Match=headers["ETag"]))[0] == 304


async def test_a_forged_type_is_not_believed_and_a_page_never_runs(node: Node) -> None:
    alice = await new_user(node.url, "alice")
    page = b"<html><body><script>alert(document.cookie)</script></body></html>\n"
    async with aiohttp.ClientSession() as session, session.post(
            node.url + "/v1/files", data=page, params={"filename": "cat.png"},
            headers={"Authorization": f"Bearer {alice.token}", "Content-Type": "image/png"}) as resp:
        info = await resp.json()
    assert info["content_type"] == "text/html"
    status, headers, body = await get(node, alice, f"/v1/files/{info['file_id']}")
    assert status == 200 and body == page
    assert headers["Content-Type"] == "application/octet-stream"
    assert headers["Content-Disposition"].startswith("attachment")
    assert "sandbox" in headers["Content-Security-Policy"]


async def test_location_metadata_is_stripped_and_orientation_kept(node: Node) -> None:
    alice = await new_user(node.url, "alice")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: the pixels must still be shown the right way up
    exif[0x010F] = "PhoneMaker"
    exif.get_ifd(0x8825)[2] = (48.0, 51.0, 29.0)  # GPS latitude
    out = io.BytesIO()
    Image.new("RGB", (400, 300), (10, 200, 10)).save(out, "JPEG", exif=exif.tobytes())
    info = await upload(node, alice, out.getvalue(), "photo.jpg")
    stored = await download(node, alice, info["file_id"])
    kept = Image.open(io.BytesIO(stored)).getexif()
    assert dict(kept) == {0x0112: 6}
    assert info["sha256"] == sha(stored) and info["size"] == len(stored) < len(out.getvalue())
    thumb = Image.open(io.BytesIO(await download(node, alice, info["file_id"], thumbnail=96)))
    assert thumb.size == (72, 96)  # turned upright


async def test_a_decompression_bomb_is_stored_but_never_decoded(tmp_path: Path) -> None:
    config = dataclasses.replace(make_config(tmp_path), media=MediaConfig(max_image_pixels=1_000_000))
    async with running(config) as node:
        alice = await new_user(node.url, "alice")
        bomb = png(2000, 2000, (0, 0, 0))  # 4 MP of one colour: a few KiB that would decode to 12 MB
        info = await upload(node, alice, bomb, "bomb.png")
        assert (info["width"], info["height"]) == (2000, 2000)
        bob = await new_user(node.url, "bob")
        ack = await api(node, alice, "POST", "/v1/messages", json={
            "to": bob.user_id, "client_msg_id": "b", "body": {"image": {"id": info["file_id"]}}})
        page = await api(node, bob, "GET", f"/v1/conversations/{ack['conversation_id']}/messages")
        assert "thumbnails" not in page["messages"][-1]["body"]["image"]
        status, _, body = await get(node, bob, f"/v1/files/{info['file_id']}?thumbnail=96")
        assert status == 404 and b"file_not_found" in body


async def test_a_corrupt_image_is_stored_without_thumbnails(node: Node) -> None:
    alice = await new_user(node.url, "alice")
    broken = png(300, 200)[:200]  # the header is whole, the pixels are cut off
    info = await upload(node, alice, broken, "broken.png")
    assert (info["content_type"], info["width"], info["height"]) == ("image/png", 300, 200)
    bob = await new_user(node.url, "bob")
    ack = await api(node, alice, "POST", "/v1/messages", json={
        "to": bob.user_id, "client_msg_id": "x", "body": {"image": {"id": info["file_id"]}}})
    page = await api(node, bob, "GET", f"/v1/conversations/{ack['conversation_id']}/messages")
    image = page["messages"][-1]["body"]["image"]
    assert "thumbnails" not in image and "placeholder" not in image
    assert await download(node, bob, info["file_id"]) == broken


async def test_size_limit_and_quota(tmp_path: Path) -> None:
    config = dataclasses.replace(make_config(tmp_path), media=MediaConfig(max_file_bytes=10_000, quota_bytes=25_000))
    async with running(config) as node:
        alice = await new_user(node.url, "alice")
        with pytest.raises(PicaHttpError) as refused:  # Content-Length says it: refused before a byte is read
            await upload(node, alice, b"x" * 10_001)
        assert (refused.value.status, refused.value.code) == (413, "payload_too_large")

        async def chunked():
            for _ in range(20):
                yield b"y" * 1000

        async with aiohttp.ClientSession() as session, session.post(  # no length: counted as it arrives
                node.url + "/v1/files", data=chunked(), headers={"Authorization": f"Bearer {alice.token}"}) as resp:
            assert resp.status == 413 and (await resp.json())["code"] == "payload_too_large"
        await upload(node, alice, b"a" * 10_000)
        await upload(node, alice, b"b" * 10_000)
        with pytest.raises(PicaHttpError) as full:
            await upload(node, alice, b"c" * 10_000)
        assert (full.value.status, full.value.code) == (413, "quota_exceeded")


async def test_a_voice_note_keeps_its_duration_and_waveform(node: Node) -> None:
    alice, bob = await new_user(node.url, "alice"), await new_user(node.url, "bob")
    info = await upload(node, alice, b"OggS" + bytes(200), "note.ogg")
    ack = await api(node, alice, "POST", "/v1/messages", json={
        "to": bob.user_id, "client_msg_id": "v",
        "body": {"voice": {"id": info["file_id"], "duration_ms": 4200, "waveform": [0, 40, 255, 12]}}})
    page = await api(node, bob, "GET", f"/v1/conversations/{ack['conversation_id']}/messages")
    voice = page["messages"][-1]["body"]["voice"]
    assert (voice["duration_ms"], voice["waveform"], voice["size"]) == (4200, [0, 40, 255, 12], 204)
    assert await api_error(node, alice, "POST", "/v1/messages", json={
        "to": bob.user_id, "client_msg_id": "v2", "body": {"voice": {"id": info["file_id"], "duration_ms": 0}}}) == (
        400, "bad_request")
