"""Where files' bytes live: content-addressed blobs, one per sha256, behind one small interface.

The embedded default is a directory (:class:`DirectoryBlobs`); a cluster uses an S3-compatible store
(:mod:`pica.media.s3`). A blob is put from a complete local file (the upload's spool, already hashed and synced),
read by byte ranges, and deleted by the housekeeping sweep.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final, Protocol

CHUNK: Final = 256 * 1024


class Blobs(Protocol):
    async def put(self, sha256: str, source: Path, size: int) -> None:
        """Store ``source``'s bytes as blob ``sha256`` (durably, before returning). Putting a blob again is harmless."""

    async def size(self, sha256: str) -> int | None:
        """The blob's length in bytes, or None when there is no such blob."""

    def read(self, sha256: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes ``start`` to ``end`` (exclusive) of a blob, in chunks."""

    async def delete(self, sha256: str) -> None:
        """Remove a blob; one that is not there is fine."""

    async def close(self) -> None: ...


def fsync_dir(path: Path) -> None:
    """Make a rename or an unlink in ``path`` durable (a file's own fsync does not cover its directory entry)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DirectoryBlobs:
    """Blobs as files ``<root>/<2 hex>/<sha256>``. A put renames the spool into place (same file system: the spool
    directory is under the same data dir), so a blob is whole or absent, never half-written."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    async def put(self, sha256: str, source: Path, size: int) -> None:
        await asyncio.to_thread(self._put, sha256, source)

    def _put(self, sha256: str, source: Path) -> None:
        target = self.path(sha256)
        target.parent.mkdir(exist_ok=True)
        os.replace(source, target)  # the spool was fsynced by the upload; same content if it was there already
        fsync_dir(target.parent)

    async def size(self, sha256: str) -> int | None:
        def stat() -> int | None:
            try:
                return self.path(sha256).stat().st_size
            except FileNotFoundError:
                return None

        return await asyncio.to_thread(stat)

    async def read(self, sha256: str, start: int, end: int) -> AsyncIterator[bytes]:
        handle = await asyncio.to_thread(open, self.path(sha256), "rb")
        try:
            await asyncio.to_thread(handle.seek, start)
            left = end - start
            while left > 0:
                chunk = await asyncio.to_thread(handle.read, min(CHUNK, left))
                if not chunk:
                    raise OSError(f"blob {sha256} is shorter than its record")
                left -= len(chunk)
                yield chunk
        finally:
            handle.close()

    async def delete(self, sha256: str) -> None:
        def unlink() -> None:
            path = self.path(sha256)
            path.unlink(missing_ok=True)
            fsync_dir(path.parent)

        await asyncio.to_thread(unlink)

    async def close(self) -> None:
        return None
