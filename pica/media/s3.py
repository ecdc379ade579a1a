"""Blobs in an S3-compatible object store (AWS S3, MinIO, Ceph; the tests use moto's server), through aiobotocore.

``media.storage = "s3://bucket/prefix"``; ``media.s3_endpoint`` for a store that is not AWS. Credentials come from
the usual AWS configuration (environment, shared files, instance roles). A blob is the object ``<prefix>/<sha256>``;
large ones go up as a multipart upload read from the spool part by part, so memory stays at one part.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

from aiobotocore.session import get_session
from botocore.exceptions import ClientError

PART: Final = 8 * 1024 * 1024
"""Multipart part size (S3's minimum is 5 MiB, except the last part)."""


def parse_location(storage: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` → (bucket, prefix without slashes at its ends)."""
    rest = storage.removeprefix("s3://")
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise ValueError(f"media.storage: expected s3://bucket/prefix, got {storage!r}")
    return bucket, prefix.strip("/")


class S3Blobs:
    def __init__(self, storage: str, endpoint: str, region: str) -> None:
        self.bucket, self.prefix = parse_location(storage)
        self._exit = contextlib.AsyncExitStack()
        self._endpoint = endpoint or None
        self._region = region
        self._client: Any = None

    async def start(self) -> None:
        session = get_session()
        self._client = await self._exit.enter_async_context(
            session.create_client("s3", endpoint_url=self._endpoint, region_name=self._region))

    def key(self, sha256: str) -> str:
        return f"{self.prefix}/{sha256}" if self.prefix else sha256

    async def put(self, sha256: str, source: Path, size: int) -> None:
        key = self.key(sha256)
        with source.open("rb") as handle:
            if size <= PART:
                body = await asyncio.to_thread(handle.read)
                await self._client.put_object(Bucket=self.bucket, Key=key, Body=body)
                return
            upload = await self._client.create_multipart_upload(Bucket=self.bucket, Key=key)
            upload_id = upload["UploadId"]
            try:
                parts = []
                number = 1
                while chunk := await asyncio.to_thread(handle.read, PART):
                    answer = await self._client.upload_part(Bucket=self.bucket, Key=key, PartNumber=number,
                                                            UploadId=upload_id, Body=chunk)
                    parts.append({"ETag": answer["ETag"], "PartNumber": number})
                    number += 1
                await self._client.complete_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id,
                                                             MultipartUpload={"Parts": parts})
            except BaseException:
                with contextlib.suppress(ClientError):
                    await self._client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
                raise

    async def size(self, sha256: str) -> int | None:
        try:
            head = await self._client.head_object(Bucket=self.bucket, Key=self.key(sha256))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return int(head["ContentLength"])

    async def read(self, sha256: str, start: int, end: int) -> AsyncIterator[bytes]:
        if end <= start:
            return
        answer = await self._client.get_object(Bucket=self.bucket, Key=self.key(sha256),
                                               Range=f"bytes={start}-{end - 1}")
        async with answer["Body"] as stream:
            while chunk := await stream.read(256 * 1024):
                yield chunk

    async def delete(self, sha256: str) -> None:
        await self._client.delete_object(Bucket=self.bucket, Key=self.key(sha256))

    async def close(self) -> None:
        await self._exit.aclose()
