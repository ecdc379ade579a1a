"""Uploads, downloads, thumbnails and housekeeping of files (docs/protocol.md, "Files").

**An upload** streams to a spool file under the data dir while it is hashed, never held whole in memory, and is
refused past ``media.max_file_bytes`` (from ``Content-Length`` before a byte is read, and again as bytes arrive).
Then: the type is sniffed from the bytes, a JPEG's or PNG's metadata is stripped (the location a phone wrote), the
spool is fsynced, the blob is reserved in the store (so the sweep leaves it alone), put, and the file's row written.
The 201 comes after all of that: a file id a client holds always has its bytes. A process killed half-way leaves a
spool file (deleted at the next start) and no row, so nothing can reference the half.

**A resumable upload** (the tus protocol, core and creation) keeps its bytes in ``<data_dir>/uploads/<id>`` and the
count of durable bytes in the store; each PATCH appends after that count (a crash's torn tail is cut off), fsyncs,
and records the new count. When the last byte arrives it becomes a file like any upload.

**Thumbnails** of an image are made after the upload answered, in a worker thread; a request for one that is not
made yet makes it then (once: a lock per content).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import secrets
import shutil
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Final, Protocol

from pica.config import MediaConfig
from pica.errors import BadRequest, Conflict, FileNotFound, PayloadTooLarge, QuotaExceeded
from pica.media import images
from pica.media.blobs import Blobs, DirectoryBlobs
from pica.media.sniff import HEAD_BYTES, sniff
from pica.store.base import FileRecord, Store, UploadRecord

log = logging.getLogger(__name__)

WRITE_BATCH: Final = 1 << 20
"""Bytes gathered from the socket before one write (and hash update) in a worker thread."""
MAX_NAME: Final = 255


class WallClock(Protocol):
    def now_ms(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Spooled:
    path: Path
    size: int
    sha256: str


def clean_name(name: str | None) -> str:
    """A file name as shown to people: no directories, no control characters, at most 255 characters."""
    name = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip()
    return name[:MAX_NAME] or "file"


def thumbnail_key(sha256: str, size: int) -> str:
    return f"{sha256}.t{size}"


class MediaService:
    def __init__(self, store: Store, blobs: Blobs, config: MediaConfig, data_dir: Path, clock: WallClock) -> None:
        self._store = store
        self.blobs = blobs
        self.config = config
        self._clock = clock
        self._spool = data_dir / "media-spool"
        self._partials = data_dir / "uploads"
        self._thumbnailing: dict[str, asyncio.Lock] = {}
        self._upload_locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        def prepare() -> None:
            # What a killed process left in the spool was never a file: nothing references it.
            shutil.rmtree(self._spool, ignore_errors=True)
            self._spool.mkdir(parents=True, exist_ok=True)
            self._partials.mkdir(parents=True, exist_ok=True)

        await asyncio.to_thread(prepare)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.blobs.close()

    # ------------------------------------------------------------------------------------------ uploads

    async def check_room(self, owner: int, length: int | None) -> None:
        """Refuse an upload that cannot fit, before reading it: past the size limit, or past the owner's quota."""
        if length is not None and length > self.config.max_file_bytes:
            raise PayloadTooLarge(f"a file may have at most {self.config.max_file_bytes} bytes (media.max_file_bytes)")
        used = await self._store.file_usage(owner)
        if used + (length or 0) > self.config.quota_bytes:
            raise QuotaExceeded(f"your files take {used} bytes of your quota of {self.config.quota_bytes}")

    async def upload(self, owner: int, chunks: AsyncIterator[bytes], length: int | None,
                     name: str | None) -> FileRecord:
        await self.check_room(owner, length)
        path = self._spool / secrets.token_hex(16)
        try:
            spooled = await self._receive(chunks, path, length)
            return await self._store_file(owner, spooled, clean_name(name))
        finally:
            await asyncio.to_thread(_unlink, path)

    async def _receive(self, chunks: AsyncIterator[bytes], path: Path, length: int | None) -> Spooled:
        digest = hashlib.sha256()
        received = Received(0)
        with path.open("wb") as handle:
            await _drain(chunks, handle, digest, received, self.config.max_file_bytes,
                         f"a file may have at most {self.config.max_file_bytes} bytes (media.max_file_bytes)")
        if length is not None and received.size != length:
            raise BadRequest(f"the upload ended after {received.size} of its {length} bytes")
        return Spooled(path, received.size, digest.hexdigest())

    async def _store_file(self, owner: int, spooled: Spooled, name: str) -> FileRecord:
        head = await asyncio.to_thread(_head, spooled.path)
        content_type = sniff(head)
        if content_type in images.STRIPPED:
            spooled = await asyncio.to_thread(self._stripped, spooled, content_type)
        meta: dict[str, Any] = {}
        if content_type in images.DECODED:
            found = await asyncio.to_thread(images.dimensions, spooled.path)
            if found is not None:
                meta = {"width": found[0], "height": found[1]}
                if found[0] * found[1] <= self.config.max_image_pixels:
                    placeholder = await asyncio.to_thread(images.placeholder, spooled.path,
                                                          self.config.max_image_pixels)
                    if placeholder is not None:  # None: the pixels do not decode (a truncated or corrupt image)
                        meta["placeholder"] = placeholder
                        meta["thumbnails"] = list(self.config.thumbnail_sizes)
        if spooled.size + await self._store.file_usage(owner) > self.config.quota_bytes:
            raise QuotaExceeded(f"this file would take your files past your quota of {self.config.quota_bytes} bytes")
        now = self._clock.now_ms()
        await self._store.reserve_blob(spooled.sha256, now)
        await self.blobs.put(spooled.sha256, spooled.path, spooled.size)
        record = FileRecord(secrets.token_urlsafe(16), owner, spooled.sha256, spooled.size, content_type, name, now,
                            meta)
        await self._store.add_file(record, self.config.quota_bytes)
        if "thumbnails" in meta:
            self._spawn(self._make_thumbnails(record))
        return record

    def _stripped(self, spooled: Spooled, content_type: str) -> Spooled:
        """The spool without its metadata (a new file, hashed again); the same spool when it is not a valid image."""
        target = spooled.path.with_suffix(".stripped")
        digest = hashlib.sha256()
        try:
            with spooled.path.open("rb") as source, target.open("wb") as out:
                images.strip_metadata(content_type, source, _Hashing(out, digest))
                out.flush()
                os.fsync(out.fileno())
        except images.NotAnImage:
            _unlink(target)
            return spooled
        os.replace(target, spooled.path)
        return Spooled(spooled.path, spooled.path.stat().st_size, digest.hexdigest())

    # ------------------------------------------------------------------------------------------ resumable

    async def open_resumable(self, owner: int, length: int, name: str | None) -> UploadRecord:
        await self.check_room(owner, length)
        now = self._clock.now_ms()
        record = UploadRecord(secrets.token_urlsafe(16), owner, length, 0, clean_name(name), now, now)
        await asyncio.to_thread((self._partials / record.upload_id).touch)
        await self._store.open_upload(record, self.config.max_open_uploads)
        return record

    async def resumable(self, owner: int, upload_id: str) -> UploadRecord:
        record = await self._store.get_upload(upload_id, owner)
        if record is None:
            raise FileNotFound("no such upload (finished, cancelled, expired, or not yours)")
        return record

    async def append(self, owner: int, upload_id: str, offset: int,
                     chunks: AsyncIterator[bytes]) -> tuple[int, FileRecord | None]:
        """Bytes of a resumable upload from ``offset``; (bytes now held, the file when that was the last byte)."""
        lock = self._upload_locks.setdefault(upload_id, asyncio.Lock())
        if lock.locked():
            raise Conflict("this upload is receiving bytes in another request")
        async with lock:
            try:
                return await self._append(owner, upload_id, offset, chunks)
            finally:
                self._upload_locks.pop(upload_id, None)

    async def _append(self, owner: int, upload_id: str, offset: int,
                      chunks: AsyncIterator[bytes]) -> tuple[int, FileRecord | None]:
        record = await self.resumable(owner, upload_id)
        if offset != record.received:
            raise Conflict(f"Upload-Offset is {offset}, but the upload holds {record.received} bytes: resume there")
        path = self._partials / upload_id
        received = Received(record.received)
        with path.open("r+b" if path.exists() else "wb") as handle:
            await asyncio.to_thread(handle.truncate, record.received)  # a crash's unsynced tail is not ours
            handle.seek(record.received)
            try:
                await _drain(chunks, handle, None, received, record.length,
                             f"the upload is declared as {record.length} bytes")
            finally:
                # Whatever arrived before the client went away is kept (synced by _drain): it resumes from there.
                await self._store.touch_upload(upload_id, min(received.size, record.length), self._clock.now_ms())
        size = received.size
        if size < record.length:
            return size, None
        spooled = Spooled(path, size, await asyncio.to_thread(_sha256_of, path))
        try:
            stored = await self._store_file(owner, spooled, record.name)
        finally:
            await self._store.end_upload(upload_id)
            await asyncio.to_thread(_unlink, path)
        return size, stored

    async def cancel(self, owner: int, upload_id: str) -> None:
        await self.resumable(owner, upload_id)
        await self._store.end_upload(upload_id)
        await asyncio.to_thread(_unlink, self._partials / upload_id)

    # ------------------------------------------------------------------------------------------ downloads

    async def readable(self, user_id: int, file_id: str) -> FileRecord:
        record = await self._store.readable_file(file_id, user_id)
        if record is None:
            raise FileNotFound("no such file")
        return record

    async def thumbnail(self, record: FileRecord, size: int) -> tuple[str, int]:
        """The blob key and size of a thumbnail of ``record``, made now if it was not made yet."""
        if size not in record.meta.get("thumbnails", ()):
            raise FileNotFound(f"no thumbnail of {size} pixels for this file")
        key = thumbnail_key(record.sha256, size)
        found = await self.blobs.size(key)
        if found is None:
            await self._make_thumbnails(record)
            found = await self.blobs.size(key)
        if found is None:
            raise FileNotFound("this image has no thumbnails (it could not be decoded)")
        return key, found

    async def _make_thumbnails(self, record: FileRecord) -> None:
        lock = self._thumbnailing.setdefault(record.sha256, asyncio.Lock())
        try:
            async with lock:
                await self._thumbnails_once(record)
        except Exception:  # the image is served without them; a later request tries again
            log.warning("could not make thumbnails", exc_info=True, extra={"file_id": record.file_id})
        finally:
            if not lock.locked() and self._thumbnailing.get(record.sha256) is lock:
                del self._thumbnailing[record.sha256]

    async def _thumbnails_once(self, record: FileRecord) -> None:
        if await self.blobs.size(thumbnail_key(record.sha256, max(self.config.thumbnail_sizes))) is not None:
            return
        source = self._spool / f"{secrets.token_hex(8)}.image"
        try:
            with source.open("wb") as handle:
                async for chunk in self.blobs.read(record.sha256, 0, record.size):
                    await asyncio.to_thread(handle.write, chunk)
            made = await asyncio.to_thread(images.thumbnails, source, self.config.thumbnail_sizes,
                                           self.config.max_image_pixels)
        finally:
            await asyncio.to_thread(_unlink, source)
        for size, data in made.items():
            await self._put_bytes(thumbnail_key(record.sha256, size), data)

    async def _put_bytes(self, key: str, data: bytes) -> None:
        path = self._spool / secrets.token_hex(16)
        try:
            await asyncio.to_thread(_write_synced, path, data)
            await self.blobs.put(key, path, len(data))
        finally:
            await asyncio.to_thread(_unlink, path)

    # ------------------------------------------------------------------------------------------ housekeeping

    async def sweep(self) -> int:
        """One pass: files no message referenced within the grace, blobs no file uses, abandoned uploads."""
        now = self._clock.now_ms()
        swept = await self._store.sweep_files(now - int(self.config.unreferenced_grace * 1000),
                                              now - int(self.config.resumable_ttl * 1000), 1000)
        for sha256 in swept.blobs:
            for key in (sha256, *(thumbnail_key(sha256, size) for size in self.config.thumbnail_sizes)):
                await self.blobs.delete(key)
        for upload_id in swept.uploads:
            await asyncio.to_thread(_unlink, self._partials / upload_id)
        if swept.files or swept.blobs or swept.uploads:
            log.info("media sweep", extra={"files": swept.files, "blobs": len(swept.blobs),
                                           "uploads": len(swept.uploads)})
        return swept.files + len(swept.blobs) + len(swept.uploads)

    async def run_sweeps(self) -> None:
        while True:
            await asyncio.sleep(self.config.sweep_interval)
            try:
                while await self.sweep() >= 1000:
                    pass
            except Exception:
                log.warning("media sweep failed", exc_info=True)

    def _spawn(self, work: Awaitable[None]) -> None:
        async def run() -> None:
            await work

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


