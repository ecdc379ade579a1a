"""Housekeeping: a file nobody sent is deleted after the grace, and its bytes with it; a sent one stays."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from pica.client import PicaHttp, PicaHttpError
from pica.config import MediaConfig
from tests.conftest import api, make_config, new_user, running


async def test_unsent_files_and_their_bytes_go_after_the_grace(tmp_path: Path) -> None:
    config = dataclasses.replace(make_config(tmp_path), media=MediaConfig(unreferenced_grace=0.5, sweep_interval=3600))
    async with running(config) as node:
        media = node.server.media
        assert media is not None
        alice, bob = await new_user(node.url, "alice"), await new_user(node.url, "bob")
        async with PicaHttp(node.url, token=alice.token) as http:
            kept = await http.upload(b"sent to bob\n", filename="kept.txt")
            dropped = await http.upload(b"never sent\n", filename="dropped.txt")
            shared = await http.upload(b"sent to bob\n", filename="same-bytes.txt")  # the kept file's content
        await api(node, alice, "POST", "/v1/messages", json={
            "to": bob.user_id, "client_msg_id": "k", "body": {"file": {"id": kept["file_id"]}}})
        files = tmp_path / "data" / "files"
        on_disk = {p.name for p in files.rglob("*") if p.is_file()}
        assert on_disk == {kept["sha256"], dropped["sha256"]}  # one copy per content
        await asyncio.sleep(0.6)
        assert await media.sweep() > 0
        assert {p.name for p in files.rglob("*") if p.is_file()} == {kept["sha256"]}
        async with PicaHttp(node.url, token=alice.token) as http:
            assert await http.download(kept["file_id"]) == b"sent to bob\n"
            for gone in (dropped, shared):
                with pytest.raises(PicaHttpError) as missing:
                    await http.download(gone["file_id"])
                assert missing.value.code == "file_not_found"