@dataclass(slots=True)
class Received:
    size: int
    """Bytes so far (those already held, for a resumable upload), kept current while chunks arrive."""


async def _drain(chunks: AsyncIterator[bytes], handle: BinaryIO, digest: Any, received: Received, limit: int,
                 refusal: str) -> None:
    """Write the chunks to ``handle``, a megabyte per hop to a worker thread (hashed when ``digest``), counting into
    ``received``; PayloadTooLarge(``refusal``) past ``limit``. What arrived before any failure is written and synced."""
    pending: list[bytes] = []
    held = 0
    try:
        async for chunk in chunks:
            received.size += len(chunk)
            if received.size > limit:
                received.size -= len(chunk)
                raise PayloadTooLarge(refusal)
            pending.append(chunk)
            held += len(chunk)
            if held >= WRITE_BATCH:
                await asyncio.to_thread(_write, handle, digest, pending)
                pending, held = [], 0
    finally:
        await asyncio.to_thread(_write, handle, digest, pending)
        await asyncio.to_thread(_sync, handle)


class _Hashing:
    """A writable file that hashes what goes through it."""

    def __init__(self, out: BinaryIO, digest: Any) -> None:
        self._out = out
        self._digest = digest

    def write(self, data: bytes) -> int:
        self._digest.update(data)
        return self._out.write(data)


def _write(handle: BinaryIO, digest: Any, chunks: list[bytes]) -> None:
    for chunk in chunks:
        if digest is not None:
            digest.update(chunk)
        handle.write(chunk)


def _sync(handle: BinaryIO) -> None:
    handle.flush()
    os.fsync(handle.fileno())


def _head(path: Path) -> bytes:
    with path.open("rb") as handle:
        return handle.read(HEAD_BYTES)


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(WRITE_BATCH):
            digest.update(chunk)
    return digest.hexdigest()


def _write_synced(path: Path, data: bytes) -> None:
    with path.open("wb") as handle:
        handle.write(data)
        _sync(handle)


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


async def open_blobs(config: MediaConfig, data_dir: Path) -> Blobs:
    """The configured blob storage (the configuration has checked ``media.storage``), started."""
    if not config.storage:
        return DirectoryBlobs(data_dir / "files")
    from pica.media.s3 import S3Blobs  # aiobotocore only for nodes that use it (the "s3" extra)

    blobs = S3Blobs(config.storage, config.s3_endpoint, config.s3_region)
    await blobs.start()
    return blobs
